"""TP3's numbers, from the autoencoder rows `select.autoencoder_rows` picks: per configuration (device, data path,
hidden sizes, loss, batch size) the final test loss, the throughput over all epochs, the epochs whose times spread or
whose threads waited for a CPU, and the GPU speedup with its confidence interval."""

import math

import numpy as np
import pandas as pd
from scipy import stats

from amal.report.select import AUTOENCODER_CONFIG, natural_order
from amal.timing import CONTENDED, contention

# an autoencoder configuration whose slowest epoch took this many times as long as its fastest was timed on a busy
# machine: its throughput over all epochs (exact, but dragged down by the slow ones) gets a note
NOISY_EPOCHS = 3.0


def final_test_loss(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (device, implementation, hidden, loss, batch size): the test loss of each seed's last epoch, averaged over
    the seeds (NaN when one of them has none: a diverged seed), the seeds and the last epoch."""
    keys = ["device", *AUTOENCODER_CONFIG]
    last = rows.groupby([*keys, "seed"], sort=True).tail(1)
    return natural_order(last.groupby(keys, sort=True).agg(
        test_loss=("test_loss", lambda s: s.mean(skipna=False)), seeds=("seed", "nunique"),
        epoch=("epoch", "max")).reset_index(), keys)


def throughput(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (device, implementation, hidden, loss, batch size): training images per second of training time (all its
    epochs together: images over seconds, not a mean of per-epoch rates), the slowest and the fastest epoch's rate,
    epochs and runs timed, and the share of the time spent copying to the device."""
    keys = ["device", *AUTOENCODER_CONFIG]
    timed = rows.assign(images=rows["samples_per_s"] * rows["epoch_s"])
    summary = timed.groupby(keys, sort=True).agg(
        images=("images", "sum"), epoch_s=("epoch_s", "sum"), slowest=("samples_per_s", "min"),
        fastest=("samples_per_s", "max"), epochs=("epoch", "size"), runs=("run_id", "nunique"),
        transfer_s=("transfer_s", "sum"), cuda_device=("cuda_device", "first"))
    return natural_order(summary.reset_index(), keys).assign(
        samples_per_s=lambda t: t["images"] / t["epoch_s"], transfer_share=lambda t: t["transfer_s"] / t["epoch_s"])


def contended(rows: pd.DataFrame, above: float = CONTENDED) -> pd.DataFrame:
    """The configurations (as in `throughput`) of which at least one epoch's threads waited for a CPU more than
    `above` of their time, each with its timing.contention (epochs, contended, cpu_wait, largest, throughout) and
    its torch threads (the most of its runs')."""
    keys = ["device", *AUTOENCODER_CONFIG]
    found = [{**dict(zip(keys, key, strict=True)), **waits, "num_threads": group["num_threads"].max()}
             for key, group in rows.groupby(keys, sort=True) if (waits := contention(group["cpu_wait"], above))]
    return pd.DataFrame(found, columns=[*keys, "epochs", "contended", "cpu_wait", "largest", "throughout",
                                        "num_threads"])


def noisy_epochs(rows: pd.DataFrame, ratio: float = NOISY_EPOCHS) -> pd.DataFrame:
    """The configurations (as in `throughput`) whose slowest epoch took more than `ratio` times as long as their
    fastest, with that spread (slowest over fastest epoch time), the median epoch's images per second and the
    rate over all epochs (`throughput`'s, which a few slow epochs drag down), and its torch threads."""
    keys = ["device", *AUTOENCODER_CONFIG]
    epochs = rows.groupby(keys, sort=True).agg(slowest_s=("epoch_s", "max"), fastest_s=("epoch_s", "min"),
                                               median_per_s=("samples_per_s", "median"),
                                               num_threads=("num_threads", "max")).reset_index()
    table = throughput(rows).merge(epochs, on=keys).assign(spread=lambda t: t["slowest_s"] / t["fastest_s"])
    columns = [*keys, "spread", "median_per_s", "samples_per_s", "num_threads"]
    return table.loc[table["spread"] > ratio, columns].reset_index(drop=True)


def speedup(gpu_s: np.ndarray, cpu_s: np.ndarray, level: float = 0.95) -> tuple[float, float | None, float | None]:
    """GPU speedup in images per second of training time, from each epoch's seconds per image on either device:
    mean CPU over mean GPU, with a Welch t interval on the log of that ratio (delta method); none if n < 2."""
    gpu_s, cpu_s = np.asarray(gpu_s, float), np.asarray(cpu_s, float)
    ratio = float(cpu_s.mean() / gpu_s.mean())
    if len(gpu_s) < 2 or len(cpu_s) < 2:
        return ratio, None, None
    # squared relative standard errors of the two means: the variance of the log of each mean, to first order
    var_gpu = gpu_s.var(ddof=1) / len(gpu_s) / gpu_s.mean() ** 2
    var_cpu = cpu_s.var(ddof=1) / len(cpu_s) / cpu_s.mean() ** 2
    se = math.sqrt(var_gpu + var_cpu)
    if se == 0:
        return ratio, ratio, ratio
    dof = (var_gpu + var_cpu) ** 2 / (var_gpu**2 / (len(gpu_s) - 1) + var_cpu**2 / (len(cpu_s) - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def gpu_speedups(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration measured on both devices: speedup, low, high (95 % CI over the epochs), how many
    runs on each device, GPU and CPU names."""
    keys = AUTOENCODER_CONFIG
    columns = [*keys, "speedup", "low", "high", "gpu_runs", "cpu_runs", "gpu_name", "cpu_name"]
    out = []
    for key, group in rows.groupby(keys, sort=True):
        gpu, cpu = group[group["device"] == "cuda"], group[group["device"] == "cpu"]
        if gpu.empty or cpu.empty:
            continue
        ratio, low, high = speedup(1 / gpu["samples_per_s"], 1 / cpu["samples_per_s"])  # seconds per image
        out.append({**dict(zip(keys, key, strict=True)), "speedup": ratio, "low": low, "high": high,
                    "gpu_runs": gpu["run_id"].nunique(), "cpu_runs": cpu["run_id"].nunique(),
                    "gpu_name": gpu["cuda_device"].iloc[0], "cpu_name": cpu["cpu_model"].iloc[0]})
    return pd.DataFrame(out, columns=columns)
