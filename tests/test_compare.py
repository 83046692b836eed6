import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amal import compare, store
from amal.compare import CompareConfig, main, verdict
from amal.samples import read_benchmark_json

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> Path:
    return FIXTURES / f"{name}.json"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def write_json(path: Path, rounds: pd.DataFrame) -> Path:
    from amal.samples import to_benchmark_json

    path.write_text(json.dumps(to_benchmark_json(rounds, {}, {}, {}, "2026-01-01T00:00:00")))
    return path


@pytest.mark.parametrize("ratio, p, expected", [
    (1.2, 0.001, "regressed"), (1.2, 0.02, "unchanged"), (1.05, 0.001, "unchanged"),
    (0.8, 0.001, "improved"), (0.95, 0.001, "unchanged"), (1.1, 0.001, "unchanged"),
])
def test_verdict_needs_both_threshold_and_significance(ratio, p, expected):
    assert verdict(ratio, p, threshold=1.1, alpha=0.01) == expected


def test_identical_distributions_pass(capsys):
    assert main([str(fixture("gate-unchanged-baseline")), str(fixture("gate-unchanged-candidate"))]) == 0
    out = capsys.readouterr().out
    assert "lr-sweep/manual/cpu" in out and "unchanged" in out and "REGRESSED" not in out


def test_clear_slowdown_of_one_and_a_half_fails(tmp_path, capsys):
    base = read_benchmark_json(fixture("gate-unchanged-baseline"))
    slow = write_json(tmp_path / "slow.json", base.assign(round_s=base["round_s"] * 1.5))
    assert main([str(fixture("gate-unchanged-baseline")), str(slow)]) == 1
    assert "REGRESSED" in capsys.readouterr().out


def test_planted_slowdown_recorded_is_flagged_and_its_mirror_is_an_improvement(capsys):
    assert main([str(fixture("gate-slowed125-baseline")), str(fixture("gate-slowed125-candidate"))]) == 1
    assert "REGRESSED" in capsys.readouterr().out
    assert main([str(fixture("gate-slowed125-candidate")), str(fixture("gate-slowed125-baseline"))]) == 0
    assert "IMPROVED" in capsys.readouterr().out


def test_group_threshold_overrides_the_default(tmp_path, capsys):
    base = read_benchmark_json(fixture("gate-unchanged-baseline"))
    slow = write_json(tmp_path / "slow.json", base.assign(round_s=base["round_s"] * 1.5))
    args = [str(fixture("gate-unchanged-baseline")), str(slow), "--format", "json"]
    assert main(args + ["--group-threshold", "lr-sweep=1.6"]) == 0
    row = json.loads(capsys.readouterr().out)["benchmarks"][0]
    assert (row["threshold"], row["verdict"]) == (1.6, "unchanged")
    assert main(args + ["--group-threshold", "lr-sweep=1.2"]) == 1


def test_a_group_threshold_for_no_benchmark_exits_2(capsys):
    args = [str(fixture("gate-unchanged-baseline")), str(fixture("gate-unchanged-candidate"))]
    assert main(args + ["--group-threshold", "lr_sweep=1.6"]) == 2
    assert "--group-threshold lr_sweep: no benchmark of that group (groups: lr-sweep)" in one_line_error(capsys)


