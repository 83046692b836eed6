import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from amal import compare, gate
from amal.gate import main
from amal.report import select
from amal.samples import settings_text

AMAL = Path(__file__).resolve().parent.parent / "amal"

# A tiny checkout's benchmark cases: pure-Python work, WORK times over; each round notes its WORK and process id in
# $GATE_ORDER_LOG.
CASES = '''
import os
import time
from dataclasses import dataclass, field

WORK = {work}


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    setup: object
    params: dict = field(default_factory=dict)
    device: str = "cpu"


def cases(profile="quick"):
    def setup():
        if "{broken}" == "setup":
            raise RuntimeError("broken on purpose")
        if "{broken}" == "die":
            os.kill(os.getpid(), 9)  # a crash: the worker process is gone
        log = os.environ.get("GATE_ORDER_LOG")
        if "{broken}" == "hang-setup":
            with open(log, "a") as fh:
                fh.write(f"setup {{os.getpid()}}\\n")
            time.sleep(3600)

        def one_round():
            if "{broken}" == "round":
                raise RuntimeError("broken in a round")
            if "{broken}" == "hang":
                time.sleep(3600)
            sum(i * i for i in range(20000 * WORK))
            if log:
                with open(log, "a") as fh:
                    fh.write(f"{{WORK}} {{os.getpid()}}\\n")

        return one_round

    return [Case("{name}", "work", setup, {{"work": WORK}})]
'''


