import math

import numpy as np
import pandas as pd
import pytest
import torch

from amal import store
from amal.cli import main
from amal.data import least_squares_mse, load_boston
from amal.experiments import EXPERIMENTS, batch_size
from amal.experiments.batch_size import (
    BatchSizeConfig,
    n_train_rows,
    steps_per_epoch,
    time_to_target,
)
from amal.report.format import number


def test_registered():
    assert EXPERIMENTS["batch-size"] is batch_size


@pytest.mark.parametrize(("n", "batch", "steps"), [(506, 1, 506), (506, 16, 32), (506, 253, 2), (506, 506, 1)])
def test_steps_per_epoch(n, batch, steps):
    assert steps_per_epoch(n, batch) == steps


@pytest.mark.parametrize("test_size", [0.0, 0.2, 0.25, 1 / 3])
def test_n_train_rows_matches_the_split(test_size):
    assert n_train_rows(test_size) == len(load_boston("minmax", test_size).x_train)


def test_time_to_target():
    curve = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [9.0, 5.0, 2.0, 1.0], "elapsed_s": [0.1, 0.2, 0.3, 0.4]})
    assert time_to_target(curve, 5.0) == (0.2, 2)
    assert time_to_target(curve, 4.0) == (0.3, 3)
    seconds, epoch = time_to_target(curve, 0.5)
    assert math.isnan(seconds) and epoch is None


def test_run_rows_time_to_target_and_decomposition():
    cfg = BatchSizeConfig(batch_sizes=(253, 506), implementations=("tensor", "manual"), epochs=3, seeds=2,
                          target_ratio=27.0, decomposition_steps=4)
    df = batch_size.run(cfg)
    assert len(df) == 2 * 2 * 2 * 3
    assert set(df.columns) <= set(store.COLUMNS)
    data = load_boston("minmax")
    assert df["optimum_loss"].unique() == pytest.approx([least_squares_mse(data.x_train, data.y_train)])
    assert df["target_loss"].unique() == pytest.approx(27.0 * df["optimum_loss"].unique())
    for (_, batch, _), run in df.groupby(["implementation", "batch_size", "seed"]):
        assert list(run["epoch"]) == [1, 2, 3]
        assert run["elapsed_s"].is_monotonic_increasing and (run["elapsed_s"] > 0).all()
        assert (run["steps_per_epoch"] == {253: 2, 506: 1}[batch]).all()
        reached = run[run["train_loss"] <= run["target_loss"]]
        if reached.empty:
            assert run["epoch_to_target"].isna().all() and run["time_to_target_s"].isna().all()
        else:
            assert (run["epoch_to_target"] == reached["epoch"].iloc[0]).all()
            assert (run["time_to_target_s"] == reached["elapsed_s"].iloc[0]).all()
        for part in ("data", "forward", "backward", "update"):
            assert run[f"step_{part}_s"].nunique() == 1 and run[f"step_{part}_s"].iloc[0] > 0
        assert run["cpu_wait"].nunique(dropna=False) == 1  # the run's training loop's, on each of its rows
    # 27 × optimum = 591.2: two steps per epoch at lr 1e-3 get there at epoch 2 (loss 589.4), full batch (one step per
    # epoch) is still at 596.6 after 3 epochs
    assert (df.loc[df["batch_size"] == 253, "epoch_to_target"] == 2).all()
    assert df.loc[df["batch_size"] == 506, "epoch_to_target"].isna().all()
    # same seed and permutations: tensor and manual curves agree
    tensor = df[df["implementation"] == "tensor"].sort_values(["batch_size", "seed", "epoch"])
    manual = df[df["implementation"] == "manual"].sort_values(["batch_size", "seed", "epoch"])
    np.testing.assert_allclose(tensor["train_loss"], manual["train_loss"], rtol=1e-5)


def test_cli_stores_one_run(tmp_path, capsys):
    argv = ["batch-size", "--batch-size", "253,n", "--implementation", "manual,tensor", "--epochs", "2",
            "--seeds", "1", "--results", str(tmp_path), "--quiet", "--test-size", "0.2"]
    assert main(argv) == 0
    (path,) = store.run_files(tmp_path)
    df = pd.read_parquet(path)
    assert df["run_id"].nunique() == 1 and (df["experiment"] == "batch-size").all()
    assert sorted(df["batch_size"].unique()) == [253, 404]  # n = the 404 training rows of a 20 % split
    assert df["test_loss"].notna().all() and (df["n_train"] == 404).all()
    out = capsys.readouterr().out
    assert "stored 8 rows" in out
    header, *lines = out.splitlines()[:5]  # one line per (implementation, batch size), the columns in words
    assert header.split()[:9] == ["implementation", "batch", "size", "final", "MSE", "diverged", "training", "time",
                                  "µs/step"]
    assert len(lines) == 4 and "NaN" not in out and all("not reached" in line for line in lines)  # not in 2 epochs


