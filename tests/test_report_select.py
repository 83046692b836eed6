import math

import numpy as np
import pandas as pd
import pytest

from amal.report import select


def test_latest_per_keeps_the_newest_run_of_each_configuration():
    df = pd.DataFrame({"run_id": ["20260101T000000Z-a", "20260102T000000Z-b", "20260101T000000Z-a"],
                       "lr": [0.1, 0.1, 0.2], "epoch": [1, 1, 1]})
    kept = select.latest_per(df, ["lr"])
    assert sorted(zip(kept["lr"], kept["run_id"], strict=True)) == [(0.1, "20260102T000000Z-b"),
                                                                   (0.2, "20260101T000000Z-a")]


def test_of_a_gate_run_the_candidate_side_counts_as_newest():
    # both sides of a gate start together; their run ids differ only by a random suffix
    sides = pd.DataFrame({"run_id": ["20260101T000000Z-bench-ffffff", "20260101T000000Z-bench-000000",
                                     "20251231T000000Z-bench-999999"],
                          "tag": ["gate baseline", select.GATE_CANDIDATE, select.GATE_CANDIDATE],
                          "benchmark": "case", "profile": "quick"})
    assert select.latest_per(sides, ["benchmark"])["tag"].tolist() == [select.GATE_CANDIDATE]
    assert select.latest_per(sides, ["benchmark"])["run_id"].tolist() == ["20260101T000000Z-bench-000000"]
    assert select.same_settings(sides, ["tag"]).tolist() == [False, True, True]
    later = pd.concat([sides, sides.iloc[:1].assign(run_id="20260101T000001Z-bench-000000")], ignore_index=True)
    assert select.latest_per(later, ["benchmark"])["tag"].tolist() == ["gate baseline"]  # newer start wins


def test_lr_outcomes_of_the_real_sweep(fixture_df):
    outcomes = select.lr_outcomes(select.lr_sweep_rows(fixture_df))
    assert outcomes["lr"].tolist() == [0.01, 0.1, 0.26, 0.27, 0.3]
    assert outcomes["diverged"].tolist() == [False, False, False, True, True]
    assert outcomes["diverged_epoch"].tolist()[3:] == [196, 31]
    assert outcomes["epochs_run"].tolist() == [1000, 1000, 1000, 196, 31]
    assert select.divergence_threshold(outcomes) == (0.26, 0.27)
    # 2 / λ_max of the Hessian of min-max Boston, as the README states
    assert outcomes["lr_max_theory"].iloc[0] == pytest.approx(0.26516, abs=1e-5)
    assert np.isfinite(outcomes["final_loss"]).all()


def test_divergence_threshold_without_a_divergence():
    outcomes = pd.DataFrame({"lr": [0.1, 0.2], "diverged": [False, False], "unstable": [False, False]})
    assert select.divergence_threshold(outcomes) == (0.2, None)


def test_batch_runs_time_per_1000_epochs(fixture_df):
    runs = select.batch_runs(select.batch_size_rows(fixture_df))
    assert len(runs) == 3 * 3 * 2
    run = runs[(runs["implementation"] == "tensor") & (runs["batch_size"] == 506) & (runs["seed"] == 0)].iloc[0]
    # one step per epoch of (3 + 0.002·506) + (8 + 0.01·506) + (15 + 0.01·506) + 6 = 43.132 µs
    assert run["step_s"] == pytest.approx(43.132e-6)
    assert run["time_per_1000_s"] == pytest.approx(0.043132)
    assert not run["reached"]


def test_step_time_is_the_training_clock_not_the_sum_of_the_instrumented_parts(fixture_df):
    rows = select.batch_size_rows(fixture_df)
    slower = rows.assign(elapsed_s=rows["elapsed_s"] * 2)  # the timed run took twice what its parts add up to
    run = select.batch_runs(slower).query("implementation == 'manual' and batch_size == 16 and seed == 0").iloc[0]
    parts = run[list(select.STEP_PARTS)].sum()
    assert run["parts_s"] == pytest.approx(parts)
    assert run["step_s"] == pytest.approx(run["elapsed_s"] / (run["epoch"] * 32)) == pytest.approx(2 * parts)


def test_runs_made_with_other_settings_are_not_mixed_into_one_figure(fixture_df):
    """A newer batch-size run on another device (batch size 16 only): the report shows it alone, not its batch size
    16 next to the older CPU run's 1 and 506."""
    old = fixture_df[fixture_df["experiment"] == "batch-size"]
    newer = old[old["batch_size"] == 16].assign(run_id="20261127T140000Z-batch-size-ffffff", device="cuda")
    df = pd.concat([fixture_df, newer], ignore_index=True)
    rows = select.batch_size_rows(df)
    assert set(rows["run_id"]) == {"20261127T140000Z-batch-size-ffffff"} and set(rows["batch_size"]) == {16}
    newest, others = select.newest_settings(df, "batch-size", select.BATCH_SETTINGS)
    assert newest["device"] == "cuda" and others == 1
    same = old.assign(run_id="20261127T140000Z-batch-size-ffffff")  # a re-run with the same settings replaces it
    assert select.newest_settings(pd.concat([fixture_df, same]), "batch-size", select.BATCH_SETTINGS)[1] == 0


