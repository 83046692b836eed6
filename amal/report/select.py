"""Which stored rows the report shows, and the numbers it computes from them (pure: DataFrame in, DataFrame out);
TP3's numbers are in autoencoder_stats.py.

When a configuration was run more than once, the newest run wins (run ids sort by time), so re-running an experiment
updates the report instead of doubling its curves.
"""

import math
import re

import numpy as np
import pandas as pd

from amal import store
from amal.experiments.lr_sweep import GROWING, growth
from amal.timing import CONTENDED, slowed_runs

STEP_PARTS = {"step_data_s": "data", "step_forward_s": "forward", "step_backward_s": "backward",
              "step_update_s": "update"}
# for figures that show one implementation, among those that cover the most batch sizes and seeds
PREFERRED_IMPLEMENTATIONS = ("tensor", "manual", "dataloader", "fused")
AUTOENCODER_CONFIG = ["implementation", "hidden", "loss_fn", "batch_size"]  # one autoencoder configuration, any device
# what runs must share to be drawn together (their times or losses are otherwise not comparable); the autoencoder's
# device, host and threads may differ: comparing a CPU machine with a GPU machine is what its section is for
LR_SWEEP_SETTINGS = ["normalize", "epochs", "test_size", "seed", "data_source", "num_threads", "host"]
BATCH_SETTINGS = ["device", "lr", "normalize", "test_size", "data_source", "epochs", "num_threads", "host",
                  "target_loss"]
AUTOENCODER_SETTINGS = ["lr", "data_source", "n_train", "epochs", "num_workers"]
# ...but the runs of one device are timed on one machine: that of the newest run on this device
AUTOENCODER_MACHINE = ["host", "cpu_model", "num_threads", "cuda_device"]
# bench runs: one profile, thread count, machine and kind of run (pytest bench, or one side of a gate) at a time
BENCH_SETTINGS = ["profile", "num_threads", "host", "tag"]
GATE_CANDIDATE = "gate candidate"  # the tag of the candidate side's rounds stored by amal.gate


