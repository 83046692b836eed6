"""Raw benchmark rounds in and out: pytest-benchmark JSON (saved with --benchmark-save-data) and the results store.

Every reader returns the same tidy frame, one row per timed round: benchmark, bench_group, round (from 1), round_s.
"""

import json
import statistics
from pathlib import Path

import pandas as pd

from amal import store
from amal.errors import UsageError

ROUND_COLUMNS = ["benchmark", "bench_group", "round", "round_s"]
SAVE_DATA_HINT = "save the run with pytest --benchmark-save-data (--benchmark-json files always keep them)"


def benchmark_name(bench: dict) -> str | None:
    """What a pytest-benchmark record is called in amal: its case name (extra_info["case"], as the results store and
    the gate name it) when there is one, else its test name; None when it has neither."""
    extra = bench.get("extra_info")
    case = extra.get("case") if isinstance(extra, dict) else None
    return case or bench.get("name") or bench.get("fullname")


def rounds_from_benchmark_json(doc: dict, source: str) -> pd.DataFrame:
    """The raw rounds of a parsed pytest-benchmark JSON document (`stats.data`: seconds per round)."""
    benchmarks = doc.get("benchmarks") if isinstance(doc, dict) else None
    if not isinstance(benchmarks, list):
        raise UsageError(f"{source}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    rows = []
    for bench in benchmarks:
        stats = bench.get("stats") if isinstance(bench, dict) else None
        name = benchmark_name(bench) if isinstance(bench, dict) else None
        if not isinstance(stats, dict) or not name:
            raise UsageError(f"{source}: malformed benchmark entry (needs 'fullname' or 'name', and 'stats')")
        data = stats.get("data")
        if not data:
            raise UsageError(f"{source}: no raw round times for {name}; {SAVE_DATA_HINT}")
        group = bench.get("group") or ""
        rows += [(name, group, i, float(seconds)) for i, seconds in enumerate(data, start=1)]
    return pd.DataFrame(rows, columns=ROUND_COLUMNS)


def read_benchmark_json(path: Path) -> pd.DataFrame:
    """Raw rounds of a pytest-benchmark JSON file; UsageError for unreadable, malformed or data-less files."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: malformed JSON ({exc})") from exc
    return rounds_from_benchmark_json(doc, str(path))


def rounds_from_store(rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """The benchmark rounds (experiment == 'bench') among rows of the results store."""
    bench = rows[rows["experiment"] == "bench"] if "experiment" in rows else rows.iloc[0:0]
    bench = bench.dropna(subset=["benchmark", "round_s"]) if len(bench) else bench
    if bench.empty:
        raise UsageError(f"{source}: no benchmark rounds (rows with experiment 'bench' and round_s)")
    out = bench.assign(bench_group=bench["bench_group"].fillna(""))[ROUND_COLUMNS]
    return out.sort_values(["benchmark", "round"]).reset_index(drop=True)


def read_run(spec: str, results_dir: Path | None = None) -> pd.DataFrame:
    """Raw rounds from a pytest-benchmark .json file, a run's .parquet file, or a run id of the results store."""
    path = Path(spec)
    if path.suffix == ".json":
        return read_benchmark_json(path)
    if path.suffix != ".parquet":
        results_dir = Path(results_dir or store.default_results_dir())
        path = results_dir / f"{spec}.parquet"
        if not path.is_file():
            raise UsageError(f"{spec}: neither a .json/.parquet file nor a run id in {results_dir}")
    try:
        rows = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise UsageError(f"{path}: unreadable parquet file ({str(exc).splitlines()[0]})") from exc
    return rounds_from_store(rows, str(path))


def benchmark_stats(seconds: list[float]) -> dict:
    """pytest-benchmark's main statistics of one benchmark, with the raw `data` (seconds per round)."""
    q1, _, q3 = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else (seconds[0],) * 3
    mean = statistics.fmean(seconds)
    return {"min": min(seconds), "max": max(seconds), "mean": mean,
            "stddev": statistics.stdev(seconds) if len(seconds) > 1 else 0.0, "rounds": len(seconds),
            "median": statistics.median(seconds), "q1": q1, "q3": q3, "iqr": q3 - q1, "ops": 1 / mean,
            "total": sum(seconds), "data": list(seconds), "iterations": 1}


def to_benchmark_json(rounds: pd.DataFrame, params: dict, machine_info: dict, commit_info: dict,
                      when: str) -> dict:
    """Rounds as a pytest-benchmark-style document (readable by `amal.compare` and pytest-benchmark's tools)."""
    benchmarks = []
    for (name, group), part in rounds.groupby(["benchmark", "bench_group"], sort=True):
        seconds = part.sort_values("round")["round_s"].tolist()
        benchmarks.append({"group": group or None, "name": name, "fullname": name, "params": None, "param": None,
                           "extra_info": params.get(name, {}), "options": {"timer": "perf_counter_ns"},
                           "stats": benchmark_stats(seconds)})
    return {"machine_info": machine_info, "commit_info": commit_info, "benchmarks": benchmarks,
            "datetime": when, "version": "amal"}
