"""Measure the regression gate's false-alarm rate and power on this machine, with real interleaved samples.

    PYTHONPATH=. python bench/gate_error_rates.py [--pairs 25] [--slowdowns 1.05,1.10,1.15,1.20,1.25] [--case NAME]

Each pair is one real gate run without the checkout step: fresh worker processes of this checkout, the cases set up,
warmed up and timed A B A B exactly as `python -m amal.gate` does, then compared with the gate's defaults. Side A
is the unchanged code; side B is another process of the same code (factor 1: a false alarm if flagged) or of the same
code with a planted slowdown (bench/planted_slowdown.py: real extra work in every round, switched on by
AMAL_PLANTED_SLOWDOWN in that worker's environment only). Within a pair all factors are timed against the same A,
one after the other, so that load on the machine hits every factor alike. Prints the rate flagged per factor with a
Clopper–Pearson 95% interval; writes every pair's comparison and raw rounds as parquet under --output.
"""

import sys
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
from scipy.stats import binomtest
from tqdm import tqdm

from amal import compare
from amal.errors import Parser, UsageError, sigterm_as_interrupt
from amal.experiments.options import floats
from amal.gate import GateConfig, common_cases, pinned_cpus, time_all
from amal.gate_processes import pin_sides, start_side
from amal.samples import ROUND_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
PLANT = Path(__file__).resolve().with_name("planted_slowdown.py")


def one_pair(factors: tuple[float, ...], cfg: GateConfig, compare_cfg: compare.CompareConfig):
    """One A side against one B side per factor, each of cfg.processes workers as in the gate: (comparison rows, raw
    rounds) tagged with the factor."""
    results, rounds = [], []
    with ExitStack() as stack:
        a = start_side(ROOT, "A", cfg.processes, stack)
        for factor in factors:
            with ExitStack() as b_stack:  # one B side at a time: the machine holds 2 x processes workers at most
                b = start_side(ROOT, f"B x{factor}", cfg.processes, b_stack, wrap=PLANT,
                               env={"AMAL_PLANTED_SLOWDOWN": str(factor)})
                cases, _ = common_cases(a, b, cfg)
                pin_sides(pinned_cpus(cfg), a, b)  # once imported, as the gate does
                sample, _ = time_all(a, b, cases, cfg)
            sides = {side: sample[sample["side"] == side] for side in ("baseline", "candidate")}
            result = compare.compare(sides["baseline"], sides["candidate"], compare_cfg)
            results.append(result.assign(factor=factor, flagged=(result["verdict"] == "regressed").any()))
            rounds.append(sample.assign(factor=factor))
    return pd.concat(results, ignore_index=True), pd.concat(rounds, ignore_index=True)


def rates(results: pd.DataFrame) -> pd.DataFrame:
    """Per planted factor: pairs, pairs flagged, the rate with its Clopper–Pearson 95% interval, realised ratios."""
    per_pair = results.groupby(["factor", "pair"]).agg(flagged=("flagged", "first"), ratio=("ratio", "median"))
    rows = []
    for factor, part in per_pair.groupby(level="factor"):
        flagged, n = int(part["flagged"].sum()), len(part)
        interval = binomtest(flagged, n).proportion_ci(confidence_level=0.95, method="exact")
        rows.append({"planted": factor, "pairs": n, "flagged": flagged, "rate": flagged / n,
                     "rate_ci95": f"[{interval.low:.2f}, {interval.high:.2f}]",
                     "ratio_median": part["ratio"].median(), "ratio_min": part["ratio"].min(),
                     "ratio_max": part["ratio"].max()})
    return pd.DataFrame(rows)


def not_interleaved(rounds: pd.DataFrame, compare_cfg: compare.CompareConfig, count: int = 200) -> pd.DataFrame:
    """Unchanged code compared across pairs (A of pair i against A' of pair j != i): runs made minutes apart, in
    other processes, as a gate that does not interleave would compare them. One row per comparison."""
    null = rounds[rounds["factor"] == 1.0]
    pairs = sorted(null["pair"].unique())
    combos = [(i, j) for i in pairs for j in pairs if i != j][:count]
    rows = []
    for i, j in combos:
        base = null[(null["pair"] == i) & (null["side"] == "baseline")]
        cand = null[(null["pair"] == j) & (null["side"] == "candidate")]
        result = compare.compare(base, cand, compare_cfg)
        rows.append({"baseline_pair": i, "candidate_pair": j, "ratio": result["ratio"].median(),
                     "regressed": (result["verdict"] == "regressed").any(),  # what fails the gate, as in rates()
                     "either": (result["verdict"] != "unchanged").any()})
    return pd.DataFrame(rows)


