import json
from pathlib import Path

import pytest

from amal.errors import UsageError
from amal.gate import GateConfig
from amal.gate_timing import GateSkipped, check_rounds_can_decide, common_cases, interleave, rounds_for


def test_interleave_alternates_a_and_b():
    calls = []
    a_times, b_times = interleave([lambda: calls.append("A") or 1.0], [lambda: calls.append("B") or 2.0], 3)
    assert calls == ["A", "B", "A", "B", "A", "B"]
    assert (a_times, b_times) == ([1.0] * 3, [2.0] * 3)


def test_interleave_rotates_over_each_sides_processes():
    calls = []

    def run(name):
        return lambda: calls.append(name) or 1.0

    interleave([run("A1"), run("A2"), run("A3")], [run("B1"), run("B2"), run("B3")], 7)
    assert calls == ["A1", "B1", "A2", "B2", "A3", "B3", "A1", "B1", "A2", "B2", "A3", "B3", "A1", "B1"]


def test_rounds_follow_the_budget_within_bounds():
    cfg = GateConfig(baseline="HEAD", budget_s=120.0, rounds=100, min_rounds=12)
    assert rounds_for(0.5, 2, cfg) == 60  # 120 s / 2 cases / (2 sides x 0.5 s)
    assert rounds_for(10.0, 2, cfg) == 12  # 3 affordable, raised to the minimum
    assert rounds_for(0.001, 2, cfg) == 100  # 30,000 affordable, capped
    assert rounds_for(0.0, 2, GateConfig(baseline="HEAD", budget_s=1e308)) == 100  # no int(inf) overflow


def test_rounds_that_can_never_be_significant_are_refused():
    check_rounds_can_decide(12, 17, 0.01)  # the defaults over the quick profile's 17 CPU cases
    check_rounds_can_decide(5, 1, 0.01)  # smallest p at 5 a side: 2/252
    with pytest.raises(UsageError, match=r"--min-rounds 4 cannot detect a regression: over 1 case\(s\) at alpha "
                                         r"0.01, a case needs at least 5 rounds"):
        check_rounds_can_decide(4, 1, 0.01)  # 2/70 = 0.029: an 8x slowdown passed as "unchanged"
    with pytest.raises(UsageError, match="at least 7 rounds"):
        check_rounds_can_decide(6, 17, 0.01)


class FakeWorker:
    """Answers hello and cases like a gate worker of `checkout` listing `cases` (no process, no timing)."""

    def __init__(self, checkout: Path, label: str, cases: list[dict], cuda: bool = False):
        self.checkout, self.label, self.cases, self.cuda = checkout, label, cases, cuda

    def request(self, op: str, **fields) -> dict:
        if op == "hello":
            return {"amal_file": str(self.checkout / "amal" / "__init__.py")}
        return {"cuda": self.cuda, "threads": 1, "cases": self.cases}


def fake_case(name: str, device: str = "cpu", **params) -> dict:
    return {"name": name, "group": "g", "device": device, "params": params}


def test_cuda_cases_without_cuda_are_named_as_such(tmp_path):
    listing = [fake_case("a/cpu"), fake_case("a/cuda", "cuda")]
    a, b = FakeWorker(tmp_path, "baseline", listing), FakeWorker(tmp_path, "candidate", listing)
    with pytest.raises(GateSkipped, match="--case a/cuda needs a CUDA device; none on this machine"):
        common_cases(a, b, GateConfig(baseline="HEAD", only=("a/cuda",)))
    cases, notes = common_cases(a, b, GateConfig(baseline="HEAD", only=("a/cuda", "a/cpu")))
    assert [c["name"] for c in cases] == ["a/cpu"]
    assert notes == ["not compared, needs a CUDA device (none on this machine): a/cuda"]


def test_cases_whose_settings_changed_are_not_timed(tmp_path):
    """A case that does other work on each side (here 100 against 1000 epochs) is named and left out before any
    timing; a setting only one side records (an older baseline's cases lack data_source) does not count."""
    a = FakeWorker(tmp_path, "baseline", [fake_case("lr", epochs=100), fake_case("ae", epochs=1)])
    b = FakeWorker(tmp_path, "candidate", [fake_case("lr", epochs=1000), fake_case("ae", epochs=1, data_source="x")])
    (case,), notes = common_cases(a, b, GateConfig(baseline="HEAD"))
    assert case["name"] == "ae" and notes == ["lr: not compared, its settings differ (epochs 100 vs 1000)"]
    assert json.loads(case["sides"]["baseline"]["settings"]) == {"device": "cpu", "epochs": 1, "num_threads": 1,
                                                                 "profile": "quick"}
    with pytest.raises(GateSkipped, match="every case in common changed its settings: lr: not compared"):
        common_cases(a, b, GateConfig(baseline="HEAD", only=("lr",)))