def natural_key(value) -> tuple:
    """A sort key reading the numbers inside a text as numbers: '32' < '64' < '128', '256,64' after '64',
    'b16' < 'b128'."""
    parts = re.split(r"(\d+)", str(value))
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def natural_order(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`frame` sorted by `columns`, text columns in natural_key's order (hidden sizes, benchmark names), others as
    they compare."""
    def key(column: pd.Series) -> pd.Series:
        return column if pd.api.types.is_numeric_dtype(column) else column.map(natural_key)

    return frame.sort_values(columns, key=key, kind="stable", ignore_index=True)


def experiment_rows(df: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The rows of one experiment."""
    return df[df["experiment"] == experiment].reset_index(drop=True)


def tagged(df: pd.DataFrame, tags: list[str] | None) -> pd.DataFrame:
    """The rows of the runs stored with one of `tags` (a missing tag counts as ''); every row when `tags` is None."""
    if tags is None:
        return df
    return df[df["tag"].fillna("").isin(tags)].reset_index(drop=True)


def in_diverged_run(rows: pd.DataFrame) -> pd.Series:
    """True for each row of a run with a diverged row (an autoencoder run stored before every row was flagged has only
    the epoch it stopped at)."""
    if "diverged" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["diverged"].eq(True).astype(bool).groupby(rows["run_id"]).transform("any")


def stopped_losses_blanked(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with the losses of the epoch each diverged run stopped at made NaN: no longer finite, or exploded
    (an autoencoder's BCE of 8.8e7), they are no result to average, rank or draw."""
    if "diverged_epoch" not in rows:
        return rows
    stopped = rows["diverged"].eq(True) & rows["epoch"].eq(rows["diverged_epoch"]).fillna(False).astype(bool)
    return rows.assign(**{column: rows[column].mask(stopped) for column in ("train_loss", "test_loss")
                          if column in rows})


# what tells a run's trainings apart (one training: one loss curve); a column a run lacks is left out
TRAINING_KEYS = ["lr", "implementation", "batch_size", "seed"]


def in_failed_run(rows: pd.DataFrame) -> pd.Series:
    """True for each row of a run every training of which diverged (a sweep where only the largest rates diverge
    is not one)."""
    if "diverged" not in rows:
        return pd.Series(False, index=rows.index)
    keys = [rows["run_id"], *(rows[k] for k in TRAINING_KEYS if k in rows)]
    trained = rows["diverged"].eq(True).astype(bool).groupby(keys, dropna=False).transform("any")
    return trained.groupby(rows["run_id"]).transform("all")


def recency(rows: pd.DataFrame) -> pd.Series:
    """A key that orders the rows' runs from oldest to newest: the run id, which starts with the run's UTC start
    time, except that the two sides of one gate run, stamped with the same start, are ordered baseline then
    candidate (the candidate times the code at hand, so it is the one a report shows), and that a run every
    training of which diverged (`in_failed_run`) counts as older than every one that did not: it neither replaces a
    good run of its configuration nor sets the settings its section shows (it is shown only where nothing else was
    run)."""
    started = rows["run_id"].str.split("-", n=1).str[0]
    tags = rows["tag"] if "tag" in rows else pd.Series("", index=rows.index)
    candidate = np.where(tags.eq(GATE_CANDIDATE).to_numpy(dtype=bool, na_value=False), "1", "0")
    failed = in_failed_run(rows)
    return np.where(failed.to_numpy(dtype=bool), "0", "1") + started + candidate + rows["run_id"]


def latest_per(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows of the newest run for each combination of `keys` (missing values count as a value)."""
    if df.empty:
        return df
    order = recency(df)
    return df[order == order.groupby([df[k] for k in keys], dropna=False).transform("max")].reset_index(drop=True)


def matches(column: pd.Series, value) -> pd.Series:
    """True where `column` holds `value`: a missing value matches missing; floats to 9 significant digits (a setting
    computed from the data, the target loss, may change in its last bit with a NumPy upgrade: the same setting)."""
    if pd.isna(value):
        return column.isna()
    if isinstance(value, float) and pd.api.types.is_float_dtype(column):
        return pd.Series(np.isclose(column.to_numpy(dtype=float, na_value=np.nan), value, rtol=1e-9, atol=0),
                         index=column.index)
    return column.eq(value)


def same_settings(rows: pd.DataFrame, settings: list[str]) -> np.ndarray:
    """True for the rows measured with the newest run's values of `settings` (`matches`)."""
    newest = rows.loc[recency(rows).idxmax()]
    mask = np.ones(len(rows), dtype=bool)
    for column in settings:
        mask &= matches(rows[column], newest[column]).to_numpy(dtype=bool, na_value=False)
    return mask


def same_settings_per(rows: pd.DataFrame, by: str, settings: list[str]) -> np.ndarray:
    """`same_settings` within each value of `by`: True for the rows measured with the `settings` of the newest run
    that has their value of `by`."""
    mask = np.zeros(len(rows), dtype=bool)
    for _, group in rows.groupby(by, sort=False, dropna=False):
        mask[rows.index.get_indexer(group.index)] = same_settings(group, settings)
    return mask


def newest_settings(df: pd.DataFrame, experiment: str, settings: list[str]) -> tuple[pd.Series | None, int]:
    """The newest run's values of `settings`, and how many runs of `experiment` were made with other values."""
    rows = experiment_rows(df, experiment)
    if rows.empty:
        return None, 0
    newest = rows.loc[recency(rows).idxmax(), settings]
    return newest, rows.loc[~same_settings(rows, settings), "run_id"].nunique()


def other_settings(df: pd.DataFrame, experiment: str, settings: list[str]) -> pd.DataFrame:
    """What the runs of `experiment` left out by `same_settings` were made with: one row (setting, value, newest)
    per value of a setting that differs from the newest run's, in the order of `settings`, the newest such run's
    value first; `newest` is the newest run's value. Empty when no run is left out."""
    rows = experiment_rows(df, experiment)
    out = []
    if not rows.empty:
        newest = rows.loc[recency(rows).idxmax()]
        left_out = rows[~same_settings(rows, settings)]
        left_out = left_out.loc[recency(left_out).sort_values(ascending=False, kind="stable").index]
        for column in settings:
            value = newest[column]
            differs = ~matches(left_out[column], value).astype(bool)
            others = left_out.loc[differs, column]
            for other in pd.unique(others.to_numpy(dtype=object)):
                out.append({"setting": column, "value": other, "newest": value})
    return pd.DataFrame(out, columns=["setting", "value", "newest"])


def lr_sweep_rows(df: pd.DataFrame) -> pd.DataFrame:
    """lr-sweep rows made with the newest run's LR_SWEEP_SETTINGS, newest run per learning rate, sorted by lr and
    epoch."""
    rows = experiment_rows(df, "lr-sweep")
    if rows.empty:
        return rows
    rows = rows[same_settings(rows, LR_SWEEP_SETTINGS)]
    return latest_per(rows, ["lr"]).sort_values(["lr", "epoch"], ignore_index=True)


def lr_outcomes(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per learning rate: diverged (stopped by the rule), diverged_epoch, growth (last finite loss over the
    lowest), growing (not stopped, but its loss ended above GROWING × its lowest), unstable (either), epochs_run,
    final_loss (last finite loss), final_test_loss (its held-out loss, NaN without a test split), train_time_s."""
    out = []
    for lr, run in rows.groupby("lr", sort=True):
        finite = run[np.isfinite(run["train_loss"])]
        diverged = bool(run["diverged"].eq(True).any())  # object or nullable dtype: missing counts as False
        grown = growth(run["train_loss"])
        growing = not diverged and grown > GROWING
        out.append({"lr": lr, "diverged": diverged, "growth": grown, "growing": growing,
                    "unstable": diverged or growing,
                    "diverged_epoch": int(run["diverged_epoch"].max()) if diverged else None,
                    "epochs_run": int(run["epoch"].max()),
                    "final_loss": finite["train_loss"].iloc[-1] if len(finite) else math.nan,
                    "final_test_loss": finite["test_loss"].iloc[-1] if len(finite) and "test_loss" in finite
                    else math.nan,
                    "train_time_s": run["elapsed_s"].iloc[-1], "lr_max_theory": run["lr_max_theory"].iloc[0]})
    return pd.DataFrame(out)


def divergence_threshold(outcomes: pd.DataFrame) -> tuple[float | None, float | None]:
    """(largest lr that did not diverge, smallest lr that diverged or was diverging when its run ended); None where
    there is no such lr."""
    stable = outcomes.loc[~outcomes["unstable"], "lr"]
    unstable = outcomes.loc[outcomes["unstable"], "lr"]
    return (stable.max() if len(stable) else None, unstable.min() if len(unstable) else None)


def batch_size_rows(df: pd.DataFrame) -> pd.DataFrame:
    """batch-size rows made with the newest run's BATCH_SETTINGS, newest run per (implementation, batch size) with
    all its seeds, sorted."""
    rows = experiment_rows(df, "batch-size")
    if rows.empty:
        return rows
    # all the seeds of a configuration from its newest run (--seeds K runs seeds 0..K-1): a rerun with fewer seeds
    # replaces the older run's, rather than averaging its seeds with older ones timed on other code
    rows = latest_per(rows[same_settings(rows, BATCH_SETTINGS)], ["implementation", "batch_size"])
    rows = rows.astype({"batch_size": "int64", "seed": "int64"})
    return rows.sort_values(["implementation", "batch_size", "seed", "epoch"], ignore_index=True)


def batch_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (implementation, batch size, seed): its last epoch, time_per_1000_s = elapsed / epochs × 1000,
    step_s = elapsed / steps (the training clock's time per step) and parts_s, the sum of the instrumented pass's
    sections (the clock reads between sections make it larger than step_s for the cheapest steps)."""
    last = rows.groupby(["implementation", "batch_size", "seed"], sort=True).tail(1).reset_index(drop=True)
    return last.assign(time_per_1000_s=last["elapsed_s"] / last["epoch"] * 1000,
                       step_s=last["elapsed_s"] / (last["epoch"] * last["steps_per_epoch"]),
                       parts_s=last[list(STEP_PARTS)].sum(axis=1, min_count=1),
                       reached=last["time_to_target_s"].notna())


def epochs_asked(rows: pd.DataFrame) -> int:
    """The epochs the batch-size runs were asked for (all a section shows share it); the longest run's in rows
    stored before the column existed."""
    return int(rows["epochs"].iloc[0]) if "epochs" in rows else int(rows["epoch"].max())


def batch_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (implementation, batch size): mean and sd over seeds of the time per 1000 epochs, the time to target
    (mean over the seeds that reached it), how many seeds reached it and how many diverged, the mean step time, and
    the instrumented parts."""
    runs = runs.assign(diverged=runs["diverged"].eq(True) if "diverged" in runs else False)
    grouped = runs.groupby(["implementation", "batch_size"], sort=True)
    summary = grouped.agg(seeds=("seed", "size"), epochs=("epoch", "max"),
                          time_mean_s=("time_per_1000_s", "mean"), time_sd_s=("time_per_1000_s", "std"),
                          target_mean_s=("time_to_target_s", "mean"), epoch_to_target=("epoch_to_target", "mean"),
                          reached=("reached", "sum"), diverged=("diverged", "sum"), step_s=("step_s", "mean"),
                          parts_s=("parts_s", "mean"),
                          **{part: (part, "mean") for part in STEP_PARTS})
    return summary.reset_index()


def fastest_to_target(summary: pd.DataFrame) -> pd.Series | None:
    """The (implementation, batch size) whose every seed reached the target, with the least mean time; None if none."""
    done = summary[(summary["reached"] == summary["seeds"]) & summary["target_mean_s"].notna()]
    return None if done.empty else done.loc[done["target_mean_s"].idxmin()]


def pick_implementation(rows: pd.DataFrame) -> str:
    """The implementation a one-implementation figure shows: of those with the most batch sizes, then seeds, the
    first in PREFERRED_IMPLEMENTATIONS (then by name)."""
    coverage = rows.groupby("implementation").agg(sizes=("batch_size", "nunique"), seeds=("seed", "nunique"))
    order = {name: rank for rank, name in enumerate(PREFERRED_IMPLEMENTATIONS)}
    return min(coverage.index, key=lambda name: (-coverage.loc[name, "sizes"], -coverage.loc[name, "seeds"],
                                                 order.get(name, len(order)), name))


def fig2_rows(rows: pd.DataFrame, lr: float = 1e-3) -> tuple[pd.DataFrame, float, str]:
    """Rows for seed Fig. 2: at `lr` if measured (else the most frequent lr), one implementation; with both."""
    lrs = rows["lr"].dropna()
    chosen = lr if np.isclose(lrs, lr).any() else float(lrs.mode().iloc[0])
    at_lr = rows[np.isclose(rows["lr"], chosen)]
    implementation = pick_implementation(at_lr)
    return at_lr[at_lr["implementation"] == implementation], chosen, implementation


def autoencoder_shared(df: pd.DataFrame) -> pd.DataFrame:
    """autoencoder rows made with the newest run's AUTOENCODER_SETTINGS, whatever their machine."""
    rows = experiment_rows(df, "autoencoder")
    return rows[same_settings(rows, AUTOENCODER_SETTINGS)].reset_index(drop=True) if len(rows) else rows


def autoencoder_rows(df: pd.DataFrame) -> pd.DataFrame:
    """autoencoder rows made with the newest run's AUTOENCODER_SETTINGS and, per device, on the machine (host, CPU,
    threads, GPU) of that device's newest run; newest run per (device, implementation, hidden, loss, batch size,
    seed), sorted."""
    keys = ["device", *AUTOENCODER_CONFIG, "seed"]
    rows = autoencoder_shared(df)
    if rows.empty:
        return rows
    rows = latest_per(rows[same_settings_per(rows, "device", AUTOENCODER_MACHINE)], keys)
    rows = rows.astype({"batch_size": "int64"})
    return natural_order(rows, [*keys, "epoch"])  # hidden 32, 64, 128 (as text, 128 came first)


def contended_runs(rows: pd.DataFrame, keys: list[str], above: float = CONTENDED) -> tuple[pd.DataFrame, int]:
    """The training runs (one per `keys`: lr-sweep's lr; batch-size's implementation, batch size and seed) whose
    threads waited for a CPU more than `above` of their training loop's time (cpu_wait, the same on each of a run's
    rows: other processes competed, and the run's times are slow), with that share; and how many runs were measured."""
    if "cpu_wait" not in rows:
        return pd.DataFrame(columns=[*keys, "cpu_wait"]), 0
    waits = rows.groupby(keys, sort=True)["cpu_wait"].first()
    slowed, measured = slowed_runs(waits.items(), above)
    return waits.loc[[key for key, _ in slowed]].reset_index(), measured


# what a case trains (an autoencoder's data path is its implementation: resident or dataloader)
BENCH_PARAMS = ["implementation", "batch_size", "device", "hidden", "loss_fn"]
BENCH_SUMMARY = ["benchmark", "bench_group", "rounds", "median_s", "iqr_s", "min_s", "epochs", "git_commit",
                 "reference", "vs_reference", *BENCH_PARAMS]


def bench_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rounds the bench section shows: per benchmark, the newest run's, of the runs made with the newest bench
    run's BENCH_SETTINGS."""
    rows = experiment_rows(df, "bench")
    return latest_per(rows[same_settings(rows, BENCH_SETTINGS)], ["benchmark"]) if len(rows) else rows


def bench_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark (newest run made with the newest bench run's BENCH_SETTINGS): group, rounds, median, IQR
    (q3 − q1) and min of the round times, in seconds, the epochs one round trains (NA where not recorded), the
    commit of the run it comes from ('' where not recorded; a case rerun alone after a change is newer than the
    others), the loop its rounds alternated with (`reference`, fidelity and sgd-floor) and the median over rounds of
    each round's time over that loop's just before it (`vs_reference`; NA without one: pairs, so that the drift of a
    shared machine cancels), and the case's parameters (BENCH_PARAMS)."""
    rows = bench_rows(df)
    if rows.empty:
        return pd.DataFrame(columns=BENCH_SUMMARY)
    if "git_commit" not in rows:
        rows = rows.assign(git_commit="")
    if "reference_s" in rows:  # each round over the loop timed just before it
        rows = rows.assign(vs_reference=rows["round_s"] / rows["reference_s"])
    grouped = rows.assign(git_commit=rows["git_commit"].fillna("")).groupby(["bench_group", "benchmark"], sort=True)
    summary = grouped["round_s"].agg(rounds="size", median_s="median", min_s="min",
                                     iqr_s=lambda s: s.quantile(0.75) - s.quantile(0.25))
    summary["epochs"] = grouped["epochs"].first().astype("Int64")  # first: the first non-missing value
    summary["git_commit"] = grouped["git_commit"].first()  # one run per benchmark: one commit
    summary["reference"] = grouped["reference"].first() if "reference" in rows else None
    summary["vs_reference"] = grouped["vs_reference"].median() if "vs_reference" in rows else None
    for param in BENCH_PARAMS:  # what the case trains (missing where it does not apply: hidden of a regression)
        summary[param] = grouped[param].first() if param in rows else None
    return natural_order(summary.reset_index()[BENCH_SUMMARY], ["bench_group", "benchmark"])  # b2 before b16


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its environment, sorted by run id (i.e. by time); an environment column the rows lack
    (rows built without the store, from before cpu_count was recorded) is null."""
    columns = ["run_id", "experiment", *store.ENVIRONMENT, "tag"]
    return df.groupby("run_id", sort=True).first().reset_index().reindex(columns=columns)
