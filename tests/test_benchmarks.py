import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from amal import store
from amal.benchmarks import MAX_ROUNDS, MIN_ROUNDS, round_rows, rounds_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("round_s", "profile", "rounds"), [
    (0.05, "quick", 20),  # 1 s budget / 0.05 s
    (0.5, "quick", MIN_ROUNDS["quick"]),  # 2 wanted, at least 10
    (1e-5, "quick", MAX_ROUNDS),  # 100,000 wanted, at most 100
    (0.0, "quick", MAX_ROUNDS),  # a round below the clock's resolution
    (2.0, "full", 10),  # 20 s budget / 2 s
    (60.0, "full", MIN_ROUNDS["full"]),
])
def test_rounds_for(round_s, profile, rounds):
    assert rounds_for(round_s, profile) == rounds


def test_round_rows_one_row_per_round_with_the_case_parameters():
    benchmarks = [
        {"name": "test_case[batch-size/tensor/b16/cpu]", "group": "batch-size",
         "extra_info": {"case": "batch-size/tensor/b16/cpu", "experiment": "batch-size", "implementation": "tensor",
                        "batch_size": 16, "epochs": 5, "lr": 0.001, "device": "cpu", "summary": "not a column"},
         "stats": {"data": [0.5, 0.25, 0.125]}},
        {"name": "test_fidelity[manual]", "group": "fidelity", "extra_info": {"fidelity_ratio": 1.01},
         "stats": {"data": [0.75]}},
    ]
    df = round_rows(benchmarks, "quick")
    assert list(df["benchmark"]) == ["batch-size/tensor/b16/cpu"] * 3 + ["test_fidelity[manual]"]
    assert list(df["bench_group"]) == ["batch-size"] * 3 + ["fidelity"]
    assert list(df["round"]) == [1, 2, 3, 1]
    assert list(df["round_s"]) == [0.5, 0.25, 0.125, 0.75]
    assert (df["profile"] == "quick").all()
    assert list(df["batch_size"].iloc[:3]) == [16, 16, 16] and pd.isna(df["batch_size"].iloc[3])
    # the case's experiment stays out (the rows' experiment is "bench"); keys that are not columns stay in JSON
    assert set(df.columns) <= set(store.COLUMNS) and "experiment" not in df.columns
    assert store.to_table(df.assign(run_id="r", experiment="bench")).num_rows == 4


def test_round_rows_pair_each_round_with_the_loop_timed_before_it():
    """fidelity and sgd-floor time a reference loop just before each round: each row keeps its own pair."""
    bench = {"name": "test_fidelity[manual]", "group": "fidelity", "stats": {"data": [0.75, 0.5]},
             "extra_info": {"reference": "bare PyTorch loop", "reference_s": [0.7, 0.52]}}
    df = round_rows([bench], "quick")
    assert list(df["reference_s"]) == [0.7, 0.52] and list(df["reference"]) == ["bare PyTorch loop"] * 2
    bench["extra_info"]["reference_s"] = [0.7]  # one round unpaired: which pair is which is lost
    with pytest.raises(ValueError, match="1 reference times for 2 rounds"):
        round_rows([bench], "quick")


