import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from amal.report import autoencoder_figures, autoencoder_stats, select


def test_throughput_shows_the_gpu_only_where_measured(fixture_df):
    cpu_only = fixture_df[~((fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cuda"))]
    gpu_only = fixture_df[~((fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu"))]
    for df, devices, title in ((fixture_df, ["cpu", "cuda"], "(CPU and GPU)"),
                               (cpu_only, ["cpu"], "(CPU only: GPU not measured)"),
                               (gpu_only, ["cuda"], "(GPU only: CPU not measured)")):
        fig = autoencoder_figures.throughput_figure(df)
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{d}, 784→256→64, bce" for d in devices]
        assert [bars.lines[0].get_linestyle() for bars in ax.containers] == [
            {"cpu": "--", "cuda": "-"}[d] for d in devices]  # the device is told by the line: dashed CPU, solid GPU
        assert ax.get_title().endswith(title)
        plt.close(fig)


def test_reconstruction_grid_is_drawn_with_its_rows_named(fixture_results):
    png = next(fixture_results.glob("_artifacts/*/recon.png")).read_bytes()
    fig = autoencoder_figures.reconstruction_figure(png, "test images and their reconstructions")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["test image", "reconstruction"]
    assert ax.get_title() == "test images and their reconstructions"
    assert ax.get_images()[0].get_array().shape[:2] == plt.imread(io.BytesIO(png)).shape[:2]  # the grid, unscaled
    plt.close(fig)


def autoencoder_variant(fixture_df, run_id: str, **changes):
    """The fixture's CPU autoencoder rows as another run with some columns changed."""
    rows = fixture_df[(fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")]
    return pd.concat([fixture_df, rows.assign(run_id=run_id, **changes)], ignore_index=True)


def test_autoencoder_loss_draws_the_mean_over_seeds_one_line_per_configuration(fixture_df):
    """Two seeds of a configuration: one curve of their mean per epoch (not both runs joined into one line that jumps
    back from the last epoch to the first)."""
    cpu = (fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")
    df = autoencoder_variant(fixture_df, "20261127T120000Z-autoencoder-aaaaaa", seed=1.0,
                             train_loss=fixture_df.loc[cpu, "train_loss"] + 0.1)
    fig = autoencoder_figures.autoencoder_loss_figure(df)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata())]
    assert all((np.diff(line.get_xdata()) > 0).all() for line in lines)
    assert len(lines) == 2 * 4  # train and test of cpu/cuda × batch 64/256
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "cpu, 784→256→64, batch 256 (mean of 2 seeds)" in labels
    first = fixture_df.loc[cpu & (fixture_df["batch_size"] == 64), "train_loss"].to_numpy()
    assert any(np.allclose(line.get_ydata(), first + 0.05) for line in lines)
    plt.close(fig)


def test_autoencoder_loss_draws_epochs_with_fewer_seeds_faint(fixture_df):
    """Seed 1 resumed at epoch 2 and its first epoch, timed elsewhere, not stored: epoch 1's mean is seed 0 alone.
    A solid line through it would step where the seeds change; the mean of both starts at epoch 2, and epoch 1 is
    drawn faint."""
    cpu = (fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")
    df = autoencoder_variant(fixture_df, "20261127T120000Z-autoencoder-aaaaaa", seed=1.0,
                             train_loss=fixture_df.loc[cpu, "train_loss"] + 0.1)
    df = df[~((df["run_id"] == "20261127T120000Z-autoencoder-aaaaaa") & (df["epoch"] == 1))]
    fig = autoencoder_figures.autoencoder_loss_figure(df)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "cpu, 784→256→64, batch 64 (mean of 2 seeds; faint: fewer)" in labels
    first = fixture_df.loc[cpu & (fixture_df["batch_size"] == 64), "train_loss"].to_numpy()
    solid = [line for line in ax.get_lines() if line.get_alpha() is None and len(line.get_xdata())
             and np.isnan(line.get_ydata()[0])]
    faint = [line for line in ax.get_lines() if line.get_alpha() == 0.35]
    assert len(solid) == len(faint) == 2 * 2  # train and test of batch 64 and 256, each also drawn faint
    assert any(np.allclose(line.get_ydata()[1:], first[1:] + 0.05) for line in solid)  # the mean of both seeds
    assert any(np.allclose(line.get_ydata(), [first[0], *(first[1:] + 0.05)]) for line in faint)  # epoch 1: seed 0
    plt.close(fig)


def test_autoencoder_loss_draws_each_loss_function_on_its_own_axis_with_the_legend_below(fixture_df):
    """BCE (about 0.2 here) and MSE (a hundredth of it) on one axis would flatten the MSE curves at the bottom: each
    loss function gets a panel whose y label names it, and no legend lies over the curves."""
    cpu = (fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")
    df = autoencoder_variant(fixture_df, "20261127T130000Z-autoencoder-dddddd", loss_fn="mse",
                             train_loss=fixture_df.loc[cpu, "train_loss"] / 100,
                             test_loss=fixture_df.loc[cpu, "test_loss"] / 100)
    for data, ylabels in ((fixture_df, ["BCE reconstruction loss (mean per pixel)"]),
                          (df, [f"{loss} reconstruction loss (mean per pixel)" for loss in ("BCE", "MSE")])):
        fig = autoencoder_figures.autoencoder_loss_figure(data)
        fig.canvas.draw()
        assert [ax.get_ylabel() for ax in fig.axes] == ylabels
        for ax in fig.axes:
            drawn = np.concatenate([line.get_ydata() for line in ax.get_lines() if len(line.get_xdata())])
            bottom, top = ax.get_ylim()
            assert top - bottom < 2 * (drawn.max() - drawn.min())  # the scale spans this panel's curves only
            assert ax.get_legend().get_window_extent().y1 < ax.get_window_extent().y0  # legend under the axes
        plt.close(fig)
    fig = autoencoder_figures.autoencoder_loss_figure(df)
    mse_lines = [line for line in fig.axes[1].get_lines() if len(line.get_xdata())]
    assert len(mse_lines) == 2 * 2  # train and test of the copied CPU run's batch 64 and 256
    assert all(line.get_ydata().max() < 0.01 for line in mse_lines)
    plt.close(fig)


def test_throughput_keeps_loss_functions_and_data_paths_apart(fixture_df):
    df = autoencoder_variant(fixture_df, "20261127T120000Z-autoencoder-bbbbbb", loss_fn="mse")
    df = autoencoder_variant(df, "20261127T120000Z-autoencoder-cccccc", implementation="resident",
                             data_on_device=True)
    fig = autoencoder_figures.throughput_figure(df)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["cpu, 784→256→64, bce", "cpu, 784→256→64, mse", "cpu, resident, 784→256→64, bce",
                      "cpu, resident, 784→256→64, mse", "cuda, 784→256→64, bce"]  # the copy took both losses
    plt.close(fig)


def test_throughput_gives_each_configuration_its_colour_and_keeps_its_error_bars_apart(fixture_df):
    """bce and mse on the CPU at the same batch sizes: two colours, and their bars side by side (each still spanning
    its slowest to fastest epoch) instead of one on top of the other at the same x."""
    df = autoencoder_variant(fixture_df, "20261127T130000Z-autoencoder-dddddd", loss_fn="mse")
    table = autoencoder_stats.throughput(select.autoencoder_rows(df)).query("device == 'cpu'")
    fig = autoencoder_figures.throughput_figure(df)
    ax = fig.axes[0]
    bars = dict(zip([t.get_text() for t in ax.get_legend().get_texts()], ax.containers, strict=True))
    bce, mse = bars["cpu, 784→256→64, bce"], bars["cpu, 784→256→64, mse"]
    assert bce.lines[0].get_color() != mse.lines[0].get_color()
    for size in (64, 256):
        xs = []
        for loss, container in (("bce", bce), ("mse", mse)):
            [segment] = [seg for seg in container.lines[2][0].get_segments() if abs(np.log(seg[0, 0] / size)) < 0.2]
            expected = table[(table["loss_fn"] == loss) & (table["batch_size"] == size)].iloc[0]
            assert sorted(segment[:, 1]) == pytest.approx([expected["slowest"], expected["fastest"]])
            xs.append(segment[0, 0])
        assert xs[0] != xs[1]  # apart, each within 20 % of its batch size's tick
    plt.close(fig)


def test_an_autoencoder_model_has_one_hue_in_fig6a_and_fig6b(fixture_df):
    """Fig. 6a coloured each configuration and Fig. 6b each model in turn from tab10: green was 784→64, mse in one
    and 784→64, bce, batch 256 in the other. A model's configurations are now shades of the hue 6b gives it."""
    from matplotlib.colors import rgb_to_hsv, to_rgb

    ae = fixture_df[fixture_df["experiment"] == "autoencoder"]
    df = pd.concat([fixture_df, ae.assign(hidden="64", run_id=ae["run_id"] + "0")], ignore_index=True)
    loss, throughput = autoencoder_figures.autoencoder_loss_figure(df), autoencoder_figures.throughput_figure(df)
    model_hues = {}
    for bars in throughput.axes[0].containers:  # one errorbar line per device and model
        device, layers, loss_fn = bars.get_label().split(", ")
        model_hues.setdefault(layers, set()).add(rgb_to_hsv(to_rgb(bars.lines[0].get_color()))[0])
    assert all(len(hues) == 1 for hues in model_hues.values()) and len(model_hues) == 2
    handles = [h for h in loss.axes[0].get_legend().legend_handles if h.get_label().startswith(("cpu", "cuda"))]
    assert len(handles) == 8 and len({to_rgb(h.get_color()) for h in handles}) == 8  # configurations still apart
    for handle in handles:
        layers = handle.get_label().split(", ")[1]
        (hue,) = model_hues[layers]
        assert rgb_to_hsv(to_rgb(handle.get_color()))[0] == pytest.approx(hue, abs=1e-6)
    plt.close(loss)
    plt.close(throughput)


def test_one_batch_size_gets_room_on_its_axis(fixture_df):
    ae = fixture_df[fixture_df["experiment"] == "autoencoder"]
    one = pd.concat([fixture_df[fixture_df["experiment"] != "autoencoder"],
                     ae[ae["batch_size"] == ae["batch_size"].min()]], ignore_index=True)
    fig = autoencoder_figures.throughput_figure(one)
    low, high = fig.axes[0].get_xlim()
    size = ae["batch_size"].min()
    assert low == pytest.approx(size / 2) and high == pytest.approx(size * 2)
    plt.close(fig)