def not_interleaved_line(cross: pd.DataFrame) -> str:
    return (f"unchanged code, not interleaved (A of one pair against A' of another, {len(cross)} comparisons): "
            f"regressed (what fails the gate) in {cross['regressed'].mean():.1%}, regressed or improved in "
            f"{cross['either'].mean():.1%}, ratios {cross['ratio'].min():.3f} to {cross['ratio'].max():.3f}")


def check_args(args) -> None:
    """UsageError for a value that would fail (or mean nothing) only after minutes of timing."""
    if args.pairs < 1:
        raise UsageError(f"--pairs must be at least 1, got {args.pairs}")
    if not 1 <= args.processes <= GateConfig.min_rounds:  # as the gate: each process gets a share of the rounds
        raise UsageError(f"need 1 <= --processes <= {GateConfig.min_rounds} (the gate's --min-rounds), "
                         f"got {args.processes}")
    if any(factor < 1 for factor in args.slowdowns):
        raise UsageError(f"--slowdowns are factors of at least 1 (a planted slowdown), got {min(args.slowdowns):g}")
    if args.from_rounds and not args.from_rounds.is_file():
        raise UsageError(f"--from-rounds {args.from_rounds}: no such file")
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"--output {args.output} is a file, not a folder")


def main(argv=None) -> int:
    try:
        with sigterm_as_interrupt():
            return measure(argv)
    except UsageError as exc:
        print(f"gate_error_rates.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130


def measure(argv=None) -> int:
    parser = Parser(prog="gate_error_rates.py", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=25, help="gate runs per factor (default: %(default)s)")
    parser.add_argument("--slowdowns", type=floats, default=(1.05, 1.10, 1.15, 1.20, 1.25),
                        help="planted slowdown factors (default: 1.05,1.10,1.15,1.20,1.25); 1 is always measured")
    parser.add_argument("--profile", default="quick", choices=("quick", "full"))
    parser.add_argument("--processes", type=int, default=GateConfig.processes,
                        help="worker processes per side, as the gate's --processes (default: %(default)s)")
    parser.add_argument("--case", action="append", default=[], help="only this case (repeatable; default: all)")
    parser.add_argument("--output", type=Path, default=Path(".benchmarks/gate-error-rates"))
    parser.add_argument("--from-rounds", type=Path, metavar="FILE",
                        help="no timing: the not-interleaved comparison of the rounds a run saved (*-rounds.parquet)")
    args = parser.parse_args(argv)
    check_args(args)
    if args.from_rounds:
        try:
            saved = pd.read_parquet(args.from_rounds)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise UsageError(f"--from-rounds {args.from_rounds}: unreadable ({str(exc).splitlines()[0]})") from exc
        if not {"factor", "pair", "side", *ROUND_COLUMNS} <= set(saved.columns):
            raise UsageError(f"--from-rounds {args.from_rounds}: not the rounds this script saves (*-rounds.parquet)")
        print(not_interleaved_line(not_interleaved(saved, compare.CompareConfig())))
        return 0
    cfg = replace(GateConfig(baseline="HEAD"), profile=args.profile, only=tuple(args.case), processes=args.processes)
    compare_cfg = compare.CompareConfig()
    factors = (1.0, *sorted(set(args.slowdowns) - {1.0}))
    results, rounds = [], []
    for pair in tqdm(range(args.pairs), desc="pairs", disable=not sys.stderr.isatty()):
        result, sample = one_pair(factors, cfg, compare_cfg)
        results.append(result.assign(pair=pair))
        rounds.append(sample.assign(pair=pair))
    results, rounds = pd.concat(results, ignore_index=True), pd.concat(rounds, ignore_index=True)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    results.to_parquet(args.output / f"{stamp}-comparisons.parquet")
    rounds.to_parquet(args.output / f"{stamp}-rounds.parquet")
    summary = rates(results)
    print(compare.markdown(summary.round(3).astype(str)))
    reliable = summary[(summary["planted"] > 1) & (summary["rate"] >= 0.95)]["planted"]
    print(f"\ngate defaults: threshold {compare_cfg.threshold}, alpha {compare_cfg.alpha} (Holm), up to {cfg.rounds} "
          f"rounds per side over {cfg.processes} process(es); smallest slowdown flagged in >= 95% of pairs: "
          f"{reliable.min() if len(reliable) else 'none of those planted'}")
    if args.pairs > 1:
        print(not_interleaved_line(not_interleaved(rounds, compare_cfg)))
    print(f"comparisons and raw rounds: {args.output}/{stamp}-*.parquet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
