"""`python -m amal.compare BASELINE CANDIDATE`: did any benchmark get slower, beyond a threshold and beyond noise?

A benchmark regresses only when both hold: its slowdown ratio exceeds the threshold (default 1.10, per group with
--group-threshold), and a two-sided Mann–Whitney U test on the raw rounds is significant at alpha (default 0.01)
after Holm's correction over the benchmarks compared. Improvements are the mirror image (ratio below 1 / threshold,
significant). Two-sided, because both directions are reported: one one-sided test per direction would double the
false-alarm level; the direction is read from the ratio.

The ratio is the Hodges–Lehmann estimate that goes with the rank test: exp(median over all pairs of rounds of
log(candidate_j / baseline_i)), with a percentile bootstrap interval. On a shared machine round times are often
bimodal (a round sharing its core with another process takes twice as long); the ratio of the two medians then
jumps between the modes (measured: 0.58 for a planted 1.10x slowdown), while the pairwise estimate stays on the
shift. The ratio of medians is reported beside it. Exit code 1 when anything regressed, 0 otherwise, 2 for unusable
input (the same file or run as both baseline and candidate too), 130 when interrupted (Ctrl-C, SIGTERM)."""

import argparse
import json
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from amal.errors import Parser, UsageError, folder, sigterm_as_interrupt
from amal.report.format import seconds
from amal.samples import read_run, run_source, settings_change
from amal.stats import ESTIMATE_ROUNDS, holm, rank_test_p, ratio_ci, shift_ratio, smallest_p, thin

VERDICTS = ("regressed", "improved", "unchanged")
FORMATS = ("table", "markdown", "json")
# Bootstrap resamples allowed. Below 100 the 2.5 % and 97.5 % percentiles rest on fewer than three resamples. Above
# 100,000 nothing is gained: an endpoint's Monte Carlo error in coverage, sqrt(0.025 * 0.975 / B), is 0.05
# percentage points there (0.35 at the default 2,000), far below what the three printed decimals of the ratio show,
# while the time grows linearly: about 0.7 ms per resample and benchmark at 200 rounds a side, so 100,000 take some
# 70 s per benchmark, and 10^9 would have taken days without a line of output.
RESAMPLES = (100, 100_000)


@dataclass(frozen=True)
class CompareConfig:
    threshold: float = 1.10  # slowdown factor (median ratio) a change must exceed to count
    group_thresholds: dict = field(default_factory=dict)  # bench_group -> its own threshold
    alpha: float = 0.01  # family-wise significance level, after Holm's correction
    confidence: float = 0.95  # level of the bootstrap confidence interval of the ratio
    resamples: int = 2000  # bootstrap resamples
    seed: int = 0  # seeds the bootstrap (same inputs, same interval)


def check_config(cfg: CompareConfig) -> CompareConfig:
    """UsageError for a threshold below 1, alpha or confidence outside (0, 1), resamples outside RESAMPLES, or a
    negative seed (NumPy's generators take none)."""
    options = [("--threshold", cfg.threshold), *((f"--group-threshold {group}", value)
                                               for group, value in cfg.group_thresholds.items())]
    for option, value in options:
        if not 1.0 <= value < float("inf"):
            raise UsageError(f"{option}: must be a finite factor >= 1 (1.10 = 10% slower), got {value}")
    if not 0.0 < cfg.alpha < 1.0:
        raise UsageError(f"--alpha must be in (0, 1), got {cfg.alpha}")
    if not 0.0 < cfg.confidence < 1.0:
        raise UsageError(f"--confidence must be in (0, 1), got {cfg.confidence}")
    if not RESAMPLES[0] <= cfg.resamples <= RESAMPLES[1]:
        raise UsageError(f"--resamples must be from {RESAMPLES[0]:,} to {RESAMPLES[1]:,}, got {cfg.resamples}")
    if cfg.seed < 0:
        raise UsageError(f"--seed must be at least 0, got {cfg.seed}")
    return cfg


def verdict(ratio: float, p_adjusted: float, threshold: float, alpha: float) -> str:
    """'regressed' when ratio > threshold and significant, 'improved' when ratio < 1/threshold and significant."""
    if p_adjusted < alpha and ratio > threshold:
        return "regressed"
    if p_adjusted < alpha and ratio < 1.0 / threshold:
        return "improved"
    return "unchanged"


def setting_differences(baseline: pd.DataFrame, candidate: pd.DataFrame) -> dict[str, str]:
    """Benchmarks in both round frames whose settings differ, e.g. {'lr-sweep/manual/cpu': 'epochs 100 vs 1000'}:
    a setting counts where both sides record it."""
    first = [frame.groupby("benchmark")["settings"].first() if "settings" in frame else pd.Series(dtype=object)
             for frame in (baseline, candidate)]
    changes = {name: settings_change(first[0][name], first[1][name])
               for name in sorted(set(first[0].index) & set(first[1].index))}
    return {name: change for name, change in changes.items() if change}


