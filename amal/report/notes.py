"""What a section says beside its findings: the settings its runs share and where they were timed, the runs it
leaves out and why, and what may have skewed their times (other processes, slow epochs, resumes, workers)."""

import numpy as np
import pandas as pd

from amal.report import select
from amal.report.format import (
    integer,
    layers,
    number,
    numbers_apart,
    percent,
    plural,
    rate,
    rerun,
    threads_on,
    waited_runs,
)
from amal.timing import CONTENDED


def setting_value(value, column: str = "") -> str:
    """A setting as text: '–' when missing or empty, but an empty tag is "'' (untagged)" (as --tag '' selects it)."""
    if column == "tag" and (pd.isna(value) or value == ""):
        return "'' (untagged)"
    if pd.isna(value) or value == "":
        return "–"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return integer(value)
    return number(value) if isinstance(value, float) else str(value)


def setting_name(column: str) -> str:
    """'num_threads' -> 'num threads'."""
    return column.replace("_", " ")


def differences(others: pd.DataFrame) -> str:
    """'epochs 300, 50 instead of 1,000; lr 0.01 instead of 0.001' from select.other_settings; numbers with the
    digits that tell them from the newest run's ('target loss 24.12 instead of 24.08', not '24.1 instead of 24.1')."""
    parts = []
    for column, values in others.groupby("setting", sort=False):
        shown = [*values["value"], values["newest"].iloc[0]]
        apart = numbers_apart(value for value in shown if isinstance(value, float))
        texts = [apart.get(value) if isinstance(value, float) and not pd.isna(value) else setting_value(value, column)
                 for value in shown]
        parts.append(f"{setting_name(column)} {', '.join(texts[:-1])} instead of {texts[-1]}")
    return "; ".join(parts)


def shared_settings(df: pd.DataFrame, experiment: str, settings: list[str]) -> tuple[str, list[str]]:
    """The settings every run a section shows shares, its newest run's ('normalize minmax, epochs 1000, ...'), and
    a note counting the runs left out because they were made with others, and with which (none when there are
    none)."""
    newest, others = select.newest_settings(df, experiment, settings)
    shown = "" if newest is None else ", ".join(f"{setting_name(name)} {setting_value(value, name)}"
                                                for name, value in newest.items())
    if not others:
        return shown, []
    which = differences(select.other_settings(df, experiment, settings))
    rows = select.experiment_rows(df, experiment)
    latest = rows[rows["run_id"] == rows["run_id"].max()]  # the last run made; the reference may be an older one
    passed_over = latest["run_id"].iloc[0] != rows.loc[select.recency(rows).idxmax(), "run_id"]
    reference = "the newest run" + (f" that did not diverge (run {latest['run_id'].iloc[0]}, made after it, diverged)"
                                    if passed_over and select.in_failed_run(latest).any() else "")
    return shown, [f"{integer(others)} {experiment} run{'s' if others > 1 else ''} made with other settings "
                   f"({which}) {'are' if others > 1 else 'is'} not shown: the section compares runs made with the "
                   f"settings above, those of {reference}."]


def machines(rows: pd.DataFrame) -> list[str]:
    """Where each device's runs were timed: 'cpu on lab-cpu-1 (AMD EPYC 7B13, 2 threads on 4 CPUs)', 'cuda on
    gpu-node-1 (NVIDIA H100 80GB HBM3, 16 threads)' ('on N CPUs' where the runs recorded their CPU count)."""
    out = []
    for device, run in rows.groupby("device", sort=True).first().iterrows():
        unit = run["cuda_device"] if device == "cuda" and run["cuda_device"] else run["cpu_model"]
        out.append(f"{device} on {run['host']} ({unit}, {threads_on(run['num_threads'], [run.get('cpu_count')])})")
    return out


def machine_notes(df: pd.DataFrame) -> list[str]:
    """Per device, a note counting the autoencoder runs (of the section's settings) left out because they were timed
    on another machine or thread count than that device's newest run, and on which."""
    rows = select.autoencoder_shared(df)
    notes = []
    for device, group in rows.groupby("device", sort=True) if len(rows) else []:
        others = group.loc[~select.same_settings(group, select.AUTOENCODER_MACHINE), "run_id"].nunique()
        if others:
            which = differences(select.other_settings(group, "autoencoder", select.AUTOENCODER_MACHINE))
            notes.append(f"{integer(others)} {device} run{'s' if others > 1 else ''} timed on another machine or "
                         f"thread count ({which}) {'are' if others > 1 else 'is'} not shown: the times of a device "
                         "all come from the machine of its newest run.")
    return notes


def noisy_epoch_notes(noisy: pd.DataFrame, contended: pd.DataFrame) -> list[str]:
    """For each configuration of autoencoder_stats.noisy_epochs, how much its epoch times varied and what its median
    epoch ran at, beside the rate over all epochs the table shows; why, where autoencoder_stats.contended knows."""
    keys = ["device", *select.AUTOENCODER_CONFIG]
    notes = []
    for n in noisy.merge(contended[keys], on=keys, how="left", indicator="waited").itertuples():
        busy = ("its threads waited for a CPU (note below)" if n.waited == "both" else "the machine was probably busy "
                f"({rerun(1 if n.device == 'cuda' else n.num_threads)})")
        notes.append(f"Epoch times of {n.device}, {n.implementation}, {layers(n.hidden)}, {n.loss_fn}, batch size "
                     f"{n.batch_size} varied {number(n.spread, 2)}×: {rate(n.median_per_s)} images/s in the median "
                     f"epoch, {rate(n.samples_per_s)} over all epochs together; {busy}.")
    return notes


