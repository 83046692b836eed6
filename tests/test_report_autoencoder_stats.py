
import numpy as np
import pandas as pd
import pytest

from amal.report import autoencoder_stats, select


def epochs_of(config: dict, seconds: list[float], images: int = 4000) -> pd.DataFrame:
    """Autoencoder rows of one configuration, one per epoch of `seconds`, each of `images` training images."""
    return pd.DataFrame({"run_id": "20261127T110000Z-autoencoder-aaaaaa", "epoch": range(1, len(seconds) + 1),
                         "epoch_s": seconds, "samples_per_s": [images / s for s in seconds], "transfer_s": 0.0,
                         "cuda_device": None, "num_threads": 2, **config})


def test_speedup_is_the_ratio_of_images_per_second_of_training_time():
    """From seconds per image of each epoch: mean CPU over mean GPU, i.e. the ratio of the table's throughputs (images
    over training time), not a mean of per-epoch rates; the interval is symmetric on the log scale."""
    ratio, low, high = autoencoder_stats.speedup([1.0, 3.0], [4.0, 6.0])
    assert ratio == 2.5
    assert low < ratio < high and low * high == pytest.approx(ratio**2)
    assert autoencoder_stats.speedup([0.1, 0.1], [1.0, 1.0]) == pytest.approx((10.0, 10.0, 10.0))  # no spread, no width
    assert autoencoder_stats.speedup([2.0], [1.0]) == (0.5, None, None)
    narrow = autoencoder_stats.speedup([1.0, 1.1, 0.9], [4.0, 4.1, 3.9])
    wide = autoencoder_stats.speedup([1.0, 2.0, 0.5], [4.0, 4.1, 3.9])
    assert wide[2] / wide[1] > narrow[2] / narrow[1]


def test_gpu_speedups_only_where_both_devices_ran(fixture_df):
    rows = select.autoencoder_rows(fixture_df)
    speedups = autoencoder_stats.gpu_speedups(rows)
    assert speedups["batch_size"].tolist() == [64, 256]
    # batch 256: 3 epochs of 4,000 images at 6,000/6,200/6,100 images/s on the CPU, 120,000/118,000/122,000 on the GPU
    cpu, gpu = 1 / np.array([6000.0, 6200.0, 6100.0]), 1 / np.array([120000.0, 118000.0, 122000.0])
    assert speedups["speedup"].iloc[1] == pytest.approx(cpu.mean() / gpu.mean(), rel=1e-9)
    assert autoencoder_stats.gpu_speedups(rows[rows["device"] == "cpu"]).empty


def test_throughput_is_images_over_training_time(fixture_df):
    """Images of all epochs over their seconds: here 12,000 images in 1.967566 s, not the mean of the three
    per-epoch rates (6,100); with the slowest and the fastest epoch."""
    table = autoencoder_stats.throughput(select.autoencoder_rows(fixture_df))
    cpu = table[(table["device"] == "cpu") & (table["batch_size"] == 256)].iloc[0]
    assert cpu["samples_per_s"] == pytest.approx(12000 / (0.666667 + 0.645161 + 0.655738), rel=1e-5)
    assert (cpu["slowest"], cpu["fastest"], cpu["epochs"], cpu["runs"]) == (6000.0, 6200.0, 3, 1)
    assert cpu["transfer_share"] == 0.0
    gpu = table[(table["device"] == "cuda") & (table["batch_size"] == 256)].iloc[0]
    assert gpu["transfer_share"] == pytest.approx(0.005001 / 0.100019, rel=1e-4)


def test_noisy_epochs_flags_a_spread_above_three_times_with_the_median_epochs_rate():
    """13 epochs of 4,000 images at 0.05 s (80,000 images/s) and two slow ones (2.1 s, 0.85 s): 42× apart, median
    80,000 images/s, 60,000 images in 3.6 s over all epochs; a spread of exactly 3× is not flagged."""
    config = {"device": "cpu", "implementation": "dataloader", "hidden": "64", "loss_fn": "bce"}
    rows = pd.concat([epochs_of({**config, "batch_size": 256}, [0.05] * 6 + [2.1] + [0.05] * 6 + [0.85, 0.05]),
                      epochs_of({**config, "batch_size": 64}, [1.0, 3.0, 2.0])], ignore_index=True)
    noisy = autoencoder_stats.noisy_epochs(rows)
    assert noisy["batch_size"].tolist() == [256]
    assert noisy["spread"].iloc[0] == pytest.approx(42)
    assert noisy["median_per_s"].iloc[0] == pytest.approx(80000)
    assert noisy["samples_per_s"].iloc[0] == pytest.approx(60000 / 3.6)
    assert autoencoder_stats.noisy_epochs(rows, ratio=2.9)["batch_size"].tolist() == [64, 256]


def test_contended_flags_configurations_whose_threads_waited_for_a_cpu():
    """In most epochs (batch 256: median 0.35) or in one (batch 64: 0.3 in 1 of 3); not measured (batch 16): no."""
    config = {"device": "cpu", "implementation": "dataloader", "hidden": "64", "loss_fn": "bce"}
    rows = pd.concat([epochs_of({**config, "batch_size": 256}, [0.1] * 3).assign(cpu_wait=[0.4, 0.35, 0.01]),
                      epochs_of({**config, "batch_size": 64}, [0.1] * 3).assign(cpu_wait=[0.01, 0.3, 0.0]),
                      epochs_of({**config, "batch_size": 16}, [0.1] * 3).assign(cpu_wait=float("nan"))],
                     ignore_index=True)
    contended = autoencoder_stats.contended(rows)
    assert contended["batch_size"].tolist() == [64, 256]
    assert contended["contended"].tolist() == [1, 2] and contended["epochs"].tolist() == [3, 3]
    assert contended["cpu_wait"].tolist() == pytest.approx([0.01, 0.35])
    assert contended["largest"].tolist() == pytest.approx([0.3, 0.4])
    assert contended["throughout"].tolist() == [False, True] and contended["num_threads"].tolist() == [2, 2]


def test_final_test_loss_is_the_mean_over_seeds_of_their_last_epoch():
    """Seeds 0.10 and 0.30 (mean 0.20) beat 0.25 and 0.25; a configuration with a diverged seed has no mean."""
    def run(hidden, seed, loss):
        return {"device": "cpu", "implementation": "dataloader", "hidden": hidden, "loss_fn": "bce", "batch_size": 64,
                "seed": seed, "epoch": 2, "test_loss": loss}

    rows = pd.DataFrame([run("64", 0, 0.10), run("64", 1, 0.30), run("256,64", 0, 0.25), run("256,64", 1, 0.25),
                         run("32", 0, 0.01), run("32", 1, float("nan"))])
    final = autoencoder_stats.final_test_loss(rows).set_index("hidden")
    assert final.loc["64", "test_loss"] == pytest.approx(0.20) and final.loc["256,64", "test_loss"] == 0.25
    assert np.isnan(final.loc["32", "test_loss"]) and final["seeds"].tolist() == [2, 2, 2]


def test_the_throughput_and_loss_tables_list_hidden_sizes_in_numeric_order(fixture_df):
    ae = fixture_df[(fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")]
    rows = select.autoencoder_rows(pd.concat([ae.assign(hidden=h, run_id=ae["run_id"] + h) for h in ("128", "32")]))
    for table in (autoencoder_stats.throughput(rows), autoencoder_stats.final_test_loss(rows)):
        assert table["hidden"].tolist() == ["32", "32", "128", "128"]  # two batch sizes each
        assert table["batch_size"].tolist() == [64, 256, 64, 256]