def test_autoencoder_runs_on_two_machines_are_compared_but_not_runs_of_other_lengths(fixture_df):
    rows = select.autoencoder_rows(fixture_df)
    assert set(rows["host"]) == {"lab-cpu-1", "gpu-node-1"}  # a CPU machine and a GPU machine: one comparison
    gpu = fixture_df[fixture_df["device"] == "cuda"]
    longer = gpu.assign(run_id="20261127T140000Z-autoencoder-ffffff", epochs=30)
    rows = select.autoencoder_rows(pd.concat([fixture_df, longer], ignore_index=True))
    assert set(rows["run_id"]) == {"20261127T140000Z-autoencoder-ffffff"}


def test_a_device_s_runs_all_come_from_the_machine_of_its_newest_run(fixture_df):
    """An older CPU run of another configuration timed on 1 thread is not averaged with the newest CPU run's 2
    threads; the GPU run, from another machine, stays."""
    ae = fixture_df[fixture_df["experiment"] == "autoencoder"]
    cpu = ae[ae["device"] == "cpu"]
    one_thread = cpu.assign(run_id="20261127T100000Z-autoencoder-000000", num_threads=1, batch_size=32)
    rows = select.autoencoder_rows(pd.concat([fixture_df, one_thread], ignore_index=True))
    assert set(rows["run_id"]) == set(ae["run_id"])
    newer = one_thread.assign(run_id="20261127T230000Z-autoencoder-000000")  # now the newest CPU run: it alone
    rows = select.autoencoder_rows(pd.concat([fixture_df, newer], ignore_index=True))
    assert set(rows["run_id"]) == {newer["run_id"].iloc[0], *ae.loc[ae["device"] == "cuda", "run_id"]}


def test_fastest_to_target_is_manual_at_batch_size_16(fixture_df):
    summary = select.batch_summary(select.batch_runs(select.batch_size_rows(fixture_df)))
    fastest = select.fastest_to_target(summary)
    assert (fastest["implementation"], fastest["batch_size"]) == ("manual", 16)
    # 9 epochs × 32 steps × (3.032 + 5.16 + 4.16 + 2) µs, seeds ×1 and ×1.02, mean ×1.01
    assert fastest["target_mean_s"] == pytest.approx(9 * 32 * 14.352e-6 * 1.01)
    never = summary[summary["batch_size"] == 506]
    assert (never["reached"] == 0).all()


def test_fig2_rows_prefers_lr_1e3_and_the_tensor_implementation(fixture_df):
    rows, lr, implementation = select.fig2_rows(select.batch_size_rows(fixture_df))
    assert (lr, implementation) == (1e-3, "tensor")
    assert set(rows["implementation"]) == {"tensor"}


def test_bench_summary_median_and_iqr(fixture_df):
    summary = select.bench_summary(fixture_df).set_index("benchmark")
    case = summary.loc["lr-sweep/manual/cpu"]
    assert case["rounds"] == 5
    assert case["median_s"] == pytest.approx(0.0121)
    assert case["iqr_s"] == pytest.approx(0.0002)
    assert case["min_s"] == pytest.approx(0.0119)
    assert case["epochs"] == 100  # what one round trains: 100 full-batch steps of the sweep's manual loop
    assert pd.isna(case["vs_reference"]) and pd.isna(case["reference"])  # no loop alternated with its rounds


def test_bench_summary_takes_the_median_ratio_of_paired_rounds(fixture_df):
    """Rounds 10, 30, 20 ms after a bare loop's 20, 20, 10 ms: ratios 0.5, 1.5, 2, median 1.5 (the ratio of the
    medians, 20/20, would let a slow spell of the machine on one side pass for a difference)."""
    bench = fixture_df[fixture_df["experiment"] == "bench"]
    fidelity = bench.iloc[:3].assign(benchmark="test_fidelity[tensor]", bench_group="fidelity",
                                     round_s=[0.01, 0.03, 0.02], reference="bare PyTorch loop",
                                     reference_s=[0.02, 0.02, 0.01])
    summary = select.bench_summary(pd.concat([fixture_df, fidelity], ignore_index=True)).set_index("benchmark")
    assert summary.loc["test_fidelity[tensor]", "vs_reference"] == pytest.approx(1.5)
    assert summary.loc["test_fidelity[tensor]", "reference"] == "bare PyTorch loop"


