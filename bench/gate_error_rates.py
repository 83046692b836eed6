"""Measure the regression gate's false-alarm rate and power on this machine, with real interleaved samples.

    PYTHONPATH=. python bench/gate_error_rates.py [--pairs 25] [--slowdowns 1.05,1.10,1.15,1.20,1.25] [--case NAME]

Each pair is one real gate run per factor without the checkout step: fresh worker processes of this checkout, the
cases set up, warmed up and timed A B A B exactly as `python -m amal.gate` does, compared with the gate's defaults, and
a case that regressed timed again in fresh processes as the gate does (unless --no-confirm). Side A is the unchanged
code; side B is the same code (factor 1: a false alarm if the gate fails) or the same code with a planted slowdown
(bench/planted_slowdown.py: real extra work in every round, switched on by AMAL_PLANTED_SLOWDOWN in that worker's
environment only). Within a pair the factors are timed one after the other, so that load on the machine hits every
factor alike. Prints per factor how many pairs the first timing flagged and how many the gate failed (flagged, then
confirmed), the gate's rate with a Clopper–Pearson 95% interval; writes every pair's comparison and raw rounds as
parquet under --output.
"""

import sys
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
from amal.gate import GateConfig, comparison, confirmed, timing
from amal.samples import ROUND_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
PLANT = Path(__file__).resolve().with_name("planted_slowdown.py")


def sides(factor: float) -> dict:
    """The gate's two checkouts, both this one: B with the planted slowdown `factor` (1: none)."""
    return {"baseline": {"checkout": ROOT, "label": "A"},
            "candidate": {"checkout": ROOT, "label": f"B x{factor}", "wrap": PLANT,
                          "env": {"AMAL_PLANTED_SLOWDOWN": str(factor)}}}


def one_pair(factors: tuple[float, ...], cfg: GateConfig, compare_cfg: compare.CompareConfig):
    """One gate run per factor, A against B in fresh workers as the gate starts them, a case that regressed timed
    again in fresh ones when cfg.confirm: (the first timing's comparison rows, with whether it flagged a case and
    whether the gate failed; every round, tagged with the factor and the timing)."""
    results, rounds = [], []
    for factor in factors:
        first = timing(sides(factor), cfg, compare_cfg, quiet=True)
        result = final = comparison(first.rounds, compare_cfg)
        again = None
        if cfg.confirm:
            _, _, again, final = confirmed(sides(factor), first.rounds, result, cfg, compare_cfg, quiet=True)
        results.append(result.assign(factor=factor, flagged=(result["verdict"] == "regressed").any(),
                                     failed=(final["verdict"] == "regressed").any()))
        rounds += [first.rounds.assign(factor=factor, timing="first")]
        rounds += [again.rounds.assign(factor=factor, timing="confirmation")] if again else []
    return pd.concat(results, ignore_index=True), pd.concat(rounds, ignore_index=True)


def rates(results: pd.DataFrame) -> pd.DataFrame:
    """Per planted factor: pairs, pairs the first timing flagged, pairs the gate failed (flagged and confirmed), the
    gate's rate with its Clopper–Pearson 95% interval, realised ratios (first timing)."""
    per_pair = results.groupby(["factor", "pair"]).agg(flagged=("flagged", "first"), failed=("failed", "first"),
                                                       ratio=("ratio", "median"))
    rows = []
    for factor, part in per_pair.groupby(level="factor"):
        failed, n = int(part["failed"].sum()), len(part)
        interval = binomtest(failed, n).proportion_ci(confidence_level=0.95, method="exact")
        rows.append({"planted": factor, "pairs": n, "flagged_first": int(part["flagged"].sum()), "failed": failed,
                     "rate": failed / n, "rate_ci95": f"[{interval.low:.2f}, {interval.high:.2f}]",
                     "ratio_median": part["ratio"].median(), "ratio_min": part["ratio"].min(),
                     "ratio_max": part["ratio"].max()})
    return pd.DataFrame(rows)


def not_interleaved(rounds: pd.DataFrame, compare_cfg: compare.CompareConfig, count: int = 200) -> pd.DataFrame:
    """Unchanged code compared across pairs (A of pair i against A' of pair j != i): runs made minutes apart, in
    other processes, as a gate that does not interleave would compare them. One row per comparison."""
    first = rounds["timing"] == "first" if "timing" in rounds else True  # (rounds saved before confirmations)
    null = rounds[(rounds["factor"] == 1.0) & first]
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
    parser.add_argument("--no-confirm", dest="confirm", action="store_false",
                        help="as the gate's --no-confirm: the first timing decides")
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
    cfg = replace(GateConfig(baseline="HEAD"), profile=args.profile, only=tuple(args.case), processes=args.processes,
                  confirm=args.confirm)
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
          f"rounds per side over {cfg.processes} process(es), {'with' if cfg.confirm else 'without'} confirmation; "
          "smallest slowdown that fails the gate in >= 95% of pairs: "
          f"{reliable.min() if len(reliable) else 'none of those planted'}")
    if args.pairs > 1:
        print(not_interleaved_line(not_interleaved(rounds, compare_cfg)))
    print(f"comparisons and raw rounds: {args.output}/{stamp}-*.parquet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