def test_holm_correction_is_applied_over_the_benchmarks_compared():
    # 5 rounds each, fully separated: exact two-sided Mann–Whitney p = 2 / C(10, 5) = 2/252 = 0.0079 < 0.01
    base = read_benchmark_json(fixture("gate-unchanged-baseline")).head(5)  # spread 1.12x, below the 1.5x shift
    cand = base.assign(round_s=base["round_s"] * 1.5)
    alone = compare.compare(base, cand, CompareConfig())
    assert alone["p"].iloc[0] == pytest.approx(2 / 252)
    assert alone["verdict"].tolist() == ["regressed"]
    # the same benchmark twice: Holm doubles the smaller p, 2 x 0.0079 = 0.0159 > 0.01, neither regresses
    twice = compare.compare(pd.concat([base, base.assign(benchmark="copy")]),
                            pd.concat([cand, cand.assign(benchmark="copy")]), CompareConfig())
    np.testing.assert_allclose(twice["p_holm"], [4 / 252, 4 / 252])
    assert twice["verdict"].tolist() == ["unchanged", "unchanged"]


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    base = read_benchmark_json(fixture("gate-slowed125-baseline"))
    cand = read_benchmark_json(fixture("gate-slowed125-candidate"))
    first, second = compare.compare(base, cand), compare.compare(base, cand)
    pd.testing.assert_frame_equal(first, second)
    row = first.iloc[0]
    assert row.ratio_ci_low < row.ratio < row.ratio_ci_high


def test_a_benchmark_s_interval_does_not_depend_on_the_others_compared():
    rng = np.random.default_rng(7)
    rounds = [pd.DataFrame({"benchmark": name, "bench_group": "g", "round": np.arange(1, 31),
                            "round_s": rng.lognormal(0, 0.05, 30) * scale}) for name, scale in (("a", 1), ("b", 1.1))]
    base = pd.concat(rounds, ignore_index=True)
    cand = base.assign(round_s=base["round_s"] * rng.lognormal(0.02, 0.05, len(base)))
    both = compare.compare(base, cand).set_index("benchmark")
    alone = compare.compare(base[base["benchmark"] == "b"], cand[cand["benchmark"] == "b"]).set_index("benchmark")
    assert alone.loc["b", ["ratio", "ratio_ci_low", "ratio_ci_high"]].tolist() == \
        both.loc["b", ["ratio", "ratio_ci_low", "ratio_ci_high"]].tolist()