def compare(baseline: pd.DataFrame, candidate: pd.DataFrame, cfg: CompareConfig = CompareConfig()) -> pd.DataFrame:
    """One row per benchmark present in both round frames (amal.samples) with the same settings: medians, ratio,
    CI, p, Holm p, verdict."""
    different = setting_differences(baseline, candidate)
    common = sorted(set(baseline["benchmark"]) & set(candidate["benchmark"]) - different.keys())
    rows = []
    for name in common:
        rng = np.random.default_rng([cfg.seed, zlib.crc32(name.encode())])  # per benchmark: other cases change nothing
        base = baseline.loc[baseline["benchmark"] == name, "round_s"].to_numpy(dtype=float)
        cand_rows = candidate[candidate["benchmark"] == name]
        cand = cand_rows["round_s"].to_numpy(dtype=float)
        group = cand_rows["bench_group"].iloc[0]
        ratio = float(shift_ratio(thin(base, ESTIMATE_ROUNDS, rng), thin(cand, ESTIMATE_ROUNDS, rng)))
        low, high = ratio_ci(base, cand, cfg.confidence, cfg.resamples, rng)
        rows.append({"benchmark": name, "bench_group": group, "baseline_rounds": len(base),
                     "candidate_rounds": len(cand), "baseline_median_s": float(np.median(base)),
                     "candidate_median_s": float(np.median(cand)),
                     "median_ratio": float(np.median(cand) / np.median(base)), "ratio": ratio, "ratio_ci_low": low,
                     "ratio_ci_high": high, "p": rank_test_p(base, cand),
                     "threshold": cfg.group_thresholds.get(group, cfg.threshold)})
    result = pd.DataFrame(rows, columns=[
        "benchmark", "bench_group", "baseline_rounds", "candidate_rounds", "baseline_median_s", "candidate_median_s",
        "median_ratio", "ratio", "ratio_ci_low", "ratio_ci_high", "p", "threshold"])
    result["p_holm"] = holm(result["p"]) if len(result) else []
    result["verdict"] = [verdict(r.ratio, r.p_holm, r.threshold, cfg.alpha) for r in result.itertuples()]
    return result


def display_frame(result: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """The result as text columns: name, medians with rounds, ratio with its CI, p (Holm), verdict."""
    level = f"{confidence:.0%}"
    return pd.DataFrame({
        "benchmark": result["benchmark"],
        "baseline": [f"{seconds(r.baseline_median_s)} (n={r.baseline_rounds})" for r in result.itertuples()],
        "candidate": [f"{seconds(r.candidate_median_s)} (n={r.candidate_rounds})" for r in result.itertuples()],
        f"ratio [{level} CI]": [f"{r.ratio:.3f} [{r.ratio_ci_low:.3f}, {r.ratio_ci_high:.3f}]"
                                for r in result.itertuples()],
        "threshold": [f"{t:.2f}" for t in result["threshold"]],
        "p (Holm)": [f"{p:.2g}" for p in result["p_holm"]],
        "verdict": result["verdict"].str.upper().where(result["verdict"] != "unchanged", "unchanged"),
    })


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame of text."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def notes(result: pd.DataFrame, baseline: pd.DataFrame, candidate: pd.DataFrame, alpha: float) -> list[str]:
    """Lines under the table: the tally, benchmarks on one side only, benchmarks too short to ever be significant."""
    counts = result["verdict"].value_counts()
    lines = [f"{len(result)} compared (Mann–Whitney U two-sided, Holm over {len(result)}, alpha {alpha:g}): "
             + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)]
    only_base = sorted(set(baseline["benchmark"]) - set(candidate["benchmark"]))
    only_cand = sorted(set(candidate["benchmark"]) - set(baseline["benchmark"]))
    if only_base:
        lines.append("only in the baseline (not compared): " + ", ".join(only_base))
    if only_cand:
        lines.append("only in the candidate (not compared): " + ", ".join(only_cand))
    lines += [f"{name}: not compared, its settings differ ({change})"
              for name, change in setting_differences(baseline, candidate).items()]
    blind = [r.benchmark for r in result.itertuples()
             if smallest_p(r.baseline_rounds, r.candidate_rounds) * len(result) >= alpha]
    if blind:
        lines.append(f"too few rounds to be flagged however far apart they are (p cannot fall below alpha/"
                     f"{len(result)} = {alpha / len(result):.2g}, what Holm's correction asks of the smallest p): "
                     + ", ".join(blind))
    return lines


