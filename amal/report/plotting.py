"""What every figure of the report shares: its style, PNG output, axes, palettes and legends.

Saving is at the edge (`png_bytes`), and deterministic: same figure, same PNG bytes (no timestamp, no software tag).
"""

import io

import matplotlib

matplotlib.use("Agg")  # no display: the report runs headless, and Agg's PNG output is reproducible

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import ticker  # noqa: E402

DPI = 130
# sized for print: report.tex shrinks a figure ~9.5 in wide (legends included) to the text's 6.5 in, so 10 pt here
# prints at about 7 pt (tests: none below 6.5 pt)
STYLE = {"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titlesize": 12.5, "axes.labelsize": 11.5, "legend.fontsize": 10,
         "legend.title_fontsize": 10.5, "xtick.labelsize": 10.5, "ytick.labelsize": 10.5, "figure.titlesize": 13.5,
         "svg.hashsalt": "amal"}


class _PlainLogFormatter(ticker.LogFormatterSciNotation):
    """Log-axis tick labels as plain numbers (0.6, 20, 300) where matplotlib would write 6 × 10⁻¹, 2 × 10¹; the
    same ticks are labelled."""

    def __call__(self, x, pos=None):
        return plain_number(x) if super().__call__(x, pos) else ""


def _plain_log_ticks(fig) -> None:
    """Every log axis still on matplotlib's default labels gets plain-number labels (axes with their own ticks,
    such as batch sizes, keep them)."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log" and type(axis.get_major_formatter()) is ticker.LogFormatterSciNotation:
                axis.set_major_formatter(_PlainLogFormatter())
                low, high = sorted(abs(v) for v in (ax.get_xlim() if axis is ax.xaxis else ax.get_ylim()))
                narrow = low > 0 and high / low < 10  # under a decade: minor ticks need labels to read the scale
                # side by side on an x axis, minor labels ('0.0002', '0.0003') run into each other
                wide_x = axis is ax.xaxis and not narrow
                axis.set_minor_formatter(ticker.NullFormatter() if wide_x else
                                         _PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def _mark_single_points(fig) -> None:
    """A line of one point (a run of one epoch) draws nothing: give such lines a marker. Lines drawn without a
    line style (the invisible centre of an error bar, over the point's own marker) are left alone."""
    for ax in fig.axes:
        for line in ax.get_lines():
            if (len(line.get_xdata()) == 1 and line.get_marker() in ("None", "", None, " ")
                    and line.get_linestyle() not in ("None", "", " ")):
                line.set_marker("o")


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes, identical for identical figures (no Software or date metadata), log axes labelled
    with plain numbers, lines of one point marked; closes it."""
    _plain_log_ticks(fig)
    _mark_single_points(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return buffer.getvalue()


def plain_number(value, _position=None) -> str:
    """Tick labels like 1, 16, 506, 0.01, 6,000, 100,000 instead of 10^0 or 1e+05 (very small values stay as 1e-05,
    very large ones from 1e+10 on too: 10²² written out in full is unreadable)."""
    if abs(value) >= 1e10:
        return f"{value:.2g}"
    return f"{value:,.0f}" if abs(value) >= 1e3 and float(value).is_integer() else f"{value:g}"


def batch_axis(ax, batch_sizes, unit: str = "rows") -> None:
    """Log x axis ticked at the batch sizes measured; `unit`: what a batch holds. One batch size gets a factor of 2
    either side (autoscaled, points a few % apart would look like different batch sizes). Call it after drawing."""
    ax.set_xscale("log")
    sizes = sorted(set(int(b) for b in batch_sizes))
    ax.set_xticks(sizes)
    if len(sizes) == 1:
        ax.set_xlim(sizes[0] / 2, sizes[0] * 2)
    else:  # room for the points shifted apart (dodge) at both ends
        ax.set_xlim(sizes[0] / 1.35, sizes[-1] * 1.35)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(f"batch size ({unit} per step, log scale)")


def legend_below(ax, most: int = 3, **kwargs) -> None:
    """A legend under `ax` (no curve hidden) in as many columns, up to `most`, as keep it within the panel's width:
    wider, it ran under the next panel's legend (a label such as 'lr = 0.27 (growing, not stopped)')."""
    renderer = ax.figure.canvas.get_renderer()
    for ncols in range(most, 0, -1):
        legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=ncols, **kwargs)
        if legend.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width * 1.05:
            return


def palette(values) -> dict:
    """One colour per sorted value, each easy to tell from its neighbours: the values that matter most are often
    close ones, such as learning rates on both sides of the threshold. tab10's ten hues, then their light shades
    (tab20) for the next ten."""
    values = sorted(set(values))
    if len(values) > 20:  # evenly spaced hues, dealt alternately from the two halves of the wheel
        hues, half = sns.color_palette("husl", len(values)), (len(values) + 1) // 2
        return {value: hues[i // 2 + (half if i % 2 else 0)] for i, value in enumerate(values)}
    shades = sns.color_palette("tab20", 20)  # pairs: dark and light shade of each tab10 hue
    return {value: shades[2 * (i % 10) + i // 10] for i, value in enumerate(values)}


def batch_palette(sizes) -> dict:
    """One colour per batch size, dark (small) to light (large) along viridis: the order reads from the colour, and
    no batch size takes an implementation's colour (Fig. 4 shows both side by side). The palest end, hard to see on
    white, is left out."""
    sizes = sorted(set(int(size) for size in sizes))
    shades = matplotlib.colormaps["viridis"](np.linspace(0, 0.85, max(len(sizes), 2)))
    return {size: tuple(shades[i]) for i, size in enumerate(sizes)}


IMPLEMENTATION_MARKERS = {"dataloader": "o", "tensor": "s", "manual": "^", "fused": "D"}  # × means "diverged"
IMPLEMENTATION_COLOURS = dict(zip(["dataloader", "fused", "manual", "tensor"], sns.color_palette("tab10", 4),
                                  strict=True))


def implementation_markers(implementations) -> dict:
    """A marker per implementation, the same in every figure; never ×, which marks a diverged run."""
    spare = iter(["v", "P", "*", "h", "<", ">"])
    return {i: IMPLEMENTATION_MARKERS.get(i) or next(spare, "o") for i in implementations}


def implementation_colours(implementations) -> dict:
    """A colour per implementation, the same in every figure and every report, whichever others are shown (seaborn
    deals its colours in order: fused was orange beside dataloader, blue without it)."""
    spare = iter(sns.color_palette("tab10", 10)[4:])
    return {i: IMPLEMENTATION_COLOURS.get(i) or next(spare, "black") for i in implementations}


def dodge(count: int, step: float = 1.04, widest: float = 1.2) -> list[float]:
    """Factors that shift `count` lines' points apart on a log x axis, centred on 1: each `step` times the one
    before, all within [1/widest, widest] (so that a point stays by its batch size's tick)."""
    if count < 2:
        return [1.0] * count
    spread = min(np.log(step) * (count - 1) / 2, np.log(widest))
    return np.exp(np.linspace(-spread, spread, count)).tolist()