@pytest.mark.slow
def test_pytest_bench_writes_json_and_parquet_with_the_same_rounds(tmp_path):
    """A real `pytest bench` run on one case: autosaved JSON keeps raw rounds, the store gets the same rounds."""
    results, storage = tmp_path / "results", tmp_path / "benchmarks"
    argv = [sys.executable, "-m", "pytest", "bench", "-k", "test_case and lr-sweep", "-q", "-p", "no:cacheprovider",
            "--benchmark-autosave", f"--benchmark-storage={storage}", "--results", str(results)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (saved,) = storage.rglob("*.json")
    (bench,) = json.loads(saved.read_text())["benchmarks"]
    (run,) = store.run_files(results)
    df = pd.read_parquet(run)
    assert (df["experiment"] == "bench").all() and df["run_id"].nunique() == 1
    assert (df["benchmark"] == "lr-sweep/manual/cpu").all() and (df["bench_group"] == "lr-sweep").all()
    assert list(df["round_s"]) == bench["stats"]["data"]
    assert list(df["round"]) == list(range(1, len(df) + 1))
    assert (df["implementation"] == "manual").all() and (df["epochs"] == bench["extra_info"]["epochs"]).all()
    assert df["torch_version"].notna().all() and (df["profile"] == "quick").all()
    # what the round's work and speed depend on is in the JSON too, as in the parquet
    assert bench["extra_info"]["num_threads"] == df["num_threads"].iloc[0]
    assert bench["extra_info"]["normalize"] == "minmax" and (df["cuda_device"] == "").all()
    # how long its threads waited for a CPU over all its rounds (the report names a case other processes slowed)
    assert df["cpu_wait"].nunique(dropna=False) == 1 and bench["extra_info"]["cpu_wait"] == df["cpu_wait"].iloc[0]
    assert bench["options"]["timer"] == "clock_s" and bench["options"]["disable_gc"] is True
    assert "amal: stored" in done.stdout
    # the JSON and the run file name the case alike: amal.compare pairs them (same rounds: unchanged)
    compared = subprocess.run([sys.executable, "-m", "amal.compare", str(saved), str(run)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert compared.returncode == 0, compared.stderr
    assert "lr-sweep/manual/cpu " in compared.stdout and "1 compared" in compared.stdout


@pytest.mark.slow
def test_the_ratio_benchmarks_record_their_thread_count_and_store_each_rounds_pair(tmp_path):
    """Fidelity and SGD-floor rounds depend on torch's threads as much as the cases' do: without num_threads in
    extra_info, amal.compare compared runs made with 1 and 2 threads. Each stored round keeps the time of the loop
    run just before it, and the median of their ratios is the one the benchmark reports."""
    argv = [sys.executable, "-m", "pytest", "bench", "-k", "fidelity and manual or floor and manual", "-q", "-p",
            "no:cacheprovider", "--results", str(tmp_path / "results"), "--amal-threads", "1",
            f"--benchmark-json={tmp_path / 'b.json'}"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    benchmarks = json.loads((tmp_path / "b.json").read_text())["benchmarks"]
    assert sorted(b["group"] for b in benchmarks) == ["fidelity", "sgd-floor"]
    assert all(b["extra_info"]["num_threads"] == 1 for b in benchmarks)
    (run,) = store.run_files(tmp_path / "results")
    df = pd.read_parquet(run)
    for bench in benchmarks:
        rounds = df[df["bench_group"] == bench["group"]]
        assert list(rounds["round_s"]) == bench["stats"]["data"]
        assert list(rounds["reference_s"]) == bench["extra_info"]["reference_s"] and rounds["reference_s"].gt(0).all()
    fidelity = df[df["bench_group"] == "fidelity"]
    (reported,) = [b["extra_info"]["fidelity_ratio"] for b in benchmarks if b["group"] == "fidelity"]
    assert (fidelity["round_s"] / fidelity["reference_s"]).median() == pytest.approx(reported, rel=1e-12)
    assert set(df["reference"]) == {"bare PyTorch loop", "NumPy loop"}


def test_pytest_bench_with_benchmarks_disabled_runs_each_once_and_stores_nothing(tmp_path):
    """--benchmark-disable (pytest-benchmark's smoke mode): every benchmark, ratio ones included, runs once."""
    argv = [sys.executable, "-m", "pytest", "bench", "-k", "fidelity or floor or lr-sweep", "-v", "-p",
            "no:cacheprovider", "--benchmark-disable", "--results", str(tmp_path / "results")]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for test in ("test_fidelity[manual]", "test_sgd_floor[fused]", "test_case[lr-sweep/manual/cpu]"):
        assert f"{test} PASSED" in done.stdout
    assert "amal: stored" not in done.stdout
    assert not (tmp_path / "results").exists()  # the folder it had made to check it was writable is gone again


@pytest.mark.slow
def test_an_interrupted_pytest_bench_stores_nothing(tmp_path):
    """Ctrl-C after the first case: its rounds are not stored, nor saved as JSON (the autosave was the last run the
    next --benchmark-compare compared against), as if they were the whole bench run."""
    (tmp_path / "interrupt_after_first.py").write_text(
        "def pytest_runtest_logfinish(nodeid, location):\n    raise KeyboardInterrupt\n")
    argv = [sys.executable, "-m", "pytest", "bench", "-k", "test_case and (lr-sweep or batch-size)", "-q", "-p",
            "no:cacheprovider", "-p", "interrupt_after_first", "--results", str(tmp_path / "results"),
            "--benchmark-autosave", f"--benchmark-storage={tmp_path / 'benchmarks'}",
            f"--benchmark-json={tmp_path / 'bench.json'}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout[-2000:] + done.stderr[-2000:]
    assert "amal: interrupted: the rounds of 1 case(s) were not stored nor saved as JSON" in done.stdout
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "bench.json").exists() and not list(tmp_path.glob("benchmarks/**/*.json"))


@pytest.mark.slow
def test_ctrl_c_in_a_cases_warm_up_is_an_interruption_not_a_traceback(tmp_path):
    """Ctrl-C in the first case's warm-up round: pytest-benchmark keeps that case, without a round and without an
    error; reading its statistics raised ValueError (min() of nothing) after the KeyboardInterrupt."""
    (tmp_path / "interrupt_in_warm_up.py").write_text(
        "import os, signal\n"
        "from pytest_benchmark.fixture import BenchmarkFixture\n"
        "timed = BenchmarkFixture.pedantic\n"
        "def pedantic(self, target, *args, **kwargs):\n"
        "    def interrupted(*a, **k):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        return target(*a, **k)\n"
        "    return timed(self, interrupted, *args, **kwargs)\n"
        "BenchmarkFixture.pedantic = pedantic\n")
    argv = [sys.executable, "-m", "pytest", "bench", "-k", "test_case and lr-sweep", "-q", "-p", "no:cacheprovider",
            "-p", "interrupt_in_warm_up", "--results", str(tmp_path / "results"), "--benchmark-autosave",
            f"--benchmark-storage={tmp_path / 'benchmarks'}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr and "Error" not in done.stdout + done.stderr
    assert not (tmp_path / "results").exists() and not list(tmp_path.glob("benchmarks/**/*.json"))


def test_a_failing_case_is_reported_not_hidden_by_pytest_benchmarks_warnings(tmp_path):
    """Under filterwarnings = error, pytest-benchmark's "nothing to save" escaped as a traceback at the session's end,
    before pytest's summary: the case's own error and the FAILED line were lost (the likely shape of a CUDA bug)."""
    (tmp_path / "failing_setup.py").write_text(
        "import dataclasses\n"
        "def fail():\n    raise RuntimeError('planted failure in the setup')\n"
        "def pytest_collection_modifyitems(items):\n"
        "    for item in items:\n"
        "        params = item.callspec.params if hasattr(item, 'callspec') else {}\n"
        "        if 'case' in params:\n"
        "            params['case'] = dataclasses.replace(params['case'], setup=fail)\n")
    argv = [sys.executable, "-m", "pytest", "bench", "-k", "test_case and lr-sweep", "-q", "-p", "no:cacheprovider",
            "-p", "failing_setup", "--amal-no-store", "--benchmark-json", str(tmp_path / "bench.json")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout[-2000:] + done.stderr[-2000:]
    assert "RuntimeError: planted failure in the setup" in done.stdout
    assert "FAILED bench/test_cases.py::test_case[lr-sweep/manual/cpu]" in done.stdout
    assert "1 failed" in done.stdout and "Traceback" not in done.stderr


def test_ratio_benchmarks_under_cprofile_pair_only_the_timed_rounds(tmp_path):
    """--benchmark-cprofile runs the round once more, with its setup (the bare loop) after the timed rounds."""
    argv = [sys.executable, "-m", "pytest", "bench", "-k", "fused and (fidelity or floor)", "-q", "-p",
            "no:cacheprovider", "--benchmark-cprofile=tottime", "--amal-no-store"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout and "fidelity batch-size/fused" in done.stdout


@pytest.mark.parametrize(("extra", "message"), [
    (["--results", "{blocker}/results"], "not writable"),
    (["--amal-threads", "0"], "threads must be from 1 to 1,024"),
    (["--results", ""], "an empty path"),  # stored into ./results
])
def test_pytest_bench_refuses_bad_options_before_measuring(tmp_path, extra, message):
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = [sys.executable, "-m", "pytest", "bench", "--collect-only", "-q", "-p", "no:cacheprovider",
            "--results", str(tmp_path / "r"), *[arg.format(blocker=blocker) for arg in extra]]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4  # pytest's usage error
    assert message in done.stderr
