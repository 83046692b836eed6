import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from amal.errors import UsageError
from amal.samples import read_benchmark_json, rounds_from_benchmark_json, rounds_from_store, to_benchmark_json

FIXTURES = Path(__file__).parent / "fixtures"


def test_reads_the_raw_rounds_of_a_real_pytest_benchmark_file():
    rounds = read_benchmark_json(FIXTURES / "pytest-benchmark-with-data.json")
    doc = json.loads((FIXTURES / "pytest-benchmark-with-data.json").read_text())
    assert rounds.groupby("benchmark").size().to_dict() == {"test_sorted": 12,
                                                            "test_sum": 12}
    first = rounds[rounds["benchmark"] == "test_sorted"]
    assert first["round_s"].tolist() == doc["benchmarks"][0]["stats"]["data"]
    assert first["round"].tolist() == list(range(1, 13))
    assert set(rounds["bench_group"]) == {""}  # pytest-benchmark's null group


def test_written_json_reads_back_with_pytest_benchmark_statistics():
    rounds = pd.DataFrame({"benchmark": "a", "bench_group": "g", "round": [1, 2, 3, 4], "round_s": [4.0, 1, 3, 2]})
    doc = to_benchmark_json(rounds, {"a": {"lr": 0.1}}, {"host": "h"}, {"id": "abc"}, "2026-01-01T00:00:00")
    stats = doc["benchmarks"][0]["stats"]
    assert (stats["min"], stats["max"], stats["median"], stats["mean"], stats["rounds"]) == (1, 4, 2.5, 2.5, 4)
    assert stats["data"] == [4.0, 1, 3, 2] and doc["benchmarks"][0]["extra_info"] == {"lr": 0.1}
    pd.testing.assert_frame_equal(rounds_from_benchmark_json(doc, "doc"), rounds.assign(settings='{"lr": 0.1}'),
                                  check_dtype=False)


