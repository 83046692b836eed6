import math

import pandas as pd
import pytest
import torch

from amal.data import load_boston
from amal.experiments import lr_sweep
from amal.experiments.lr_sweep import LrSweepConfig
from amal.functions import full_mse


def test_lr_max_theory_matches_the_seed_threshold():
    x = load_boston("minmax").x_train
    assert lr_sweep.lr_max_theory(x) == pytest.approx(0.26516, abs=1e-5)  # the seed: "diverges when lr > 0.26"


def test_lr_max_theory_by_hand():
    # X = [[0], [2]]: A = [[0, 1], [2, 1]], H = (2/2)·AᵀA = [[4, 2], [2, 2]], λ_max = 3 + √5
    assert lr_sweep.lr_max_theory(torch.tensor([[0.0], [2.0]])) == pytest.approx(2 / (3 + math.sqrt(5)))


def test_sweep_converges_below_and_diverges_above_the_bound():
    df = lr_sweep.run(LrSweepConfig(lrs=(0.1, 0.26, 0.27), epochs=1000))
    last = df.sort_values("epoch").groupby("lr").tail(1).set_index("lr")
    assert not last.loc[0.1, "diverged"] and last.loc[0.1, "epoch"] == 1000
    assert not last.loc[0.26, "diverged"]
    assert last.loc[0.27, "diverged"] and last.loc[0.27, "diverged_epoch"] == last.loc[0.27, "epoch"] < 1000
    optimum = 21.8948  # least-squares training MSE of min–max Boston
    assert optimum < last.loc[0.26, "train_loss"] < 1.01 * optimum


def test_rows_are_tidy_and_typed():
    df = lr_sweep.run(LrSweepConfig(lrs=(0.05,), epochs=20, test_size=0.2))
    assert df["epoch"].tolist() == list(range(1, 21))
    assert df["elapsed_s"].is_monotonic_increasing and (df["elapsed_s"] > 0).all()
    assert (df["eval_s"] > 0).all() and df["test_loss"].notna().all()
    assert set(df["implementation"]) == {"manual"} and df["n_train"].iloc[0] == 404
    assert df["train_loss"].is_monotonic_decreasing  # small lr: gradient descent decreases the loss
    assert df["cpu_wait"].nunique(dropna=False) == 1  # the run's training loop's, on each of its rows
    assert df["cpu_wait"].isna().all() or df["cpu_wait"].between(0, 1).all()


def test_the_cli_names_the_runs_whose_threads_waited_for_a_cpu():
    """Each lr is one run, with one cpu_wait: those over 0.15 are named, beside how many runs were measured."""
    df = pd.DataFrame({"lr": [0.01, 0.01, 0.1, 0.26, 0.27], "cpu_wait": [0.31, 0.31, 0.02, 0.25, float("nan")],
                       "num_threads": 2})
    assert lr_sweep.notes(df, LrSweepConfig()) == [
        "in 2 of 3 runs the threads waited for a CPU more than 15 % of the training loop's time (lr 0.01: 31 %; "
        "lr 0.26: 25 %): other processes were running on the same CPUs, so those runs are slow; rerun on an idle "
        "machine, or with --threads 1"]
    assert lr_sweep.notes(df.assign(num_threads=1), LrSweepConfig())[0].endswith("; rerun on an idle machine")
    assert lr_sweep.notes(df.assign(cpu_wait=0.01), LrSweepConfig()) == []
    assert lr_sweep.notes(df.assign(cpu_wait=float("nan")), LrSweepConfig()) == []


def test_diverged_run_stops_and_records_the_epoch():
    df = lr_sweep.run(LrSweepConfig(lrs=(1.0,), epochs=1000))
    assert df["diverged"].all() and len(df) < 1000
    assert df["diverged_epoch"].iloc[0] == df["epoch"].max()
    d = load_boston("minmax")
    initial = full_mse(d.x_train, d.y_train, *lr_sweep.init_params(13, 1, seed=0))
    final = df["train_loss"].iloc[-1]
    assert not math.isfinite(final) or final > 1e6 * initial
    assert df["train_loss"].iloc[-2] <= 1e6 * initial  # it stopped at the first epoch past the bound