def contended_notes(contended: pd.DataFrame) -> list[str]:
    """For each configuration of autoencoder_stats.contended: how long its threads waited for a CPU, and what that
    means."""
    notes = []
    for c in contended.itertuples():
        name = f"{c.device}, {c.implementation}, {layers(c.hidden)}, {c.loss_fn}, batch size {c.batch_size}"
        if c.throughout:
            notes.append(f"{name}: its threads waited for a CPU {percent(c.cpu_wait)} of their time "
                         "(median epoch): other processes were running on the same CPUs, so its throughput is too "
                         f"low, however steady its epochs ({rerun(c.num_threads)}).")
        else:
            slow = "that epoch is" if c.contended == 1 else "those epochs are"
            notes.append(f"{name}: in {c.contended} of its {plural(c.epochs, 'epoch')} its threads waited for a CPU "
                         f"more than {percent(CONTENDED)} of their time (up to "
                         f"{percent(c.largest)}): other processes were running on the same CPUs then, so "
                         f"{slow} slow and its throughput too low ({rerun(c.num_threads)}).")
    return notes


def contended_run_notes(rows: pd.DataFrame, keys: list[str], label, noun: str = "run",
                        during: str = "the training loop's time", option: str = "--threads") -> list[str]:
    """The runs (or benchmark cases: `noun`) of select.contended_runs, named by `label(run)`, in one note, and what
    that means for their times (`option`: the one that sets the thread count)."""
    waited, total = select.contended_runs(rows, keys)
    if waited.empty:
        return []
    named = [(label(run), run.cpu_wait) for run in waited.itertuples()]
    said = waited_runs(named, total, CONTENDED, noun=noun, during=during)
    return [f"{said[0].upper()}{said[1:]}: other processes were running on the same CPUs, so "
            f"{f'that {noun} is' if len(named) == 1 else f'those {noun}s are'} slower than the machine is "
            f"({rerun(rows['num_threads'].max(), option)})."]


def diverged_notes(rows: pd.DataFrame, shown: bool = True) -> list[str]:
    """'Run ... diverged at epoch 3 (training loss no longer finite) and stopped there: its curves end before it.'
    for each such run of `rows` (every row of one is flagged: the last is where it stopped, its loss no longer
    finite, NaN stored as null or infinite, or exploded); of runs not `shown`, with what it was made with instead."""
    if "diverged" not in rows:
        return []
    stops = rows[rows["diverged"].eq(True)].sort_values("epoch").groupby("run_id", sort=True).tail(1)
    why = "its curves end before it" if shown else "it is not shown"
    notes = []
    for stop in stops.sort_values("run_id").itertuples():
        loss = stop.train_loss
        how = f"{number(loss)}: exploded" if pd.notna(loss) and np.isfinite(loss) else "no longer finite"
        notes.append(f"Run {stop.run_id} diverged at epoch {integer(stop.epoch)} (training loss {how}) and stopped "
                     f"there: {why}.")
    return notes


def epochs_text(first: int, last: int) -> str:
    """'epoch 3' or 'epochs 1–4'."""
    return f"epoch {integer(first)}" if first == last else f"epochs {integer(first)}–{integer(last)}"


def resumed_note(run_id: str, run: pd.DataFrame) -> str:
    """What a resumed run's rows are: whole (its checkpoint carried every earlier epoch, measured alike), from some
    epoch on (it carried those measured alike), or from the resumed epoch on."""
    epoch, first = int(run["resumed_from_epoch"].iloc[0]), int(run["epoch"].min())
    one = first == epoch
    carried = (f"its {epochs_text(first, epoch)} {'was' if one else 'were'} measured before the resume, on the same "
               f"machine and device with the same threads, workers and data path, and {'comes' if one else 'come'} "
               "from the checkpoint")
    if first == 1:
        return f"Run {run_id} was resumed from a checkpoint at epoch {integer(epoch)}; {carried}."
    before = (f"Its {epochs_text(1, first - 1)} {'was' if first == 2 else 'were'} timed on another machine or device, "
              "with other threads, workers or data path (resident or DataLoader), or before checkpoints carried their "
              "epochs (the resuming command said which); they belong to the run "
              "that measured them, if it was stored at all: an interrupted run stores no rows.")
    if first <= epoch:
        return f"Run {run_id} resumed from a checkpoint at epoch {integer(epoch)}: {carried}. {before}"
    return (f"Run {run_id} resumed from a checkpoint at epoch {integer(epoch)}: its curves start at epoch "
            f"{integer(first)}. {before}")


def workers_note(rows: pd.DataFrame) -> list[str]:
    """With DataLoader workers, what their throughput includes (the workers start again every epoch), and which runs
    had more workers than CPUs (where the run recorded its CPU count)."""
    workers = rows["num_workers"].dropna()
    if not (workers > 0).any():
        return []
    note = (f"With {plural(int(workers.max()), 'DataLoader worker')}, the workers start again each epoch (they are "
            "not persistent, so that the batches do not depend on their number): every epoch's time includes their "
            "start-up, a large share of a short epoch.")
    runs = rows.reindex(columns=["run_id", "num_workers", "cpu_count"]).groupby("run_id", sort=True).first()
    runs = runs.astype("float64")
    crowded = runs[runs["num_workers"] > runs["cpu_count"]]  # (an unknown CPU count, NaN, compares False)
    if len(crowded):
        named = "; ".join(f"run {run_id}: {plural(int(r.num_workers), 'worker')} on {plural(int(r.cpu_count), 'CPU')}"
                          for run_id, r in crowded.iterrows())
        note += (f" More workers than CPUs ({named}): the workers and the training's threads competed for the CPUs, "
                 "and every epoch's time includes it; fewer workers (or none: --num-workers 0) time the training "
                 "alone.")
    return [note]