def cli_exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse refuses malformed values itself, also with exit code 2
        return exc.code


BAD_INPUT = {
    "zero batch size": ["--batch-size", "0"],
    "negative batch size": ["--batch-size", "4,-1"],
    "non-integer batch size": ["--batch-size", "1.5"],
    "word batch size": ["--batch-size", "all"],
    "batch size above n": ["--batch-size", "507"],
    "full batch of the whole set with a split": ["--batch-size", "506", "--test-size", "0.2"],
    "empty grid": ["--batch-size", ""],
    "empty item": ["--batch-size", "1,,2"],
    "unknown implementation": ["--implementation", "tensor,numpy"],
    "unknown device": ["--device", "tpu"],
    "zero epochs": ["--epochs", "0"],
    "zero seeds": ["--seeds", "0"],
    "more seeds than 32 bits hold": ["--seeds", str(2**32 + 1)],
    "negative lr": ["--lr", "-0.1"],
    "nan lr": ["--lr", "nan"],
    "lr whose double overflows float32": ["--lr", "2e38"],
    "unknown normalisation": ["--normalize", "robust"],
}


@pytest.mark.parametrize("extra", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, extra):
    results = tmp_path / "results"
    assert cli_exit_code(["batch-size", "--epochs", "1", "--results", str(results), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err
    assert not results.exists() or not any(results.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_refused(tmp_path, capsys):
    assert cli_exit_code(["batch-size", "--device", "cuda", "--results", str(tmp_path / "r")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_profiles_and_bench_cases():
    assert batch_size.PROFILES["full"].epochs == 1000
    assert batch_size.PROFILES["full"].batch_sizes == (1, 2, 4, 8, 16, 32, 64, 128, 256, 506)
    quick = batch_size.bench_cases("quick")
    names = [case.name for case in quick]
    assert len(names) == len(set(names)) == 4 * 3 * 2  # implementations × batch sizes × devices
    assert "batch-size/tensor/b16/cpu" in names
    case = next(c for c in quick if c.name == "batch-size/manual/b506/cpu")
    assert case.params["batch_size"] == 506 and case.params["epochs"] == 5 and case.device == "cpu"
    assert case.params["data_source"] == load_boston().source  # a setting the gate compares
    assert case.setup()() is None  # one round of real training runs


@pytest.mark.gpu
def test_cuda_run_matches_cpu():
    cfg = BatchSizeConfig(batch_sizes=(16, 506), implementations=batch_size.IMPLEMENTATIONS, epochs=2,
                          seeds=1, decomposition_steps=4)
    gpu = batch_size.run(BatchSizeConfig(**{**cfg.__dict__, "device": "cuda"}))
    assert (gpu["device"] == "cuda").all() and (gpu["elapsed_s"] > 0).all()
    full = gpu[gpu["batch_size"] == 506].sort_values(["implementation", "epoch"])
    cpu = batch_size.run(cfg)
    cpu_full = cpu[cpu["batch_size"] == 506].sort_values(["implementation", "epoch"])
    np.testing.assert_allclose(full["train_loss"], cpu_full["train_loss"], rtol=1e-4)


def test_a_loss_that_explodes_counts_as_divergence_before_it_overflows():
    """lr 0.5 at full batch: the MSE climbs past 10^6 x its start (as lr-sweep's rule) long before it is inf."""
    from amal.experiments import batch_size

    cfg = batch_size.BatchSizeConfig(batch_sizes=(506,), implementations=("fused",), epochs=30, seeds=1, lr=0.5,
                                     decomposition_steps=1)
    df = batch_size.run(cfg)
    assert df["diverged"].all() and df["diverged_epoch"].iloc[0] == len(df) < 30
    assert np.isfinite(df["train_loss"]).all()  # stopped on the blow-up rule, not on an overflow


def test_the_summary_says_how_many_seeds_diverged_and_when():
    cfg = batch_size.BatchSizeConfig(batch_sizes=(64, 506), implementations=("fused",), epochs=6, seeds=2, lr=1.0,
                                     decomposition_steps=1)
    runs = batch_size.run(cfg)
    table = batch_size.summary(runs).set_index("batch size")
    stopped = runs[runs["batch_size"] == 506].groupby("seed")["epoch"].max()
    assert runs["diverged"].all() and stopped.min() > 1  # full batch takes a few epochs to blow up
    assert table.loc["506", "diverged"] == f"2/2 at epoch {stopped.min()}"
    calm_runs = batch_size.run(batch_size.BatchSizeConfig(
        batch_sizes=(16,), implementations=("fused",), epochs=2, seeds=1, decomposition_steps=1))
    calm = batch_size.summary(calm_runs)
    assert calm["diverged"].tolist() == ["–"]
    # beside a batch size that did not diverge: the epoch stays a whole number ("at epoch 3.0" before), and an
    # exploded loss is no final MSE
    mixed = batch_size.summary(pd.concat([runs, calm_runs], ignore_index=True)).set_index("batch size")
    assert mixed.loc["506", "diverged"] == f"2/2 at epoch {stopped.min()}" and mixed.loc["506", "final MSE"] == "–"
    assert mixed.loc["16", "final MSE"] == number(calm_runs["train_loss"].iloc[-1])
    assert mixed.loc["506", "time to target"] == "not reached" and mixed.loc["506", "reached"] == "0"


def summary_rows(implementation, batch, seed, elapsed_s, loss, target_s, diverged=False):
    """The last epoch of a run of 3 epochs on 506 rows, as `run` stores it (only what the summary reads)."""
    return {"implementation": implementation, "batch_size": batch, "seed": seed, "epoch": 3,
            "steps_per_epoch": steps_per_epoch(506, batch),
            "elapsed_s": elapsed_s, "train_loss": loss, "diverged": diverged, "time_to_target_s": target_s,
            "epoch_to_target": pd.NA if math.isnan(target_s) else 2, "step_data_s": 4.13e-6, "step_forward_s": 1.24e-5,
            "step_backward_s": 2.05e-4, "step_update_s": 1.06e-6}


def test_the_summary_names_its_columns_in_words_and_writes_values_as_the_report_does():
    """Training time was rounded to 4 decimals (0.0002 s), a target not reached was NaN, and the columns were the
    store's names: now a time has its unit, the same precision all down a column, and '–' or 'not reached' for no
    value."""
    rows = pd.DataFrame([summary_rows("fused", 506, 0, 2.2e-4, 21.9964, math.nan),
                         summary_rows("fused", 506, 1, 2.4e-4, 21.9964, math.nan),
                         summary_rows("manual", 1, 0, 1.52, 26.997, 0.0416),
                         summary_rows("manual", 1, 1, 1.7, math.inf, math.nan, diverged=True)])
    table = batch_size.summary(rows)
    assert table.columns.tolist() == [
        "implementation", "batch size", "final MSE", "diverged", "training time", "µs/step", "time to target",
        "reached", "seeds", "data µs/step", "forward µs/step", "backward µs/step", "update µs/step"]
    assert table.to_dict("records") == [
        {"implementation": "fused", "batch size": "506", "final MSE": "22.0", "diverged": "–",
         "training time": "230 µs", "µs/step": "76.7", "time to target": "not reached", "reached": "0",
         "seeds": "2", "data µs/step": "4.13", "forward µs/step": "12.4", "backward µs/step": "205",
         "update µs/step": "1.06"},
        {"implementation": "manual", "batch size": "1", "final MSE": "27.0", "diverged": "1/2 at epoch 3",
         "training time": "1.61 s", "µs/step": "1,060",
         "time to target": "41.6 ms", "reached": "1", "seeds": "2", "data µs/step": "4.13",
         "forward µs/step": "12.4", "backward µs/step": "205", "update µs/step": "1.06"}]
    assert "NaN" not in table.to_string(index=False)


def test_the_cli_names_the_one_run_whose_threads_waited_for_a_cpu():
    runs = pd.DataFrame({"implementation": ["tensor", "tensor", "fused"], "batch_size": [1, 16, 1], "seed": 0,
                         "cpu_wait": [0.4, 0.01, 0.0], "num_threads": 1})
    assert EXPERIMENTS["batch-size"].notes(runs, BatchSizeConfig()) == [
        "in 1 of 3 runs the threads waited for a CPU more than 15 % of the training loop's time (tensor, batch size "
        "1, seed 0: 40 %): other processes were running on the same CPUs, so that run is slow; rerun on an idle "
        "machine"]
