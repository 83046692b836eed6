"""Raw benchmark rounds in and out: pytest-benchmark JSON (saved with --benchmark-save-data) and the results store.

Every reader returns the same tidy frame, one row per timed round: benchmark, bench_group, round (from 1), round_s,
and settings (what defined the benchmark's work, as JSON; see SETTING_KEYS).
"""

import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd
from pytest_benchmark.stats import Stats

from amal import store
from amal.errors import UsageError

ROUND_COLUMNS = ["benchmark", "bench_group", "round", "round_s", "settings"]
SAVE_DATA_HINT = "save the run with pytest --benchmark-save-data (--benchmark-json files always keep them)"
# what defines a benchmark's work, where a record says it (extra_info / store columns): two samples that differ in
# one of these timed different work, and their ratio says nothing about the code
SETTING_KEYS = ("profile", "device", "num_threads", "implementation", "batch_size", "epochs", "lr", "hidden",
                "loss_fn", "data_on_device", "num_workers", "normalize", "data_source")


def plain(value):
    """A setting as a plain Python value: numpy scalars unwrapped, whole floats as ints (16.0 in a float column of
    the store is the 16 of a JSON file), NaN as None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float):
        return None if math.isnan(value) else int(value) if value.is_integer() else value
    return value


def settings_text(record: dict) -> str:
    """The SETTING_KEYS a record has, as canonical JSON ('{}' when it has none)."""
    known = {key: plain(record[key]) for key in SETTING_KEYS if key in record}
    return json.dumps({key: value for key, value in known.items() if value is not None}, sort_keys=True, default=str)


def settings_change(baseline: str, candidate: str) -> str:
    """'epochs 100 vs 1000' for the settings both texts record with other values; '' when they agree."""
    a, b = json.loads(baseline or "{}"), json.loads(candidate or "{}")
    return ", ".join(f"{key} {a[key]} vs {b[key]}" for key in sorted(a.keys() & b.keys()) if a[key] != b[key])


def run_settings(row: dict) -> dict:
    """A stored round's settings, less the thread count of gate runs stored before the gate recorded its workers'
    (those rows carry no case parameters, and their num_threads is the gate process's own)."""
    old_gate = str(row.get("tag") or "").startswith("gate ") and pd.isna(row.get("implementation"))
    return {key: value for key, value in row.items() if not (old_gate and key == "num_threads")}


def check_round_times(data, name: str, source: str) -> list[float]:
    """The round times as floats; UsageError unless every one is a finite number of seconds above zero."""
    if not isinstance(data, list):
        raise UsageError(f"{source}: round times of {name} are not a list")
    seconds = [round_seconds(value) for value in data]
    bad = [value for value, t in zip(data, seconds, strict=True) if t is None]
    if bad:
        raise UsageError(f"{source}: round times of {name} must be finite seconds above zero, found {bad[0]!r}")
    return seconds


def round_seconds(value) -> float | None:
    """One round time as float seconds; None unless it is a finite number above zero (a bool is no number here)."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def check_unique_rounds(rounds: pd.DataFrame, source: str) -> None:
    """UsageError when a benchmark has a round number twice: two benchmarks went by one name."""
    twice = rounds[rounds.duplicated(["benchmark", "round"])]
    if len(twice):
        name, number = twice.iloc[0][["benchmark", "round"]]
        raise UsageError(f"{source}: benchmark {name} has round {int(number)} twice: two benchmarks are both called "
                         f"{name}")


def benchmark_name(bench: dict) -> str | None:
    """What a pytest-benchmark record is called in amal: its case name (extra_info["case"], as the results store and
    the gate name it) when there is one, else its test name; None when it has neither (a name that is no string,
    in a file written by other tools, counts as none)."""
    extra = bench.get("extra_info")
    names = (extra.get("case") if isinstance(extra, dict) else None, bench.get("name"), bench.get("fullname"))
    return next((name for name in names if isinstance(name, str) and name), None)


def benchmark_names(benchmarks: list[dict]) -> list[str | None]:
    """benchmark_name of each record of one session, where tests of one name in several files (two test_step) take
    their full names ('a.py::test_step'): the JSON reader and the store export name them alike."""
    names = [benchmark_name(bench) for bench in benchmarks]
    count = Counter(names)
    return [bench["fullname"] if count[name] > 1 and isinstance(bench.get("fullname"), str) and bench["fullname"]
            else name for bench, name in zip(benchmarks, names, strict=True)]


def rounds_from_benchmark_json(doc: dict, source: str) -> pd.DataFrame:
    """The raw rounds of a parsed pytest-benchmark JSON document (`stats.data`: seconds per round), with each
    benchmark's settings from its extra_info (not from machine_info: pytest-benchmark records no thread count
    there, and gates before per-side settings recorded the gate process's own instead of its workers')."""
    benchmarks = doc.get("benchmarks") if isinstance(doc, dict) else None
    if not isinstance(benchmarks, list):
        raise UsageError(f"{source}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    for bench in benchmarks:
        if not isinstance(bench, dict) or not isinstance(bench.get("stats"), dict) or not benchmark_name(bench):
            raise UsageError(f"{source}: malformed benchmark entry (needs 'fullname' or 'name', and 'stats')")
        extra = bench.get("extra_info")
        case = extra.get("case") if isinstance(extra, dict) else None
        if case is not None and not isinstance(case, str):  # the name it would pair by: not to be guessed
            raise UsageError(f"{source}: malformed benchmark entry ({benchmark_name(bench)}: its case is no text)")
    rows = []
    for bench, name in zip(benchmarks, benchmark_names(benchmarks), strict=True):
        data = bench["stats"].get("data")
        if not data:
            raise UsageError(f"{source}: no raw round times for {name}; {SAVE_DATA_HINT}")
        extra = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
        settings = settings_text(extra)
        group = bench.get("group") if isinstance(bench.get("group"), str) else ""
        rows += [(name, group, i, seconds, settings)
                 for i, seconds in enumerate(check_round_times(data, name, source), start=1)]
    rounds = pd.DataFrame(rows, columns=ROUND_COLUMNS)
    check_unique_rounds(rounds, source)
    return rounds


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
    lacking = [column for column in ("benchmark", "bench_group", "round", "round_s") if column not in bench]
    if len(bench) and lacking:  # a file cut down by another tool, or from before these columns
        raise UsageError(f"{source}: benchmark rows without the column{'s' if len(lacking) > 1 else ''} "
                         f"{', '.join(lacking)}")
    bench = bench.dropna(subset=["benchmark"]) if len(bench) else bench
    if bench.empty:
        raise UsageError(f"{source}: no benchmark rounds (rows with experiment 'bench' and round_s)")
    for name, part in bench.groupby("benchmark"):
        check_round_times(part["round_s"].tolist(), name, source)
    check_unique_rounds(bench, source)
    settings = {name: settings_text(run_settings(part.iloc[0].to_dict())) for name, part in bench.groupby("benchmark")}
    out = bench.assign(bench_group=bench["bench_group"].fillna(""), settings=bench["benchmark"].map(settings))
    return out[ROUND_COLUMNS].sort_values(["benchmark", "round"]).reset_index(drop=True)


def run_source(spec: str, results_dir: Path | None = None) -> Path:
    """The file `spec` names: a .json or .parquet path as given, else the run id's file in the results store."""
    path = Path(spec)
    if path.suffix in (".json", ".parquet"):
        return path
    return Path(results_dir or store.default_results_dir()) / f"{spec}.parquet"


def read_run(spec: str, results_dir: Path | None = None) -> pd.DataFrame:
    """Raw rounds from a pytest-benchmark .json file, a run's .parquet file, or a run id of the results store."""
    path = run_source(spec, results_dir)
    if path.suffix == ".json":
        return read_benchmark_json(path)
    if Path(spec).suffix != ".parquet":
        if not path.is_file():
            raise UsageError(f"{spec}: neither a .json/.parquet file nor a run id in {path.parent}")
    elif not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        rows = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise UsageError(f"{path}: unreadable parquet file ({str(exc).splitlines()[0]})") from exc
    return rounds_from_store(rows, str(path))


def benchmark_stats(seconds: list[float]) -> dict:
    """pytest-benchmark's statistics of one benchmark, computed by its own Stats (its quartiles, and the outlier
    fields its `compare` reads), with the raw `data` (seconds per round)."""
    stats = Stats()
    for value in seconds:
        stats.update(value)
    return {**stats.as_dict(), "data": list(seconds), "iterations": 1}


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
