import json
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
    pd.testing.assert_frame_equal(rounds_from_benchmark_json(doc, "doc"), rounds, check_dtype=False)


def test_store_rows_keep_only_benchmark_rounds():
    rows = pd.DataFrame({"experiment": ["lr-sweep", "bench", "bench"], "benchmark": [None, "b", "b"],
                         "bench_group": [None, None, None], "round": [None, 2, 1], "round_s": [None, 0.2, 0.1]})
    rounds = rounds_from_store(rows, "run")
    assert rounds["round_s"].tolist() == [0.1, 0.2] and rounds["bench_group"].tolist() == ["", ""]
    with pytest.raises(UsageError, match="no benchmark rounds"):
        rounds_from_store(rows.iloc[:1], "run")