def test_same_seed_same_losses():
    cfg = LrSweepConfig(lrs=(0.1,), epochs=50, seed=4)
    assert lr_sweep.run(cfg)["train_loss"].tolist() == lr_sweep.run(cfg)["train_loss"].tolist()


def test_summary_lists_each_lr_once():
    df = lr_sweep.run(LrSweepConfig(lrs=(0.3, 0.1), epochs=200))
    table = lr_sweep.summary(df)
    assert table["lr"].tolist() == ["0.1", "0.3"]
    assert table["result"].iloc[0].startswith("final MSE") and table["result"].iloc[1].startswith("diverged at epoch")
    assert table["lr* = 2/λmax(H)"].unique().tolist() == ["0.2652"]
    assert table.columns.tolist() == ["lr", "result", "training time", "lr* = 2/λmax(H)"]


def test_summary_says_a_run_whose_loss_was_rising_when_it_ended_was_diverging():
    table = lr_sweep.summary(lr_sweep.run(LrSweepConfig(lrs=(0.1, 0.27), epochs=100)))
    assert table["result"].iloc[0].startswith("final MSE") and "diverging" not in table["result"].iloc[0]
    assert table["result"].iloc[1].endswith("× its lowest: diverging")  # not stopped within 100 epochs, but rising
    assert lr_sweep.result(False, None, 1.2249, 1.2249) == "final MSE 1.22, 1.22× its lowest: diverging"
    # as the report's summary and table write it (1,022 here and 1,020 there read as two results)
    assert lr_sweep.result(False, None, 1022.4, 1022.4) == "final MSE 1,020, 1,020× its lowest: diverging"


def test_summary_keeps_the_significant_digits_of_a_tiny_bound():
    table = lr_sweep.summary(lr_sweep.run(LrSweepConfig(lrs=(1e-7,), epochs=3, normalize="none")))
    assert table.loc[0, "lr"] == "1.00e-07" and table.loc[0, "lr* = 2/λmax(H)"] == "3.195e-06"  # as the report has them


def test_summary_writes_every_loss_and_time_to_three_significant_figures():
    """26.997 was 'final MSE 27' beside 'final MSE 55.75', and a time of 0.00022 s a bare float: now the report's
    forms, the same precision all down the column."""
    rows = pd.DataFrame({"lr": [0.1, 0.2, 0.3], "epoch": [1000, 1000, 31], "train_loss": [26.997, 55.75, math.inf],
                         "elapsed_s": [2.2e-4, 1.53, 0.0416], "diverged": [False, False, True],
                         "diverged_epoch": pd.array([None, None, 31], dtype="Int64"), "lr_max_theory": 0.26516})
    table = lr_sweep.summary(rows)
    assert table.to_dict("list") == {
        "lr": ["0.1", "0.2", "0.3"],
        "result": ["final MSE 27.0", "final MSE 55.8", "diverged at epoch 31"],
        "training time": ["220 µs", "1.53 s", "41.6 ms"],
        "lr* = 2/λmax(H)": ["0.2652"] * 3}


def test_bench_case_runs_the_hand_written_step():
    (case,) = lr_sweep.bench_cases("quick")
    assert case.name == "lr-sweep/manual/cpu" and case.params["epochs"] == 100
    # the data is one of the settings the gate compares: a case records the source its run would
    assert case.params["data_source"] == lr_sweep.run(LrSweepConfig(lrs=(0.1,), epochs=1))["data_source"].iloc[0]
    case.setup()()


def test_a_learning_rate_given_twice_runs_once():
    from argparse import Namespace

    cfg = lr_sweep.config_from_args(Namespace(lr=[0.1, 0.1, 0.3], epochs=10, normalize="minmax", test_size=0.0,
                                              seed=0))
    assert cfg.lrs == (0.1, 0.3)
