import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import torch

from amal import cli, store
from amal.environment import usable_cpus


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


def _run(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse exits by itself on bad syntax
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_lr_sweep_stores_the_schema_and_prints_a_table(results, capsys):
    code, out, err = _run(["lr-sweep", "--lr", "0.01,0.1,0.26,0.27", "--epochs", "300", "--results", str(results),
                           "--tag", "first <try>", "--quiet"], capsys)
    assert code == 0, err
    assert "diverged at epoch" in out and " 0.2652\n" in out and "stored 1" in out
    header, *lines = out.splitlines()[:5]  # the four learning rates under the column names, in words
    assert header.split() == ["lr", "result", "training", "time", "lr*", "=", "2/λmax(H)"]
    assert [line.split()[0] for line in lines] == ["0.01", "0.1", "0.26", "0.27"]
    assert all(line.split()[-2] in ("s", "ms", "µs") for line in lines)  # a time with its unit, not 0.0028
    (path,) = store.run_files(results)
    df = pd.read_parquet(path)
    assert set(store.COLUMNS) == set(df.columns)
    assert sorted(df["lr"].unique()) == [0.01, 0.1, 0.26, 0.27]
    row = df.iloc[0]
    assert row["experiment"] == "lr-sweep" and row["tag"] == "first <try>" and row["normalize"] == "minmax"
    assert row["torch_version"] and row["cpu_model"] and row["num_threads"] >= 1 and row["cuda_device"] == ""
    assert row["cpu_count"] == usable_cpus()
    threads, cpus = int(row["num_threads"]), usable_cpus()  # and the line above "stored" says where it was measured
    said = (f"measured on {row['host']}: {row['cpu_model']}, {threads} torch thread{'s' * (threads != 1)} on "
            f"{cpus} CPU{'s' * (cpus != 1)}; torch {row['torch_version']}, Python {row['python_version']}, commit "
            f"{row['git_commit'][:12] or '–'}")
    assert [line for line in out.splitlines() if line.startswith("measured on ")][0].startswith(said)
    assert row["timestamp_utc"].endswith("Z") and path.name == f"{row['run_id']}.parquet"
    assert df["lr_max_theory"].round(4).unique().tolist() == [0.2652]


@pytest.mark.parametrize(("option", "recorded"), [([], 1), (["--threads", "2"], 2)])
def test_threads_option_is_applied_and_recorded(results, capsys, option, recorded):
    # without --threads, lr-sweep runs on the campaign's thread count, so a run by hand meets the campaign's runs
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # neither value the test expects
    try:
        code, _, err = _run(["lr-sweep", "--lr", "0.1", "--epochs", "5", *option, "--results", str(results)], capsys)
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    assert pd.read_parquet(results)["num_threads"].unique().tolist() == [recorded]


@pytest.mark.slow
def test_run_id_and_timestamp_are_when_the_run_started(results, capsys):
    before = datetime.now(UTC).replace(microsecond=0)
    code, _, err = _run(["lr-sweep", "--lr", "0.1", "--epochs", "60000", "--threads", "1", "--results", str(results),
                         "--quiet"], capsys)
    after = datetime.now(UTC)
    assert code == 0, err
    assert after - before > timedelta(seconds=2)  # the run ends seconds after it starts: the stamp tells which
    row = pd.read_parquet(results).iloc[0]
    started = datetime.strptime(row["timestamp_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= started <= before + timedelta(seconds=1)
    assert row["run_id"].startswith(f"{started:%Y%m%dT%H%M%SZ}-lr-sweep-")


EDIT_DURING_RUN = """
import sys
from pathlib import Path

from amal import cli
from amal.experiments import lr_sweep

run = lr_sweep.run


def edit_then_run(cfg, progress=None):  # the checkout changes once the run has started
    source = Path(lr_sweep.__file__)
    source.write_text(source.read_text() + "# edited during the run\\n")
    return run(cfg, progress)


lr_sweep.run = edit_then_run
sys.exit(cli.main(sys.argv[1:]))
"""


def test_commit_is_read_when_the_run_starts(tmp_path):
    """A checkout edited while a run goes on: the rows name the clean commit that ran, not '+dirty'."""
    repo = tmp_path / "repo"
    shutil.copytree(Path(cli.__file__).parent, repo / "amal", ignore=shutil.ignore_patterns("__pycache__"))

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.org",
                               *args], check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "amal")
    argv = ["lr-sweep", "--lr", "0.1", "--epochs", "5", "--results", str(tmp_path / "results"), "--quiet"]
    done = subprocess.run([sys.executable, "-c", EDIT_DURING_RUN, *argv], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert git("status", "--porcelain") == "M amal/experiments/lr_sweep.py"  # edited, after the start
    assert pd.read_parquet(tmp_path / "results")["git_commit"].unique().tolist() == [git("rev-parse", "HEAD")]


BAD = [
    (["lr-sweep", "--lr", "0"], "--lr must be > 0"),
    (["lr-sweep", "--lr", "-0.1"], "--lr must be > 0"),
    (["lr-sweep", "--lr", "nan"], "not a finite number"),
    (["lr-sweep", "--lr", "fast"], "'fast' is not a number"),
    (["lr-sweep", "--lr", ""], "comma-separated list"),
    (["lr-sweep", "--lr", "0.1,,0.2"], "comma-separated list"),
    (["lr-sweep", "--epochs", "0"], "--epochs must be > 0"),
    (["lr-sweep", "--epochs", str(10**20)], "--epochs must be at most 1,000,000,000, got 100,000,000,000,000,000,000"),
    (["batch-size", "--epochs", "1000000001"], "--epochs must be at most 1,000,000,000"),
    (["autoencoder", "--epochs", "1000000001"], "--epochs must be at most 1,000,000,000"),
    (["lr-sweep", "--epochs", "ten"], "invalid int value"),
    (["lr-sweep", "--normalize", "l2"], "unknown value 'l2'"),
    (["lr-sweep", "--test-size", "1.5"], "--test-size must be in [0, 1)"),
    (["lr-sweep", "--threads", "0"], "threads must be from 1 to 1,024, got 0"),
    (["lr-sweep", "--threads", "99999999999"], "threads must be from 1 to 1,024"),  # was a C overflow
    (["lr-sweep", "--test-size", "0.999"], "test size 0.999 leaves 0 of the 506 rows to train on"),
    (["lr-sweep", "--seed", "-1"], "--seed must be in [0, 2**32)"),
    (["lr-sweep", "--seed", str(2**32)], "--seed must be in [0, 2**32)"),
    (["batch-size", "--target-ratio", "0.5"], "--target-ratio must be > 1"),
    (["autoencoder", "--lr", "inf"], "--lr must be > 0 and finite, got inf"),
    (["no-such-experiment"], "invalid choice"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, message, results, capsys):
    code, out, err = _run([*argv, "--results", str(results)], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not results.exists()  # not even an empty folder


def test_unwritable_results_directory(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = _run(["lr-sweep", "--lr", "0.1", "--results", str(blocker / "results")], capsys)
    assert code == 2 and "not writable" in err and len(err.strip().splitlines()) == 1


def test_help_everywhere():
    for argv in (["--help"], ["lr-sweep", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "amal.run", *argv], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage: python -m amal.run" in proc.stdout


def test_an_experiments_help_keeps_its_paragraphs():
    """batch-size's description ran its paragraphs together, with Markdown backticks and words cut at hyphens."""
    proc = subprocess.run([sys.executable, "-m", "amal.run", "batch-size", "--help"], capture_output=True, text=True)
    description = proc.stdout.split("\n\n")[1:]
    assert description[0].startswith("TP2: full batch") and description[1].startswith("Linear regression")
    assert "`" not in proc.stdout and not any(line.endswith("-") for line in proc.stdout.splitlines())
    assert "--results DIR" in proc.stdout


def test_the_package_lists_its_commands_and_refuses_unknown_options():
    for argv in ([], ["--help"]):
        proc = subprocess.run([sys.executable, "-m", "amal", *argv], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage: python -m amal" in proc.stdout and "amal.report" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "amal", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr == "python -m amal: error: unrecognized arguments: --bogus\n"


def test_module_entry_point_runs_end_to_end(results):
    proc = subprocess.run([sys.executable, "-m", "amal.run", "lr-sweep", "--lr", "0.2", "--epochs", "10",
                           "--results", str(results)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "final MSE" in proc.stdout and len(store.run_files(results)) == 1
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal


@pytest.mark.parametrize("module", ["amal.run lr-sweep --epochs 1", "amal.report --no-run",
                                    "amal.report --no-run --out", "amal.gate --baseline HEAD",
                                    "amal.gate --baseline HEAD --output", "amal.compare a b"])
def test_an_empty_folder_path_is_refused_not_read_as_the_default(module, tmp_path):
    """`--results "$RESULTS"` with the variable unset stored into ./results (the gate: into the current folder;
    compare looked its run ids up there)."""
    *command, last = module.split()
    argv = [*command, last, ""] if last in ("--out", "--output") else [*command, last, "--results", ""]
    done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.endswith("an empty path; leave the option out for the default\n")
    assert len(done.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_a_reader_that_went_away_ends_the_output_not_the_stored_run(tmp_path):
    """`python -m amal.run ... | head -1`: the lines after the stored run met a closed pipe, and a BrokenPipeError
    traceback and exit code 1 followed a run stored all the same."""
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "amal.run", "lr-sweep", "--lr", "0.1", "--epochs", "2", "--quiet",
                             "--results", str(results)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert err == "" and len(store.run_files(results)) == 1