def test_runs_table_one_row_per_run(fixture_df):
    runs = select.runs_table(fixture_df)
    assert runs["run_id"].is_unique and len(runs) == 5
    assert runs["run_id"].tolist() == sorted(runs["run_id"])
    assert not math.isnan(runs["num_threads"].iloc[0])


def test_a_shorter_lr_sweep_is_not_drawn_beside_longer_ones(fixture_df):
    old = fixture_df[fixture_df["experiment"] == "lr-sweep"]
    short = old[(old["lr"] == 0.1) & (old["epoch"] <= 5)].assign(run_id="20261127T140000Z-lr-sweep-ffffff", epochs=5)
    df = pd.concat([fixture_df, short], ignore_index=True)
    rows = select.lr_sweep_rows(df)
    assert set(rows["run_id"]) == {"20261127T140000Z-lr-sweep-ffffff"} and rows["epoch"].max() == 5
    assert select.newest_settings(df, "lr-sweep", select.LR_SWEEP_SETTINGS)[1] == 1


def test_other_settings_lists_the_values_the_left_out_runs_differ_in(fixture_df):
    """Only the settings that differ from the newest run's, each other value once (newest left-out run first); a
    missing value counts as a value of its own."""
    lr = fixture_df[fixture_df["experiment"] == "lr-sweep"]
    df = pd.concat([fixture_df, lr.assign(run_id="20261127T080000Z-lr-sweep-111111", epochs=300),
                    lr.assign(run_id="20261127T070000Z-lr-sweep-222222", epochs=50, normalize=None),
                    lr.assign(run_id="20261127T060000Z-lr-sweep-333333", epochs=300)], ignore_index=True)
    others = select.other_settings(df, "lr-sweep", select.LR_SWEEP_SETTINGS)
    assert others["setting"].tolist() == ["normalize", "epochs", "epochs"]
    assert pd.isna(others["value"].iloc[0]) and others["value"].tolist()[1:] == [300, 50]
    assert others["newest"].tolist() == ["minmax", 1000, 1000]
    assert select.other_settings(fixture_df, "lr-sweep", select.LR_SWEEP_SETTINGS).empty
    assert select.other_settings(fixture_df, "no-such-experiment", select.LR_SWEEP_SETTINGS).empty