def test_pytest_benchmarks_own_compare_reads_the_written_json(tmp_path):
    """The gate's samples crashed `pytest-benchmark compare` (KeyError: 'outliers'); its statistics are its own."""
    from pytest_benchmark.stats import Stats

    seconds = [0.010, 0.012, 0.011, 0.021, 0.013, 0.0125, 0.0118, 0.0131, 0.0122, 0.0127, 0.0119, 0.0185]
    paths = []
    for number, scale in ((1, 1.0), (2, 1.5)):
        rounds = pd.DataFrame({"benchmark": "case/a", "bench_group": "g", "round": range(1, 13),
                               "round_s": [s * scale for s in seconds]})
        doc = to_benchmark_json(rounds, {}, {"host": "h"}, {"id": "abc", "dirty": False}, "2026-01-01T00:00:00")
        paths.append(tmp_path / f"000{number}_side.json")
        paths[-1].write_text(json.dumps(doc))
    reference = Stats()
    for value in seconds:
        reference.update(value)
    assert {key: value for key, value in json.loads(paths[0].read_text())["benchmarks"][0]["stats"].items()
            if key not in ("data", "iterations")} == reference.as_dict()
    done = subprocess.run([sys.executable, "-c", "from pytest_benchmark.cli import main; main()", "compare",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line.split()[:3] for line in done.stdout.splitlines() if line.startswith("case/a")]
    assert [(row[0], row[1].endswith("0001_side)"), row[2]) for row in rows] == [("case/a", True, "10.0000"),
                                                                                ("case/a", False, "15.0000")]


def test_store_rows_keep_only_benchmark_rounds():
    rows = pd.DataFrame({"experiment": ["lr-sweep", "bench", "bench"], "benchmark": [None, "b", "b"],
                         "bench_group": [None, None, None], "round": [None, 2, 1], "round_s": [None, 0.2, 0.1]})
    rounds = rounds_from_store(rows, "run")
    assert rounds["round_s"].tolist() == [0.1, 0.2] and rounds["bench_group"].tolist() == ["", ""]
    with pytest.raises(UsageError, match="no benchmark rounds"):
        rounds_from_store(rows.iloc[:1], "run")


def one_benchmark(data, name="t", fullname=None) -> dict:
    return {"name": name, "fullname": fullname or name, "stats": {"data": data}}


@pytest.mark.parametrize("data", [["abc", 0.2], [None, 0.2], 5, [0.0, 0.1], [-1.0, 0.1], [float("nan"), 0.1],
                                  [float("inf"), 0.1], [True, 0.1]])
def test_round_times_must_be_positive_finite_seconds(data):
    with pytest.raises(UsageError, match="round times of t"):
        rounds_from_benchmark_json({"benchmarks": [one_benchmark(data)]}, "doc")


@pytest.mark.parametrize("entry", [{"extra_info": {"case": ["a", "b"]}, "name": None},
                                   {"extra_info": {"case": ["a", "b"]}},  # its name would pair it by guesswork
                                   {"name": {"a": 1}}, {"name": ""}])
def test_a_name_that_is_no_string_is_a_malformed_entry(entry):
    """A JSON file edited or written by another tool (a list as extra_info's case): a TypeError traceback before."""
    bench = {**one_benchmark([0.1, 0.2]), "fullname": None, **entry}
    with pytest.raises(UsageError, match="malformed benchmark entry"):
        rounds_from_benchmark_json({"benchmarks": [bench]}, "doc")


def test_tests_of_one_name_whose_full_names_are_no_strings_keep_their_name():
    doc = {"benchmarks": [one_benchmark([0.1], "t", ["a.py"]), one_benchmark([0.2], "t", {"b": 1})]}
    with pytest.raises(UsageError, match="benchmark t has round 1 twice"):  # one line, not a TypeError traceback
        rounds_from_benchmark_json(doc, "doc")


def test_a_group_that_is_no_string_is_no_group():
    rounds = rounds_from_benchmark_json({"benchmarks": [{**one_benchmark([0.1]), "group": ["x"]}]}, "doc")
    assert rounds["bench_group"].tolist() == [""]


def test_store_round_times_are_checked_too():
    rows = pd.DataFrame({"experiment": "bench", "benchmark": "b", "bench_group": None, "round": [1, 2],
                         "round_s": [0.1, float("nan")]})
    with pytest.raises(UsageError, match="round times of b must be finite seconds above zero"):
        rounds_from_store(rows, "run")


def test_tests_of_one_name_in_two_files_keep_apart():
    doc = {"benchmarks": [one_benchmark([0.001, 0.002], "test_step", "a.py::test_step"),
                          one_benchmark([0.004, 0.005], "test_step", "b.py::test_step")]}
    rounds = rounds_from_benchmark_json(doc, "doc")
    assert rounds.groupby("benchmark")["round_s"].max().to_dict() == {"a.py::test_step": 0.002,
                                                                       "b.py::test_step": 0.005}
    doc["benchmarks"][1]["fullname"] = "a.py::test_step"
    with pytest.raises(UsageError, match="two benchmarks are both called a.py::test_step"):
        rounds_from_benchmark_json(doc, "doc")


def test_settings_read_the_same_from_json_and_from_the_store():
    """16 in a JSON file and 16.0 in a float column of the store (or numpy's int64) are one setting."""
    import numpy as np

    from amal.samples import settings_text

    assert settings_text({"batch_size": 16, "epochs": 5, "lr": 0.1, "device": "cpu", "extra": 1}) == \
        settings_text({"batch_size": 16.0, "epochs": np.int64(5), "lr": np.float64(0.1), "device": "cpu",
                       "hidden": float("nan")}) == '{"batch_size": 16, "device": "cpu", "epochs": 5, "lr": 0.1}'


def test_store_rounds_of_two_benchmarks_under_one_name_are_refused():
    rows = pd.DataFrame({"experiment": "bench", "benchmark": "t", "bench_group": None, "round": [1, 1, 2, 2],
                         "round_s": [0.1, 0.2, 0.1, 0.2]})
    with pytest.raises(UsageError, match="benchmark t has round 1 twice"):
        rounds_from_store(rows, "run")


def test_export_and_json_name_same_name_tests_alike():
    from amal.benchmarks import round_rows

    records = [one_benchmark([0.001], "test_step", "a.py::test_step"),
               one_benchmark([0.004], "test_step", "b.py::test_step")]
    stored = round_rows([{**r, "extra_info": {}} for r in records], "quick")
    read = rounds_from_benchmark_json({"benchmarks": records}, "doc")
    assert stored["benchmark"].tolist() == read["benchmark"].tolist() == ["a.py::test_step", "b.py::test_step"]


def test_thread_counts_that_do_not_describe_the_work_are_not_settings():
    """pytest-benchmark's machine_info has no thread count, and gates older than per-side settings stored the gate
    process's own (2) for workers that ran 1 thread: neither may make two samples look like other work."""
    doc = {"machine_info": {"num_threads": 2}, "benchmarks": [one_benchmark([0.1, 0.2])]}
    assert rounds_from_benchmark_json(doc, "doc")["settings"].iloc[0] == "{}"
    old_gate = pd.DataFrame({"experiment": "bench", "benchmark": "b", "bench_group": None, "round": [1, 2],
                             "round_s": [0.1, 0.2], "tag": "gate baseline", "num_threads": 2, "device": "cpu"})
    assert rounds_from_store(old_gate, "run")["settings"].iloc[0] == '{"device": "cpu"}'
    bench = old_gate.assign(tag="", implementation="manual")
    assert json.loads(rounds_from_store(bench, "run")["settings"].iloc[0])["num_threads"] == 2


def test_store_rows_without_the_round_columns_are_named_not_a_key_error():
    """A bench file cut down by another tool: compare ended in a KeyError traceback."""
    rows = pd.DataFrame({"experiment": ["bench"] * 3, "round_s": [0.1, 0.2, 0.3]})
    with pytest.raises(UsageError, match=r"^cut\.parquet: benchmark rows without the columns benchmark, bench_group, "
                                         r"round$"):
        rounds_from_store(rows, "cut.parquet")