def render(result: pd.DataFrame, baseline: pd.DataFrame, candidate: pd.DataFrame, cfg: CompareConfig,
           fmt: str, more_notes: list[str] = ()) -> str:
    """The comparison as a text table, a Markdown table or JSON (records plus the tally), then the notes."""
    lines = [*notes(result, baseline, candidate, cfg.alpha), *more_notes]
    if fmt == "json":
        counts = result["verdict"].value_counts()
        return json.dumps({"alpha": cfg.alpha, "confidence": cfg.confidence,
                           "counts": {v: int(counts.get(v, 0)) for v in VERDICTS},
                           "benchmarks": result.to_dict(orient="records"), "notes": lines[1:]}, indent=2)
    frame = display_frame(result, cfg.confidence)
    table = markdown(frame) if fmt == "markdown" else frame.to_string(index=False)
    return "\n".join([table, "", *lines])


def group_threshold(text: str) -> tuple[str, float]:
    """'autoencoder=1.2' -> ('autoencoder', 1.2)."""
    group, sep, value = text.rpartition("=")
    try:
        if not sep or not group:
            raise ValueError
        return group, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GROUP=FACTOR (e.g. autoencoder=1.2), got {text!r}") from None


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The statistical options, shared with `python -m amal.gate`."""
    parser.add_argument("--threshold", type=float, default=CompareConfig.threshold,
                        help="slowdown factor a change must exceed to count (default: %(default)s)")
    parser.add_argument("--group-threshold", type=group_threshold, action="append", default=[],
                        metavar="GROUP=FACTOR", help="threshold of one benchmark group (repeatable)")
    parser.add_argument("--alpha", type=float, default=CompareConfig.alpha,
                        help="significance level after Holm's correction (default: %(default)s)")
    parser.add_argument("--confidence", type=float, default=CompareConfig.confidence,
                        help="level of the bootstrap interval of the ratio (default: %(default)s)")
    parser.add_argument("--resamples", type=int, default=CompareConfig.resamples,
                        help=f"bootstrap resamples, {RESAMPLES[0]:,} to {RESAMPLES[1]:,} (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=CompareConfig.seed, help="bootstrap seed (default: %(default)s)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output (default: %(default)s)")


def config_from_args(args) -> CompareConfig:
    return check_config(CompareConfig(threshold=args.threshold, group_thresholds=dict(args.group_threshold),
                                      alpha=args.alpha, confidence=args.confidence, resamples=args.resamples,
                                      seed=args.seed))


def build_parser() -> Parser:
    parser = Parser(prog="python -m amal.compare", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("baseline", help="pytest-benchmark .json (with --benchmark-save-data), run .parquet or run id")
    parser.add_argument("candidate", help="the same kinds as BASELINE")
    parser.add_argument("--results", type=folder, default=None,
                        help="results directory where run ids are looked up (default: $AMAL_RESULTS or ./results)")
    add_compare_arguments(parser)
    return parser


def check_groups(cfg: CompareConfig, groups: set[str]) -> None:
    """UsageError for a --group-threshold naming a group no benchmark has (it would silently keep the default)."""
    unknown = sorted(set(cfg.group_thresholds) - groups)
    if unknown:
        raise UsageError(f"--group-threshold {', '.join(unknown)}: no benchmark of that group "
                         f"(groups: {', '.join(sorted(g for g in groups if g)) or 'none'})")


def gate(baseline: pd.DataFrame, candidate: pd.DataFrame, cfg: CompareConfig, fmt: str,
         more_notes: list[str] = (), result: pd.DataFrame | None = None) -> int:
    """Compare (unless the caller did: `result`, compare's of these rounds), print the table with its notes (and
    `more_notes`, the caller's), return the exit code (1 when anything regressed)."""
    check_groups(cfg, set(baseline["bench_group"]) | set(candidate["bench_group"]))
    result = compare(baseline, candidate, cfg) if result is None else result
    if result.empty:
        different = setting_differences(baseline, candidate)
        if different:  # the same names, other work: a ratio would compare the settings, not the code
            name, change = next(iter(different.items()))
            raise UsageError(f"no benchmark in common with the same settings: {len(different)} differ, e.g. {name} "
                             f"({change})")
        raise UsageError("no benchmark in common between baseline and candidate")
    print(render(result, baseline, candidate, cfg, fmt, more_notes))
    return int((result["verdict"] == "regressed").any())


def check_not_same(baseline: str, candidate: str, results_dir: Path | None) -> None:
    """UsageError when both name one file (the same path, a link to it, a run id and its .parquet file): it would
    be compared with itself, 'unchanged' whatever the code did. Call once both were read (both files exist)."""
    path = run_source(baseline, results_dir)
    if os.path.samefile(path, run_source(candidate, results_dir)):
        raise UsageError(f"baseline and candidate are the same file ({path}): compared with itself it says nothing "
                         "about a change")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            cfg = config_from_args(args)
            baseline = read_run(args.baseline, args.results)
            candidate = read_run(args.candidate, args.results)
            check_not_same(args.baseline, args.candidate, args.results)
            return gate(baseline, candidate, cfg, args.format)
    except UsageError as exc:
        print(f"python -m amal.compare: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was compared", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