def commit(repo: Path, message: str) -> str:
    def run(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout

    run("add", "-A")
    run("-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-q", "-m", message)
    return run("rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Commits: no cases; a case 'work/old' only; 'work/sum' raising in its setup, then in its rounds; 'work/sum' at
    1x. Working tree: 'work/sum' at 3x (a regression)."""
    repo = tmp_path_factory.mktemp("repo")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "amal").mkdir()
    (repo / "amal" / "__init__.py").write_text("")
    shutil.copy(AMAL / "timing.py", repo / "amal")  # the real timing module and what it imports
    shutil.copy(AMAL / "errors.py", repo / "amal")
    commits = {"no-cases": commit(repo, "package without cases")}
    (repo / "amal" / "cases.py").write_text(CASES.format(work=1, name="work/old", broken=""))
    commits["other-case"] = commit(repo, "a case of another name")
    (repo / "amal" / "cases.py").write_text(CASES.format(work=1, name="work/sum", broken="setup"))
    commits["broken-case"] = commit(repo, "the case, raising")
    (repo / "amal" / "cases.py").write_text(CASES.format(work=1, name="work/sum", broken="round"))
    commits["broken-round"] = commit(repo, "the case, raising in a round")
    (repo / "amal" / "cases.py").write_text(CASES.format(work=1, name="work/sum", broken="die"))
    commits["dying-case"] = commit(repo, "the case, killing its process")
    (repo / "amal" / "cases.py").write_text(CASES.format(work=1, name="work/sum", broken="hang"))
    commits["hanging-round"] = commit(repo, "the case, hanging in its rounds")
    (repo / "amal" / "cases.py").write_text(CASES.format(work=1, name="work/sum", broken="hang-setup"))
    commits["hanging-setup"] = commit(repo, "the case, hanging in its set-up")
    (repo / "amal" / "cases.py").write_text(CASES.format(work=1, name="work/sum", broken=""))
    commits["same-case"] = commit(repo, "the case, 1x work")
    (repo / "amal" / "cases.py").write_text(CASES.format(work=3, name="work/sum", broken=""))
    return repo, commits


def gate_args(repo: Path, baseline: str, tmp_path: Path) -> list[str]:
    return ["--baseline", baseline, "--candidate", str(repo), "--rounds", "15", "--min-rounds", "15",
            "--output", str(tmp_path / "out"), "--results", str(tmp_path / "results"), "--quiet"]


def test_a_full_disk_is_one_line_and_exit_1(monkeypatch, tmp_path, capsys):
    def full(cfg, compare_cfg, quiet):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "sample.json"))

    monkeypatch.setattr(gate, "run_gate", full)
    assert main(["--baseline", "HEAD", "--output", str(tmp_path / "out"), "--quiet"]) == 1
    assert capsys.readouterr().err == (f"python -m amal.gate: error: No space left on device: "
                                       f"{tmp_path / 'out' / 'sample.json'}; nothing was compared\n")
    assert not (tmp_path / "out").exists()  # the folder it made is removed


@pytest.mark.slow
def test_gate_flags_a_threefold_slowdown_with_rounds_interleaved(repo, tmp_path, monkeypatch, capsys):
    repo, commits = repo
    log = tmp_path / "order.log"
    monkeypatch.setenv("GATE_ORDER_LOG", str(log))
    assert main(gate_args(repo, commits["same-case"], tmp_path)) == 1
    out = capsys.readouterr().out
    assert "work/sum" in out and "REGRESSED" in out
    assert "work/sum: regressed in the first timing (ratio 3." in out and "regressed again, so it fails the gate" in out
    # each side's workers ran their own checkout's code (1x baseline, 3x candidate), strictly alternating A B A B,
    # each side rotating over its 3 processes: 3 warm-up rounds per process, then 15 timed rounds per side; then the
    # same again in 3 fresh processes a side, the confirmation of the regression
    rounds = [line.split() for line in log.read_text().splitlines()]
    assert [work for work, _ in rounds] == ["1", "3"] * 2 * (9 + 15)
    for work in ("1", "3"):
        pids = [pid for w, pid in rounds if w == work]
        first, again = pids[:24], pids[24:]
        assert len(set(first)) == len(set(again)) == 3 and not set(first) & set(again)
        assert first == first[:3] * 8 and again == again[:3] * 8
    assert not {pid for w, pid in rounds if w == "1"} & {pid for w, pid in rounds if w == "3"}
    # both timings' samples were written as pytest-benchmark JSON and as runs of the results store, and compare again
    jsons = sorted((tmp_path / "out").glob("*.json"))
    assert [p.name.split("-")[1] for p in jsons] == ["baseline", "candidate"] * 2
    runs = pd.read_parquet(tmp_path / "results")
    assert sorted(runs.groupby("tag")["run_id"].nunique().items()) == [("gate baseline", 2), ("gate candidate", 2)]
    assert sorted(runs.groupby("tag")["round"].max().items()) == [("gate baseline", 15), ("gate candidate", 15)]
    assert set(runs.loc[runs["tag"] == "gate baseline", "git_commit"]) == {commits["same-case"]}
    assert set(runs["num_threads"]) == {1}  # what the workers ran with (--threads 1), not the gate process's count
    if hasattr(os, "sched_getaffinity"):  # pinned to one CPU: the workers' count, not the gate process's
        assert set(runs["cpu_count"]) == {1}
    assert set(select.latest_per(runs, ["benchmark"])["tag"]) == {select.GATE_CANDIDATE}  # what a report shows
    docs = [json.loads(p.read_text()) for p in jsons]
    assert docs[0]["machine_info"]["git_commit"] == commits["same-case"]  # each side names its own commit
    assert docs[0]["machine_info"]["gate_processes"] == 3  # and how its rounds were taken
    assert docs[1]["machine_info"]["git_commit"] != commits["same-case"]
    assert docs[0]["benchmarks"][0]["extra_info"] == {"work": 1, "device": "cpu", "profile": "quick", "num_threads": 1}
    assert compare.main([str(p) for p in jsons[:2]]) == 1 and compare.main([str(p) for p in jsons[2:]]) == 1


# WORK of a candidate whose first three processes (those of the gate's first timing) do three times the work, and
# every later one (a confirmation's) the same work as the baseline: each notes its process id in $GATE_FLAKY
FLAKY_WORK = ('3 if (open(os.path.join(os.environ["GATE_FLAKY"], str(os.getpid())), "w").close() or '
              'len(os.listdir(os.environ["GATE_FLAKY"]))) <= 3 else 1')


@pytest.mark.slow
def test_a_regression_the_confirmation_does_not_reproduce_passes_the_gate(repo, tmp_path, monkeypatch, capsys):
    """One process can run every round several percent slower than another of the same code: three such in one
    timing make a regression of unchanged code. Timed again in fresh processes, it is gone: the gate passes, and
    says what the first timing read. Without the confirmation (--no-confirm) the first reading fails it."""
    repo, commits = repo
    flaky = tmp_path / "flaky"
    shutil.copytree(repo, flaky)
    (flaky / "amal" / "cases.py").write_text(CASES.format(work=FLAKY_WORK, name="work/sum", broken=""))
    for confirm, code in ((True, 0), (False, 1)):
        marks = tmp_path / f"marks-{confirm}"
        marks.mkdir()
        monkeypatch.setenv("GATE_FLAKY", str(marks))
        args = gate_args(flaky, commits["same-case"], tmp_path / str(confirm))
        assert main(args if confirm else [*args, "--no-confirm"]) == code
        out = capsys.readouterr().out
        assert len(list(marks.iterdir())) == (6 if confirm else 3)  # candidate processes started
        if confirm:
            assert "work/sum: regressed in the first timing (ratio 3." in out
            assert "timed again in fresh worker processes, which the table shows: unchanged this time, so" in out
            assert "REGRESSED" not in out and "1 compared" in out and "0 regressed" in out
        else:
            assert "REGRESSED" in out and "first timing" not in out
        assert len(list((tmp_path / str(confirm) / "out").glob("*.json"))) == (4 if confirm else 2)


@pytest.mark.slow
@pytest.mark.parametrize("baseline, reason", [("no-cases", "has no benchmark cases"),
                                              ("other-case", "no benchmark case in common"),
                                              ("broken-case", "every case failed in the baseline"),
                                              ("broken-round", "every case failed in the baseline")])
def test_gate_skips_when_there_is_nothing_to_compare(repo, tmp_path, capsys, baseline, reason):
    repo, commits = repo
    assert main(gate_args(repo, commits[baseline], tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.startswith("gate skipped: ") and reason in out


def test_unknown_ref_exits_2_in_one_line(repo, tmp_path, capsys):
    repo, _ = repo
    assert main(gate_args(repo, "no-such-ref", tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown git ref 'no-such-ref'" in err


@pytest.mark.slow
def test_unknown_case_exits_2_in_one_line(repo, tmp_path, capsys):
    repo, commits = repo
    assert main([*gate_args(repo, commits["same-case"], tmp_path), "--case", "work/SUM"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--case work/SUM: no such case" in err and "cases: work/sum" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_bad_group_threshold_stops_the_gate_before_any_timing(repo, tmp_path, monkeypatch, capsys):
    repo, commits = repo
    log = tmp_path / "order.log"
    monkeypatch.setenv("GATE_ORDER_LOG", str(log))
    assert main([*gate_args(repo, commits["same-case"], tmp_path), "--group-threshold", "nosuch=1.2"]) == 2
    assert "--group-threshold nosuch: no benchmark of that group (groups: work)" in capsys.readouterr().err
    assert not log.exists()  # not one round was timed
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("option", ["--output", "--results"])
def test_an_unwritable_output_exits_2_before_anything_runs(repo, tmp_path, capsys, option):
    repo, commits = repo
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = gate_args(repo, commits["same-case"], tmp_path)
    args[args.index(option) + 1] = str(blocker / "sub")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{option} folder" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize(("option", "reason"), [(["--seed", "-1"], "--seed must be at least 0"),
                                              (["--budget-s", "nan"], "--budget-s must be a finite number"),
                                              (["--min-rounds", "20"], "need 1 <= --min-rounds <= --rounds"),
                                              (["--processes", "0"], "--processes <= --min-rounds, got 0 and 15"),
                                              (["--processes", "16"], "need 1 <= --processes <= --min-rounds")])
def test_a_bad_option_exits_2_before_anything_is_timed(repo, tmp_path, monkeypatch, capsys, option, reason):
    repo, commits = repo
    log = tmp_path / "order.log"
    monkeypatch.setenv("GATE_ORDER_LOG", str(log))
    assert main([*gate_args(repo, commits["same-case"], tmp_path), *option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err
    assert not log.exists() and not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_skipped_gate_prints_json_when_asked(repo, tmp_path, capsys):
    repo, commits = repo
    assert main([*gate_args(repo, commits["other-case"], tmp_path), "--format", "json"]) == 0
    assert "no benchmark case in common" in json.loads(capsys.readouterr().out)["skipped"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_gate_says_so_and_leaves_nothing(repo, tmp_path, how):
    """Ctrl-C reaches the gate and its workers (one process group): it was blamed on the baseline ("worker died",
    exit 2). SIGTERM (a cancelled CI job) reaches the gate alone: it left the extracted baseline in the temp folder."""
    repo, commits = repo
    log, scratch = tmp_path / "order.log", tmp_path / "tmp"
    scratch.mkdir()
    args = [*gate_args(repo, commits["same-case"], tmp_path), "--rounds", "2000", "--min-rounds", "2000"]
    env = {**os.environ, "GATE_ORDER_LOG": str(log), "TMPDIR": str(scratch)}
    gate_run = subprocess.Popen([sys.executable, "-m", "amal.gate", *args], cwd=AMAL.parent, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while (not log.exists() or log.read_text().count("\n") < 10) and time.monotonic() < deadline:
        time.sleep(0.01)  # timing has begun
    if how == "ctrl-c":
        os.killpg(gate_run.pid, signal.SIGINT)
    else:
        gate_run.send_signal(signal.SIGTERM)
    out, err = gate_run.communicate(timeout=60)
    assert gate_run.returncode == 130, err
    assert err.splitlines() == ["interrupted: nothing was compared"] and out == ""
    assert list(scratch.iterdir()) == []  # the baseline's checkout is gone
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_too_few_rounds_stop_the_gate_before_any_timing(repo, tmp_path, monkeypatch, capsys):
    repo, commits = repo
    log = tmp_path / "order.log"
    monkeypatch.setenv("GATE_ORDER_LOG", str(log))
    assert main([*gate_args(repo, commits["same-case"], tmp_path), "--rounds", "4", "--min-rounds", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--min-rounds 3 cannot detect a regression" in err
    assert not log.exists() and not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_baseline_from_before_the_package_skips_even_with_amal_on_pythonpath(tmp_path, monkeypatch, capsys):
    """The workers inherit PYTHONPATH: the baseline's worker found the candidate's amal there and the gate failed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README").write_text("before the package\n")
    first = commit(repo, "no package yet")
    (repo / "amal").mkdir()
    (repo / "amal" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(repo))
    assert main(gate_args(repo, first, tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.startswith("gate skipped: baseline") and "has no amal package" in out


def test_the_gates_notes_are_in_its_json(repo, tmp_path, monkeypatch, capsys):
    """A case the gate did not time (settings changed, failed in the baseline) is named in the JSON's notes, where a
    CI job reads them, not only on stderr."""
    repo, commits = repo
    rounds = pd.DataFrame([{"side": side, "benchmark": "work/sum", "bench_group": "work", "round": r + 1,
                            "round_s": 0.01 + r * 1e-4, "settings": settings_text({"work": 1})}
                           for side in gate.SIDES for r in range(15)])
    note = "work/old: not compared, its settings differ (work 1 vs 2)"
    monkeypatch.setattr(gate, "run_gate", lambda cfg, compare_cfg, quiet: (rounds, [note], [tmp_path / "x.json"], None))
    assert main([*gate_args(repo, commits["same-case"], tmp_path), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["notes"] == [note] and out["counts"]["unchanged"] == 1


def test_candidate_must_be_a_folder(tmp_path, capsys):
    assert main(["--baseline", "HEAD", "--candidate", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_a_candidate_folder_without_amal_is_an_error_not_a_skip(tmp_path, capsys):
    """`--candidate bench` (a subfolder of the checkout, a typo): 'gate skipped', exit 0, passed CI."""
    candidate = Path(__file__).resolve().parent.parent / "bench"
    assert main(["--baseline", "HEAD", "--candidate", str(candidate), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "candidate bench has no amal package" in err
    assert not (tmp_path / "out").exists()


def test_worker_drops_the_finders_of_an_editable_install(monkeypatch):
    from amal import gate_worker

    editable = type("_EditableFinder", (), {"__module__": "__editable___amal_0_1_0_finder"})
    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, editable])
    # (where amal itself is installed editable, its own finder goes too)
    kept = [finder for finder in sys.meta_path if not getattr(finder, "__module__", "").startswith("__editable__")]
    gate_worker.checkout_only()
    assert editable not in sys.meta_path and sys.meta_path == kept  # everything else, in order


@pytest.mark.parametrize(("args", "said"), [
    (["--pairs", "0"], "--pairs must be at least 1, got 0"),
    (["--processes", "0"], "need 1 <= --processes <= 12 (the gate's --min-rounds), got 0"),
    (["--processes", "13"], "need 1 <= --processes <= 12 (the gate's --min-rounds), got 13"),
    (["--slowdowns", "0.5"], "--slowdowns are factors of at least 1 (a planted slowdown), got 0.5"),
    (["--from-rounds", "/nonexistent.parquet"], "--from-rounds /nonexistent.parquet: no such file"),
    (["--case", "nope", "--pairs", "1"], "--case nope: no such case"),
])
def test_the_error_rate_script_refuses_bad_input_in_one_line(args, said, tmp_path):
    """bench/gate_error_rates.py, which the README's figures come from: tracebacks (or minutes of timing first)."""
    done = subprocess.run([sys.executable, "bench/gate_error_rates.py", *args, "--output", str(tmp_path / "out")],
                          cwd=AMAL.parent, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(AMAL.parent)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"gate_error_rates.py: error: {said}")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_worker_that_dies_stops_the_gate_in_one_line(repo, tmp_path, capsys):
    """A baseline worker killed in its set-up counted as "failed in the baseline": the gate skipped the case (and,
    the dead process still in the rotation, every later one) and passed, exit 0; closing it raised BrokenPipeError."""
    repo, commits = repo
    assert main(gate_args(repo, commits["dying-case"], tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "worker died during 'setup': exit code -9" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["round", "setup"])
def test_a_case_that_hangs_stops_the_gate_in_one_line(repo, tmp_path, monkeypatch, capsys, where):
    """A round or a set-up that never ends hung the gate until CI's own time limit killed it, with nothing said. A
    set-up is asked of a side's processes one after the other: the first that hangs stops the gate, the others are
    not asked (each would cost the whole timeout again)."""
    from amal import gate_processes

    repo, commits = repo
    log = tmp_path / "order.log"
    monkeypatch.setenv("GATE_ORDER_LOG", str(log))
    real_pin_sides = gate.pin_sides

    def pin_sides(*args):  # the workers have imported torch (seconds each): from now on, a reply within 3 s
        monkeypatch.setattr(gate_processes, "REPLY_TIMEOUT_S", 3.0)
        return real_pin_sides(*args)

    monkeypatch.setattr(gate, "pin_sides", pin_sides)
    assert main(gate_args(repo, commits[f"hanging-{where}"], tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m amal.gate: error: baseline {commits[f'hanging-{where}']} (")
    assert err.endswith(f" worker gave no reply to '{where}' of work/sum within 3 s: stopped (a case that hangs?)\n")
    if where == "setup":
        assert log.read_text().count("setup ") == 1  # one process asked, not three in turn
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()