def test_a_diverged_autoencoder_run_neither_replaces_a_good_one_nor_sets_the_settings(fixture_df):
    ae = fixture_df[(fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")]
    good = ae[ae["run_id"] == ae["run_id"].max()]
    blown = good.iloc[:1].assign(run_id="20991231T000000Z-autoencoder-ffffff", lr=1e30, train_loss=float("nan"),
                                 diverged=True, diverged_epoch=1)
    df = pd.concat([fixture_df, blown], ignore_index=True)
    newest, left_out = select.newest_settings(df, "autoencoder", select.AUTOENCODER_SETTINGS)
    assert newest["lr"] != 1e30 and left_out == 1  # the newest good run sets them; the diverged one is left out
    assert blown["run_id"].iloc[0] not in set(select.autoencoder_rows(df)["run_id"])
    alone = pd.concat([fixture_df[fixture_df["experiment"] != "autoencoder"], blown], ignore_index=True)
    assert set(select.autoencoder_rows(alone)["run_id"]) == {blown["run_id"].iloc[0]}  # shown where nothing else


def test_a_batch_size_run_every_training_of_which_diverged_does_not_hide_the_section(fixture_df):
    batch = fixture_df[fixture_df["experiment"] == "batch-size"]
    good = batch[batch["run_id"] == batch["run_id"].max()]
    first = good[(good["implementation"] == good["implementation"].iloc[0]) & (good["seed"] == good["seed"].min())]
    one = first[first["batch_size"] == first["batch_size"].min()]
    blown = one[one["epoch"] == 1].assign(run_id="20991231T000000Z-batch-size-ffffff", lr=1.0, diverged=True,
                                          diverged_epoch=1)
    df = pd.concat([fixture_df, blown], ignore_index=True)
    newest, left_out = select.newest_settings(df, "batch-size", select.BATCH_SETTINGS)
    assert newest["lr"] == good["lr"].iloc[0] and left_out == 1
    assert blown["run_id"].iloc[0] not in set(select.batch_size_rows(df)["run_id"])
    # a run where only some trainings diverged is a run like any other: newest, it sets the settings
    healthy = one[one["epoch"] == 1].assign(batch_size=one["batch_size"].iloc[0] + 1, diverged=False,
                                            diverged_epoch=pd.NA)
    partly = pd.concat([blown, healthy.assign(run_id=blown["run_id"].iloc[0], lr=1.0)], ignore_index=True)
    newest, _ = select.newest_settings(pd.concat([fixture_df, partly], ignore_index=True), "batch-size",
                                       select.BATCH_SETTINGS)
    assert newest["lr"] == 1.0


def test_in_failed_run_needs_every_training_of_the_run_to_diverge():
    rows = pd.DataFrame({"run_id": ["a"] * 4 + ["b"] * 2, "lr": [0.1, 0.1, 0.3, 0.3, 5.0, 5.0],
                         "epoch": [1, 2, 1, 2, 1, 2], "diverged": [False, False, True, True, False, True]})
    assert select.in_failed_run(rows).tolist() == [False] * 4 + [True] * 2  # b: its one training's last epoch


def test_a_one_implementation_figure_shows_the_implementation_with_the_most_batch_sizes_and_seeds():
    def grid(implementation, sizes, seeds):
        return [{"implementation": implementation, "batch_size": b, "seed": s, "lr": 1e-3} for b in sizes
                for s in range(seeds)]

    rows = pd.DataFrame(grid("fused", [1, 8, 506], 3) + grid("manual", [8], 1))
    assert select.fig2_rows(rows)[2] == "fused"  # manual is preferred, but fused has the curves to compare
    rows = pd.DataFrame(grid("fused", [1, 8], 3) + grid("manual", [1, 8], 1) + grid("tensor", [1, 8], 3))
    assert select.pick_implementation(rows) == "tensor"  # as many batch sizes and seeds: the preference decides


def test_a_float_setting_that_differs_in_its_last_bit_is_the_same_setting(fixture_df):
    """The target loss is computed from the data: a library upgrade may move its last bit, not the experiment."""
    batch = fixture_df[fixture_df["experiment"] == "batch-size"]
    target = batch["target_loss"].iloc[0]
    nudged = batch.assign(run_id="20261127T230000Z-batch-size-ffffff", target_loss=np.nextafter(target, np.inf))
    df = pd.concat([fixture_df, nudged], ignore_index=True)
    assert select.newest_settings(df, "batch-size", select.BATCH_SETTINGS)[1] == 0
    other = batch.assign(run_id="20261127T230000Z-batch-size-ffffff", target_loss=target * 1.001)
    df = pd.concat([fixture_df, other], ignore_index=True)
    assert select.newest_settings(df, "batch-size", select.BATCH_SETTINGS)[1] == 1
    assert select.other_settings(df, "batch-size", select.BATCH_SETTINGS)["setting"].tolist() == ["target_loss"]


def test_a_batch_size_rerun_with_fewer_seeds_replaces_all_seeds_of_its_configuration(fixture_df):
    """Seed 0 run again (later, maybe on other code): its configuration shows that run's one seed, not seed 0 from
    the new run averaged with seed 1 from the old one."""
    batch = fixture_df[fixture_df["experiment"] == "batch-size"]
    again = batch[(batch["seed"] == 0) & (batch["implementation"] == "tensor") & (batch["batch_size"] == 16)]
    again = again.assign(run_id="20261127T230000Z-batch-size-ffffff")
    rows = select.batch_size_rows(pd.concat([fixture_df, again], ignore_index=True))
    mine = rows[(rows["implementation"] == "tensor") & (rows["batch_size"] == 16)]
    assert set(mine["run_id"]) == {"20261127T230000Z-batch-size-ffffff"} and set(mine["seed"]) == {0}
    others = rows[(rows["implementation"] != "tensor") | (rows["batch_size"] != 16)]
    assert set(others["seed"]) == {0, 1} and set(others["run_id"]) == set(batch["run_id"])


def test_natural_key_reads_the_numbers_inside_a_text_as_numbers():
    assert sorted(["128", "32", "256,64", "64"], key=select.natural_key) == ["32", "64", "128", "256,64"]
    assert sorted(["b/bs128", "b/bs2", "b/bs16", "a"], key=select.natural_key) == ["a", "b/bs2", "b/bs16", "b/bs128"]


def test_hidden_sizes_and_benchmark_names_come_in_numeric_order(fixture_df):
    """Sorted as text, 784→128 came before 784→32, and bs128 before bs16 before bs2."""
    ae = fixture_df[(fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")]
    renamed = pd.concat([ae.assign(hidden=hidden, run_id=ae["run_id"] + hidden) for hidden in ("128", "32", "64")])
    rows = select.autoencoder_rows(renamed)
    assert rows["hidden"].unique().tolist() == ["32", "64", "128"]
    bench = fixture_df[fixture_df["benchmark"] == "batch-size/tensor/bs16/cpu"]
    names = [f"batch-size/tensor/bs{size}/cpu" for size in (128, 16, 2)]
    summary = select.bench_summary(pd.concat([bench.assign(benchmark=name) for name in names]))
    assert summary["benchmark"].tolist() == [f"batch-size/tensor/bs{size}/cpu" for size in (2, 16, 128)]
