"""The autoencoder's checkpoints through the CLI: unsafe, corrupt and foreign files refused (nothing overwritten),
resume after SIGKILL bit for bit, Ctrl-C, and what a resumed run stores and says."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from amal import cli, store
from amal.checkpoint import FORMAT, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class Touch:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def no_files(folder: Path) -> bool:
    return not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


def refused(tmp_path, capsys, checkpoint: Path, *args) -> str:
    capsys.readouterr()  # what the run that made the checkpoint said (on a busy machine, a note on stderr) is its own
    before = checkpoint.read_bytes()
    results = tmp_path / "results"
    argv = ["autoencoder", "--quiet", "--device", "cpu", "--results", str(results), "--checkpoint", str(checkpoint),
            "--resume", "--epochs", "3", "--hidden", "16", "--n-train", "64", *args]
    assert cli.main(argv) == 2
    assert checkpoint.read_bytes() == before and no_files(results)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


def test_unsafe_checkpoint_is_refused_without_running_it(tmp_path, capsys):
    marker, checkpoint = tmp_path / "code-ran", tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": Touch(marker), "epoch": 1}, checkpoint)
    assert "pickled objects other than tensors" in refused(tmp_path, capsys, checkpoint)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused_and_kept(tmp_path, capsys):
    good = tmp_path / "good.pt"
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--results", str(tmp_path / "r0"), "--epochs", "1",
                     "--hidden", "16", "--n-train", "64", "--checkpoint", str(good)]) == 0
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-100])
    assert "is truncated, corrupt" in refused(tmp_path, capsys, truncated)
    flipped = tmp_path / "flipped.pt"  # a byte flipped inside a tensor: torch.load alone would train on it
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    assert "fails its checksum" in refused(tmp_path, capsys, flipped)
    checkpoint = load_checkpoint(good)
    for name, broken in (("no-rng.pt", {**checkpoint, "rng": {}}),
                         ("bad-rng.pt", {**checkpoint, "rng": {**checkpoint["rng"], "torch": torch.zeros(3)}}),
                         ("bad-optimizer.pt", {**checkpoint, "optimizer": {"state": {}, "param_groups": "x"}}),
                         ("bad-history.pt", {**checkpoint, "history": "x"}),
                         ("gap-in-history.pt", {**checkpoint, "history": [{**checkpoint["history"][0], "epoch": 5}]}),
                         ("odd-history.pt", {**checkpoint, "history": [{"epoch": 1, "shell": 1.0}]}),
                         ("bad-measured-on.pt", {**checkpoint, "measured_on": None}),
                         ("odd-measured-on.pt", {**checkpoint, "measured_on": {"host": [1]}})):
        save_checkpoint(tmp_path / name, {key: value for key, value in broken.items() if key != "format"})
        reason = {"no-rng.pt": "random states this run cannot restore", "bad-rng.pt": "random states",
                  "bad-optimizer.pt": "does not fit this model", "bad-history.pt": "a history of the wrong type",
                  "gap-in-history.pt": "a history of epochs 5–5, not up to 1",
                  "odd-history.pt": "a history of the wrong type",
                  "bad-measured-on.pt": "measured_on of the wrong type",
                  "odd-measured-on.pt": "measured_on of the wrong type"}[name]
        assert reason in refused(tmp_path, capsys, tmp_path / name)  # one line, exit 2, file kept
    assert "made with hidden=16, this run asks for hidden=8" in refused(tmp_path, capsys, good,
                                                                              "--hidden", "8")
    assert "made with lr=0.001, this run asks for lr=0.01" in refused(tmp_path, capsys, good, "--lr", "0.01")
    old_split = tmp_path / "old-split.pt"  # seed 3, made when --seed also split the subset: other test images
    checkpoint = {key: value for key, value in load_checkpoint(good).items() if key not in ("format", "split_seed")}
    save_checkpoint(old_split, {**checkpoint, "config": {**checkpoint["config"], "seed": 3}})
    assert ("was trained on the subset split with seed 3 (split with --seed before it was always 0)"
            in refused(tmp_path, capsys, old_split, "--seed", "3"))
    reshaped = tmp_path / "reshaped.pt"  # the config says hidden 16, the weights are of another shape
    checkpoint = load_checkpoint(good)
    checkpoint["model"] = {name: torch.zeros(2, *tensor.shape[1:]) for name, tensor in checkpoint["model"].items()}
    save_checkpoint(reshaped, {key: value for key, value in checkpoint.items() if key != "format"})
    assert "does not fit this model: size mismatch for " in refused(tmp_path, capsys, reshaped)


def test_resume_accepts_settings_that_mean_the_same(tmp_path, capsys):
    """--n-train 0 is every training image: a checkpoint made with --n-train 4000 (all of the subset's) resumes."""
    checkpoint = tmp_path / "c.pt"
    base = ["autoencoder", "--quiet", "--device", "cpu", "--hidden", "8", "--batch-size", "500",
            "--checkpoint", str(checkpoint)]
    assert cli.main([*base, "--n-train", "4000", "--epochs", "1", "--results", str(tmp_path / "r1")]) == 0
    assert cli.main([*base, "--n-train", "0", "--epochs", "2", "--resume", "--results", str(tmp_path / "r2")]) == 0
    assert "made with n_train=4000, this run asks for n_train=3999" in refused(tmp_path, capsys, checkpoint,
                                                                            "--n-train", "3999", "--hidden", "8",
                                                                            "--batch-size", "500")


def test_a_resumed_run_stores_the_earlier_epochs_only_when_timed_alike(tmp_path, capsys):
    """The checkpoint's earlier epochs join the resumed run's rows when they were measured as the rest are; with
    another thread count their times would not compare, and the run starts at the resumed epoch."""
    import torch

    threads = torch.get_num_threads()
    base = ["autoencoder", "--quiet", "--device", "cpu", "--hidden", "8", "--n-train", "256", "--batch-size", "64"]
    try:
        for name, resume_threads, epochs in (("same", "1", [1, 2, 3]), ("other", "2", [3])):
            checkpoint, results = tmp_path / f"{name}.pt", tmp_path / name
            assert cli.main([*base, "--threads", "1", "--epochs", "2", "--checkpoint", str(checkpoint),
                             "--results", str(tmp_path / f"{name}-first")]) == 0
            assert cli.main([*base, "--threads", resume_threads, "--epochs", "3", "--checkpoint", str(checkpoint),
                             "--resume", "--results", str(results)]) == 0
            rows = pd.read_parquet(results).sort_values("epoch")
            assert rows["epoch"].tolist() == epochs, name
            said = ("the checkpoint's epochs 1-2 were timed otherwise (threads 1 then 2): not stored with this run, "
                    "whose times all come from one setting")
            assert (said in capsys.readouterr().err) == (name == "other")
            first = pd.read_parquet(tmp_path / f"{name}-first").sort_values("epoch")
            if name == "same":  # the first two rows are the first run's, as it measured them
                columns = ["epoch", "elapsed_s", "epoch_s", "cpu_wait", "train_loss", "test_loss", "eval_s"]
                assert rows[columns].head(2).reset_index(drop=True).equals(first[columns].reset_index(drop=True))
    finally:
        torch.set_num_threads(threads)


def test_the_note_on_epochs_left_out_names_them_and_every_change(tmp_path, capsys):
    """A checkpoint whose history starts past epoch 1 (its run was itself resumed elsewhere): the note names the
    epochs it holds; 0 workers is a value, not a blank; a checkpoint without `measured_on` (written by hand) says so."""
    checkpoint = tmp_path / "c.pt"
    base = ["autoencoder", "--quiet", "--device", "cpu", "--hidden", "8", "--n-train", "256", "--batch-size", "64",
            "--checkpoint", str(checkpoint), "--results", str(tmp_path / "r")]
    assert cli.main([*base, "--epochs", "1", "--num-workers", "1"]) == 0
    assert cli.main([*base, "--epochs", "3", "--resume"]) == 0  # epoch 1 (one worker) left out: history 2-3
    assert "epoch 1 was timed otherwise (workers 1 then 0)" in capsys.readouterr().err
    assert [row["epoch"] for row in load_checkpoint(checkpoint)["history"]] == [2, 3]
    assert cli.main([*base, "--epochs", "4", "--resume", "--num-workers", "1"]) == 0
    assert "the checkpoint's epochs 2-3 were timed otherwise (workers 0 then 1)" in capsys.readouterr().err
    older = {key: value for key, value in load_checkpoint(checkpoint).items() if key not in ("format", "measured_on")}
    save_checkpoint(checkpoint, older)
    assert cli.main([*base, "--epochs", "5", "--resume", "--num-workers", "1"]) == 0
    assert ("the checkpoint's epoch 4 was timed otherwise (the checkpoint does not say where)"
            in capsys.readouterr().err)


def test_a_checkpoint_from_before_cpu_wait_was_kept_resumes_with_it_not_measured(tmp_path):
    """Its history rows lack cpu_wait: still a history of the right type; the carried epochs read NaN there (not
    measured), the resumed one its own."""
    checkpoint = tmp_path / "c.pt"
    base = ["autoencoder", "--quiet", "--device", "cpu", "--hidden", "8", "--n-train", "256", "--batch-size", "64",
            "--threads", "1", "--checkpoint", str(checkpoint)]
    assert cli.main([*base, "--epochs", "1", "--results", str(tmp_path / "r1")]) == 0
    state = load_checkpoint(checkpoint)
    assert math.isfinite(state["history"][0]["cpu_wait"])  # kept now
    save_checkpoint(checkpoint, {**state, "history": [{key: value for key, value in row.items() if key != "cpu_wait"}
                                                      for row in state["history"]]})
    assert cli.main([*base, "--epochs", "2", "--resume", "--results", str(tmp_path / "r2")]) == 0
    rows = pd.read_parquet(tmp_path / "r2").sort_values("epoch")
    assert rows["epoch"].tolist() == [1, 2]
    assert rows["cpu_wait"].isna().tolist() == [True, False]


def test_epochs_timed_on_another_number_of_cpus_are_left_out(tmp_path, capsys, monkeypatch):
    """A run resumed in a container given fewer CPUs (same host, threads and device): its earlier epochs' times would
    not compare with its own, so they are not stored with it."""
    from amal import environment

    checkpoint = tmp_path / "c.pt"
    base = ["autoencoder", "--quiet", "--device", "cpu", "--hidden", "8", "--n-train", "256", "--batch-size", "64",
            "--threads", "1", "--checkpoint", str(checkpoint)]
    monkeypatch.setattr(environment, "usable_cpus", lambda: 4)
    assert cli.main([*base, "--epochs", "1", "--results", str(tmp_path / "r1")]) == 0
    monkeypatch.setattr(environment, "usable_cpus", lambda: 2)
    assert cli.main([*base, "--epochs", "2", "--resume", "--results", str(tmp_path / "r2")]) == 0
    assert "epoch 1 was timed otherwise (CPUs 4 then 2)" in capsys.readouterr().err
    rows = pd.read_parquet(tmp_path / "r2")
    assert rows["epoch"].tolist() == [2] and rows["cpu_count"].tolist() == [2]


def test_a_run_whose_checkpoint_another_run_replaced_stops_and_leaves_it(tmp_path, capsys, monkeypatch):
    """Two runs given one --checkpoint: after this run's first epoch another process writes the file; this run's
    second save stops it (exit 2, nothing stored) instead of overwriting the other run's state."""
    from amal.experiments import autoencoder

    path, other = tmp_path / "c.pt", {"model": {}, "epoch": 7}
    real_losses = autoencoder.losses  # called once an epoch, between its training and its checkpoint
    epochs = []

    def losses(*args, **kwargs):
        epochs.append(1)
        if len(epochs) == 2:  # epoch 2: the other run saves before this one does
            save_checkpoint(path, other)
        return real_losses(*args, **kwargs)

    monkeypatch.setattr(autoencoder, "losses", losses)
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--hidden", "8", "--n-train", "256", "--epochs", "3",
                     "--checkpoint", str(path), "--results", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == (f"python -m amal.run autoencoder: error: checkpoint {path} was written by "
                                       "another process since this run last wrote it (two runs given one "
                                       "--checkpoint?): stopped, that file left as it is\n")
    assert torch.load(path, weights_only=True)["epoch"] == 7 and not (tmp_path / "r").exists()


def test_a_checkpoint_into_a_missing_folder_makes_it_and_a_failed_run_leaves_none(tmp_path, capsys):
    """As the results folder is, the checkpoint's folder is made (through a link: the folder it points to); a run
    that fails before storing anything leaves no empty folder of its making behind."""
    link = tmp_path / "c.pt"
    link.symlink_to(tmp_path / "gone" / "deeper" / "c.pt")
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--checkpoint", str(link), "--data-root",
                     str(empty), "--results", str(tmp_path / "r")]) == 2
    assert "no-mnist" in capsys.readouterr().err
    assert not (tmp_path / "gone").exists() and not (tmp_path / "r").exists()
    deep = tmp_path / "runs" / "ae" / "c.pt"
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--epochs", "1", "--n-train", "64", "--checkpoint",
                     str(deep), "--results", str(tmp_path / "r")]) == 0
    assert torch.load(deep, weights_only=True)["epoch"] == 1
    loop = tmp_path / "loop.pt"
    loop.symlink_to(loop)
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--checkpoint", str(loop), "--results",
                     str(tmp_path / "r2")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "r2").exists()


