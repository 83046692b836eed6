"""TP3's figures: the autoencoder's loss per epoch (Fig. 6a), its throughput by batch size on each device (Fig. 6b),
and a stored reconstruction grid with its rows named."""

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.lines import Line2D

from amal.report import autoencoder_stats, select
from amal.report.format import layers
from amal.report.plotting import batch_axis, dodge

DEVICE_LINES = {"cpu": {"ls": "--", "marker": "o"}}  # Fig. 6b; any other device (a GPU): solid, square markers


def _model_colours(models) -> dict:
    """One tab10 hue per autoencoder model, (data path, hidden sizes, loss) in sorted order (hidden sizes as numbers):
    the same in Fig. 6a and 6b, so that a colour names one model in both."""
    hues = sns.color_palette("tab10", 10)
    ordered = sorted(set(models), key=lambda model: tuple(map(select.natural_key, model)))
    return {model: hues[i % len(hues)] for i, model in enumerate(ordered)}


def _shades(colour, count: int) -> list:
    """`count` shades of `colour`, darker to lighter (mixed with black, then white); the colour itself when one."""
    colour = np.asarray(colour)
    mix = np.linspace(-0.45, 0.45, count) if count > 1 else [0.0]
    return [tuple(colour * (1 + t) if t < 0 else colour + (1 - colour) * t) for t in mix]


def _autoencoder_label(device: str, implementation: str, hidden: str, last: str) -> str:
    """'cpu, 784→256→64, bce' (', resident' when the training set sat on the device); `last`: the loss function,
    or in Fig. 6a, whose panels each have one, the batch size."""
    return f"{device}{', resident' if implementation == 'resident' else ''}, {layers(hidden)}, {last}"


def autoencoder_loss_figure(df: pd.DataFrame):
    """Train (solid) and test (dashed) reconstruction loss per epoch, mean over seeds, one colour per configuration: a
    shade of its model's hue in Fig. 6b; one panel per loss function (BCE and MSE are on different scales), legends
    below the curves."""
    rows = select.stopped_losses_blanked(select.autoencoder_rows(df))  # a diverged run's curves end before its stop
    keys = ["device", "implementation", "hidden", "loss_fn", "batch_size"]
    means = rows.groupby([*keys, "epoch"], sort=True).agg(
        train_loss=("train_loss", "mean"), test_loss=("test_loss", "mean"), seeds=("seed", "nunique")).reset_index()
    losses = sorted(means["loss_fn"].unique())
    fig, axes = plt.subplots(1, len(losses), figsize=(11, 5.2) if len(losses) > 1 else (8.5, 4.8), squeeze=False)
    configs = list(select.natural_order(means, keys).groupby(keys, sort=False))  # hidden 32, 64, 128: not as text
    colours = {}  # a model's hue (as in Fig. 6b), a shade of it per device and batch size
    for model, hue in _model_colours(key[1:4] for key, _ in configs).items():  # (implementation, hidden, loss_fn)
        own = sorted((key for key, _ in configs if key[1:4] == model), key=lambda key: (key[0], key[4]))
        colours.update(zip(own, _shades(hue, len(own)), strict=True))
    for ax, loss in zip(axes.flat, losses, strict=True):
        handles = []
        for (device, implementation, hidden, loss_fn, size), curve in configs:
            if loss_fn != loss:
                continue
            colour = colours[(device, implementation, hidden, loss_fn, size)]
            seeds = int(curve["seeds"].max())
            # epochs with fewer seeds (a resumed run whose earlier epochs were timed elsewhere and not stored): a
            # mean of other seeds, drawn faint, so that no step where the seeds change reads as a change in the loss
            whole = curve["seeds"].eq(seeds).to_numpy()
            for column, style in (("train_loss", {"marker": "o"}), ("test_loss", {"ls": "--", "marker": "s"})):
                if not whole.all():
                    ax.plot(curve["epoch"], curve[column], color=colour, lw=1.2, ms=3, alpha=0.35, **style)
                ax.plot(curve["epoch"], curve[column].where(whole), color=colour, lw=1.8, ms=4, **style)
            label = (_autoencoder_label(device, implementation, hidden, f"batch {size}")  # loss: the panel's
                     + (f" (mean of {seeds} seeds{'' if whole.all() else '; faint: fewer'})" if seeds > 1 else ""))
            handles.append(Line2D([], [], color=colour, lw=2.5, label=label))
        handles += [Line2D([], [], color="0.3", marker="o", label="train"),
                    Line2D([], [], color="0.3", ls="--", marker="s", label="test")]
        ax.set(xlabel="epoch", ylabel=f"{loss.upper()} reconstruction loss (mean per pixel)")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, min_n_ticks=1))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18),
                  ncols=2)  # below: no curve hidden
    title = "Autoencoder: train (solid) and test (dashed) loss per epoch"
    if len(losses) > 1:
        for ax, loss in zip(axes.flat, losses, strict=True):
            ax.set_title(f"{loss.upper()} loss")
        fig.suptitle(title)
    else:
        axes[0][0].set_title(title)
    fig.tight_layout()
    return fig


def throughput_figure(df: pd.DataFrame):
    """Training images per second of training time by batch size, one line per device and configuration (GPU only
    where measured), error bars from the slowest to the fastest epoch. A configuration has one colour; the device
    is told by the line (dashed with circles: CPU; solid with squares: GPU); the lines' points are shifted a little
    apart in x so that bars at one batch size do not hide each other."""
    table = autoencoder_stats.throughput(select.autoencoder_rows(df))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    devices = sorted(table["device"].unique())
    colours = _model_colours(zip(table["implementation"], table["hidden"], table["loss_fn"], strict=True))
    lines = list(table.groupby(["device", "implementation", "hidden", "loss_fn"], sort=False))  # natural order
    for shift, ((device, implementation, hidden, loss_fn), line) in zip(dodge(len(lines)), lines, strict=True):
        line = line.sort_values("batch_size")
        rate = line["samples_per_s"].to_numpy()  # arrays: pandas 2 warns when matplotlib floats a 1-row Series
        ax.errorbar(line["batch_size"].to_numpy() * shift, rate,
                    yerr=[rate - line["slowest"].to_numpy(), line["fastest"].to_numpy() - rate],
                    color=colours[(implementation, hidden, loss_fn)], ms=6, lw=1.8, capsize=3,
                    **DEVICE_LINES.get(device, {"ls": "-", "marker": "s"}),
                    label=_autoencoder_label(device, implementation, hidden, loss_fn))
    batch_axis(ax, table["batch_size"], "images")
    if "cpu" not in devices:
        measured = "GPU only: CPU not measured"
    else:
        measured = "CPU and GPU" if "cuda" in devices else "CPU only: GPU not measured"
    ax.set(yscale="log", ylabel="training images per second (log scale)",
           title=f"Autoencoder throughput by batch size ({measured})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2,  # below: no bar hidden
              handlelength=4)  # long enough to show the CPU's dashes
    fig.tight_layout()
    return fig


def reconstruction_figure(png: bytes, title: str):
    """A stored reconstruction grid (test images on the top row, their reconstructions below) with its rows named."""
    grid = plt.imread(io.BytesIO(png), format="png")
    height, width = grid.shape[:2]
    columns = max(1, round(width / (height / 2)))  # two rows of square images
    fig, ax = plt.subplots(figsize=(min(8.5, 0.8 * columns + 1.6), 2.5))
    ax.imshow(grid, cmap="gray", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([height / 4, 3 * height / 4], ["test image", "reconstruction"])
    ax.tick_params(length=0)
    ax.set_title(title)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.tight_layout()
    return fig