def test_real_pytest_benchmark_json_with_raw_data(tmp_path, capsys):
    path = fixture("pytest-benchmark-with-data")
    copy = tmp_path / "copy.json"  # another file with the same rounds (a JSON and its run file, say) is compared
    copy.write_bytes(path.read_bytes())
    assert main([str(path), str(copy), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| benchmark |") and "| test_sorted |" in out and "Holm over 2" in out


def test_missing_raw_data_exits_2_in_one_line(capsys):
    assert main([str(fixture("pytest-benchmark-no-data")), str(fixture("pytest-benchmark-with-data"))]) == 2
    assert "--benchmark-save-data" in one_line_error(capsys)


def test_malformed_json_exits_2_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"benchmarks": [')
    assert main([str(bad), str(fixture("pytest-benchmark-with-data"))]) == 2
    assert "malformed JSON" in one_line_error(capsys)
    bad.write_text('{"machine_info": {}}')
    assert main([str(bad), str(fixture("pytest-benchmark-with-data"))]) == 2
    assert "not a pytest-benchmark JSON" in one_line_error(capsys)


def test_nothing_in_common_exits_2_in_one_line(capsys):
    assert main([str(fixture("gate-unchanged-baseline")), str(fixture("pytest-benchmark-with-data"))]) == 2
    assert "no benchmark in common" in one_line_error(capsys)


def exit_code(argv) -> int:
    """main's exit code, whether argparse exits (bad syntax) or main returns (bad value)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("option", [["--threshold", "0.9"], ["--threshold", "inf"], ["--threshold", "nan"],
                                    ["--alpha", "1.5"], ["--group-threshold", "x"], ["--format", "html"],
                                    ["--seed", "-1"], ["--resamples", "99"], ["--resamples", "100001"],
                                    ["--resamples", "1000000000"], ["--group-threshold", "lr-sweep=0.5"]])
def test_bad_options_exit_2_in_one_line(option, capsys):
    args = [str(fixture("gate-unchanged-baseline")), str(fixture("gate-unchanged-candidate"))]
    started = time.monotonic()
    assert exit_code([*args, *option]) == 2
    assert time.monotonic() - started < 5  # refused before any work (10^9 resamples ran on for minutes)
    assert option[0] in one_line_error(capsys)


def test_option_errors_name_the_option_once(capsys):
    args = [str(fixture("gate-unchanged-baseline")), str(fixture("gate-unchanged-candidate"))]
    assert main([*args, "--threshold", "0.9"]) == 2
    assert one_line_error(capsys) == ("python -m amal.compare: error: --threshold: must be a finite factor >= 1 "
                                      "(1.10 = 10% slower), got 0.9\n")
    assert main([*args, "--group-threshold", "lr-sweep=0.5"]) == 2
    assert "error: --group-threshold lr-sweep: must be a finite factor >= 1" in one_line_error(capsys)
    assert main([*args, "--resamples", "1000000000"]) == 2
    assert one_line_error(capsys) == ("python -m amal.compare: error: --resamples must be from 100 to 100,000, "
                                      "got 1000000000\n")


def test_help_gives_the_range_of_resamples(capsys):
    assert exit_code(["--help"]) == 0
    assert "bootstrap resamples, 100 to 100,000" in " ".join(capsys.readouterr().out.split())


def test_the_same_file_as_baseline_and_candidate_exits_2_in_one_line(tmp_path, monkeypatch, capsys):
    """Compared with itself, a file is 'unchanged' whatever the code did: refused, however it is named twice."""
    path = fixture("gate-unchanged-baseline")
    monkeypatch.chdir(FIXTURES)
    link = tmp_path / "link.json"
    link.symlink_to(path)
    for candidate in (str(path), "gate-unchanged-baseline.json", str(link)):
        assert main([str(path), candidate]) == 2
        assert f"error: baseline and candidate are the same file ({path})" in one_line_error(capsys)
    results = tmp_path / "results"
    run_id = store_run(results, read_benchmark_json(path))
    for candidate in (run_id, str(results / f"{run_id}.parquet")):
        assert main([run_id, candidate, "--results", str(results)]) == 2
        assert "the same file" in one_line_error(capsys)


def has_loaded(pid: int, library: str) -> bool:
    """Whether the process has mapped a file whose path holds `library` (Linux: /proc/PID/maps)."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc/PID/maps (Linux)")
def test_sigterm_says_interrupted_and_exits_130(tmp_path):
    """SIGTERM (`kill`, `timeout`, a cancelled CI job) stopped amal.compare silently with 143, where the other
    commands say they were interrupted and exit 130. Here it arrives during the bootstrap, which would take about
    70 s (100,000 resamples at 200 rounds a side)."""
    rng = np.random.default_rng(0)
    rounds = pd.DataFrame({"benchmark": "b", "bench_group": "g", "round": np.arange(1, 201),
                           "round_s": rng.lognormal(0, 0.05, 200)})
    base = write_json(tmp_path / "base.json", rounds)
    cand = write_json(tmp_path / "cand.json", rounds.assign(round_s=rng.lognormal(0, 0.05, 200)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    work = subprocess.Popen([sys.executable, "-m", "amal.compare", str(base), str(cand), "--resamples", "100000"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not has_loaded(work.pid, "scipy") and work.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # scipy.stats: the last of amal.compare's large imports
        time.sleep(2)  # the imports done, the command at work (during imports it says 'interrupted' only)
        work.send_signal(signal.SIGTERM)
        out, err = work.communicate(timeout=30)
    finally:
        work.kill()
    assert (work.returncode, err, out) == (130, "interrupted: nothing was compared\n", "")


def store_run(results: Path, rounds: pd.DataFrame) -> str:
    run_id = store.new_run_id("bench")
    store.save(rounds.drop(columns="settings").assign(run_id=run_id, experiment="bench", profile="quick"), results)
    return run_id


def test_parquet_runs_by_id_and_by_file(tmp_path, capsys):
    results = tmp_path / "results"
    base = read_benchmark_json(fixture("gate-slowed125-baseline"))
    cand = read_benchmark_json(fixture("gate-slowed125-candidate"))
    base_id, cand_id = store_run(results, base), store_run(results, cand)
    assert main([base_id, cand_id, "--results", str(results)]) == 1
    assert main([str(results / f"{base_id}.parquet"), str(fixture("gate-slowed125-baseline"))]) == 0
    assert "REGRESSED" in capsys.readouterr().out


def test_unknown_run_id_exits_2_in_one_line(tmp_path, capsys):
    assert main(["no-such-run", str(fixture("gate-unchanged-baseline")), "--results", str(tmp_path)]) == 2
    assert "no-such-run" in one_line_error(capsys)


def with_extra_info(path: Path, target: Path, **extra) -> Path:
    """A copy of a pytest-benchmark JSON file whose benchmarks carry `extra` in extra_info."""
    doc = json.loads(path.read_text())
    for bench in doc["benchmarks"]:
        bench["extra_info"] = {**bench.get("extra_info", {}), **extra}
    target.write_text(json.dumps(doc))
    return target


def test_benchmarks_that_did_other_work_are_not_compared(tmp_path, capsys):
    """The same name with other settings (here 1000 epochs against 100) timed other work: its ratio would measure
    the settings, not the code. Such a benchmark is named and left out; when none is left, exit 2."""
    base = with_extra_info(fixture("pytest-benchmark-with-data"), tmp_path / "base.json", epochs=100, num_threads=1)
    full = with_extra_info(fixture("pytest-benchmark-with-data"), tmp_path / "full.json", epochs=1000, num_threads=1)
    assert main([str(base), str(full)]) == 2
    assert "no benchmark in common with the same settings: 2 differ, e.g. test_sorted (epochs 100 vs 1000)" in \
        one_line_error(capsys)
    doc = json.loads(full.read_text())
    doc["benchmarks"][1]["extra_info"]["epochs"] = 100  # test_sum now matches
    full.write_text(json.dumps(doc))
    assert main([str(base), str(full), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [b["benchmark"] for b in out["benchmarks"]] == ["test_sum"]
    assert "test_sorted: not compared, its settings differ (epochs 100 vs 1000)" in out["notes"]


def test_settings_recorded_on_one_side_only_do_not_block_a_comparison(tmp_path):
    """One side records a setting (lr) the other does not (a foreign JSON file): it does not count."""
    base = read_benchmark_json(with_extra_info(fixture("pytest-benchmark-with-data"), tmp_path / "b.json", lr=0.1))
    cand = read_benchmark_json(fixture("pytest-benchmark-with-data"))
    assert compare.setting_differences(base, cand) == {}
    assert len(compare.compare(base, cand)) == 2


def test_a_missing_parquet_file_is_named_as_missing(tmp_path, capsys):
    path = str(fixture("gate-unchanged-baseline"))
    assert exit_code([path, str(tmp_path / "nope.parquet")]) == 2
    assert f"{tmp_path / 'nope.parquet'}: no such file" in one_line_error(capsys)


def test_a_case_with_too_few_rounds_to_be_flagged_is_named(tmp_path, capsys):
    """Two rounds a side, five times slower: the smallest two-sided p of 2 against 2 is 1/3, never below 0.01."""
    rounds = pd.DataFrame({"benchmark": "tiny", "bench_group": "g", "round": [1, 2], "round_s": [0.01, 0.011],
                           "settings": [{}] * 2})
    slower = rounds.assign(round_s=rounds["round_s"] * 5)
    assert main([str(write_json(tmp_path / "a.json", rounds)), str(write_json(tmp_path / "b.json", slower))]) == 0
    assert ("too few rounds to be flagged however far apart they are (p cannot fall below alpha/1 = 0.01, what "
            "Holm's correction asks of the smallest p): tiny") in capsys.readouterr().out