def child_env() -> dict:
    """The environment of a CLI child process: one thread, this checkout first on the path, the rest kept (a
    folder of extra packages on PYTHONPATH, as bench/gpu_check.sh sets, included)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def finish(argv: list[str], env: dict) -> None:
    """Run a CLI child to its end (3 minutes at most); its stderr is the failure message if it fails."""
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr


def command(device: str, *args) -> list[str]:
    return [sys.executable, "-m", "amal.run", "autoencoder", "--device", device, "--threads", "1", "--quiet",
            "--hidden", "32", "--n-train", "1000", "--batch-size", "16", "--seed", "3", "--epochs", "30", *args]


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_resume_after_sigkill_is_bit_exact(tmp_path, device):
    env = child_env()
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    finish(command(device, "--checkpoint", str(full), "--results", str(tmp_path / "r1")), env)
    victim = subprocess.Popen(command(device, "--checkpoint", str(part), "--results", str(tmp_path / "r2")), cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not part.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL  # killed by the signal, not finished
    killed_at = load_checkpoint(part)["epoch"]
    assert 1 <= killed_at < 30
    assert not (tmp_path / "r2").exists() or not list((tmp_path / "r2").glob("*.parquet"))
    finish(command(device, "--checkpoint", str(part), "--resume", "--results", str(tmp_path / "r3")), env)
    expected, resumed = load_checkpoint(full), load_checkpoint(part)
    assert resumed["epoch"] == 30 and resumed["iteration"] == expected["iteration"] == 30 * 63
    for name, tensor in expected["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    for index, state in expected["optimizer"]["state"].items():
        for key, tensor in state.items():
            assert torch.equal(resumed["optimizer"]["state"][index][key], tensor), (index, key)
    assert torch.equal(resumed["rng"]["loader"], expected["rng"]["loader"])
    rows = pd.read_parquet(tmp_path / "r3").sort_values("epoch")
    full_rows = pd.read_parquet(tmp_path / "r1").sort_values("epoch")
    # stored whole: the killed run's epochs come from the checkpoint (same machine and settings), the rest from here
    assert rows["epoch"].tolist() == list(range(1, 31))
    assert rows["train_loss"].tolist() == full_rows["train_loss"].tolist()  # bit for bit, every epoch
    assert rows["elapsed_s"].is_monotonic_increasing
    assert (rows["resumed_from_epoch"] == killed_at).all()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C; kill, timeout, a cancelled CI job
def test_ctrl_c_stores_nothing_and_says_how_to_resume(tmp_path, signum):
    env = child_env()
    checkpoint, results = tmp_path / "c.pt", tmp_path / "results"
    run = subprocess.Popen(command("cpu", "--checkpoint", str(checkpoint), "--results", str(results)), cwd=ROOT,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    run.send_signal(signum)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130
    assert err.splitlines() == [
        "interrupted: nothing was stored",
        f"the checkpoint {checkpoint} holds the last finished epoch: run the same command with --resume to go on "
        "from there"]
    assert not results.exists() and load_checkpoint(checkpoint)["epoch"] >= 1


def test_a_resumed_run_says_where_it_resumed_and_where_its_grid_went(tmp_path, capsys):
    results, checkpoint = tmp_path / "results", tmp_path / "c.pt"
    argv = ["autoencoder", "--quiet", "--device", "cpu", "--results", str(results), "--hidden", "16", "--n-train",
            "64", "--checkpoint", str(checkpoint)]
    assert cli.main([*argv, "--epochs", "2"]) == 0
    capsys.readouterr()
    assert cli.main([*argv, "--epochs", "3", "--resume"]) == 0
    out, err = capsys.readouterr()
    assert f"resumed from epoch 2 of the checkpoint {checkpoint}: epochs 1-2 as the run that wrote it timed them" in err
    (run,) = store.run_files(results)[1:]
    grid = pd.read_parquet(run)["recon_png"].iloc[0]
    assert out.endswith(f"reconstruction grid in {results / grid}\n") and (results / grid).is_file()


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_dataloader_workers_is_a_clean_interruption(tmp_path):
    """`timeout` and a cancelled CI job signal the whole process group: the workers died first and torch raised
    'DataLoader worker (pid ...) is killed by signal: Terminated' (a traceback, or 9-22 lines of it ignored in
    __del__), and a signal landing in os.fork's hooks was dropped, the run then stored as finished."""
    checkpoint = tmp_path / "c.pt"
    victim = subprocess.Popen(command("cpu", "--num-workers", "2", "--epochs", "300", "--checkpoint", str(checkpoint),
                                      "--results", str(tmp_path / "r")),
                              cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(victim.pid, signal.SIGTERM)
    out, err = victim.communicate(timeout=120)
    assert victim.returncode == 130, err
    assert err.splitlines() == ["interrupted: nothing was stored",
                                f"the checkpoint {checkpoint} holds the last finished epoch: run the same command with "
                                "--resume to go on from there"]
    assert not (tmp_path / "r").exists()
