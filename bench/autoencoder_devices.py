"""Autoencoder CPU versus GPU: one-epoch rounds of the bench cases, interleaved, with the speedup's 95% interval.

For each batch size × model size it times `--rounds` epochs of: cpu (DataLoader), cuda (DataLoader, a host-to-device
copy every batch) and cuda/resident (training set on the GPU once). The rounds interleave the devices so drift hits
all alike. Speedup = cpu time / cuda time per round; its interval is a t interval on the log of the per-round ratios
(the ratio is positive and skewed). Without CUDA it prints the CPU figures only.

    python bench/autoencoder_devices.py --rounds 5 --profile quick
"""

import argparse
import math
import statistics

import torch
from scipy import stats

from amal.experiments.autoencoder import bench_cases
from amal.timing import Stopwatch, set_threads, warmup


def speedup_interval(ratios: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Geometric mean of the ratios and its t interval (computed on logs), as (low, centre, high)."""
    logs = [math.log(r) for r in ratios]
    centre = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(centre), math.exp(centre), math.exp(centre)
    half = stats.t.ppf(0.5 + level / 2, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(centre - half), math.exp(centre), math.exp(centre + half)


def time_rounds(grid: dict, rounds: int) -> dict:
    """{case name: [(epoch seconds, transfer seconds, samples), ...]}, the cases of a grid cell taking turns."""
    rounds_of = {name: [] for name in grid}
    for _ in range(rounds):
        for name, (one_epoch, device) in grid.items():
            clock = Stopwatch(device)
            with clock:
                result = one_epoch()
            rounds_of[name].append((clock.total_s, result["transfer"].total_s, result["samples"]))  # read after
    return rounds_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", default="quick", choices=("quick", "full"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    cuda = torch.cuda.is_available()
    print(f"GPU: {torch.cuda.get_device_name(0) if cuda else 'none (CUDA not available: CPU figures only)'}; "
          f"torch {torch.__version__}; CPU threads {threads}; {args.rounds} rounds of one epoch per case")
    cells = {}
    for case in bench_cases(args.profile):
        if case.device == "cuda" and not cuda:
            continue
        key = (case.params["batch_size"], case.params["hidden"])
        kind = case.device + ("/resident" if case.params["data_on_device"] else "")
        cells.setdefault(key, {})[kind] = case
    print(f"{'batch':>5} {'hidden':>8} {'cpu/s':>9} {'cuda/s':>9} {'speedup [95% CI]':>24} "
          f"{'transfer':>8} {'resident/s':>10} {'speedup [95% CI]':>24}")
    for (batch_size, hidden), cases in sorted(cells.items()):
        grid = {kind: (case.setup(), torch.device(case.device)) for kind, case in cases.items()}
        for one_epoch, device in grid.values():  # a warm-up epoch each: allocator, kernels, DataLoader
            warmup(one_epoch, 1, device)
        timed = time_rounds(grid, args.rounds)
        rate = {kind: statistics.median(s / t for t, _, s in rows) for kind, rows in timed.items()}
        line = f"{batch_size:>5} {hidden:>8} {rate['cpu']:>9.0f}"
        for kind in ("cuda", "cuda/resident"):
            if kind not in timed:
                continue
            low, mid, high = speedup_interval([c[0] / g[0] for c, g in zip(timed["cpu"], timed[kind], strict=True)])
            share = statistics.median(tr / t for t, tr, _ in timed[kind])
            transfer = f" {share:>7.0%}" if kind == "cuda" else ""
            line += f" {rate[kind]:>9.0f} {f'{mid:.2f}x [{low:.2f}, {high:.2f}]':>24}{transfer}"
        print(line)
    print("transfer = median share of the cuda (DataLoader) epoch spent copying batches host to device; "
          "resident = training set on the GPU once, no copy per batch")


if __name__ == "__main__":
    main()
