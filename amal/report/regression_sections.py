"""TP1 and TP2's report sections: learning rate and divergence (lr-sweep), batch size and the time to a target loss
(batch-size). Results DataFrame in, section dict of text out."""


import pandas as pd

from amal.report import select
from amal.report.format import integer, number, numbers_apart, percent, plural, seconds, seconds_sd, threads_on
from amal.report.notes import (
    contended_run_notes,
    shared_settings,
)
from amal.report.section import figure, section, table


def threshold_finding(outcomes: pd.DataFrame) -> str:
    """'diverges between 0.26 and 0.27; theory lr* = 0.2652' from the sweep's outcomes (a run still below the stop
    rule whose loss was rising when it ended counts as diverging, and is named)."""
    stable, unstable = select.divergence_threshold(outcomes)
    theory = outcomes["lr_max_theory"].iloc[0]
    lr = numbers_apart(outcomes["lr"])
    bound = f"theory lr* = 2/λmax(H) = {number(theory, 4)}"
    if stable is None:
        text = f"Every learning rate tried diverged (smallest {lr[unstable]}); {bound}."
    elif unstable is None:
        text = f"No learning rate tried diverged (largest {lr[stable]}); {bound}."
    elif stable > unstable:
        text = (f"Divergence is not monotone in lr: lr = {lr[unstable]} diverged but lr = {lr[stable]} "
                f"did not; {bound}.")
    else:
        agrees = "inside the observed interval" if stable <= theory <= unstable else "outside the observed interval"
        text = (f"Gradient descent does not diverge up to lr = {lr[stable]} and diverges from lr = "
                f"{lr[unstable]}: the observed threshold lies between {lr[stable]} and {lr[unstable]}; "
                f"{bound} ({agrees}).")
    return text + growing_clause(outcomes)


def growing_clause(outcomes: pd.DataFrame) -> str:
    """' lr = 0.27 was not stopped within 100 epochs, but its loss ended 1,078× above its lowest: diverging, more
    slowly than the stop rule catches.' for the lrs that were diverging when their run ended; '' when none was."""
    growing = outcomes[outcomes["growing"]]
    if growing.empty:
        return ""
    lr = numbers_apart(outcomes["lr"])
    lrs = ", ".join(lr[value] for value in growing["lr"])
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
    lr = numbers_apart(outcomes["lr"])  # as many digits as tell the rates apart: 0.2649 and 0.2651, not 0.265
    findings = [threshold_finding(outcomes)]
    if not best.empty:
        findings.append(f"Lowest final training MSE: {number(best['final_loss'].iloc[0])} at lr = "
                        f"{lr[best['lr'].iloc[0]]} after {plural(best['epochs_run'].iloc[0], 'epoch')}.")
    held_out = outcomes["final_test_loss"].notna().any()  # a test split was held out: its loss gets a column
    body = [[lr[o.lr], f"diverged at epoch {integer(o.diverged_epoch)}" if o.diverged else
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
               f"({threads_on(rows['num_threads'].iloc[0], rows.get('cpu_count'), 'torch thread')}), log–log: "
               f"{mean}{bars}"
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
