"""The report's figures (seaborn on matplotlib's Agg backend): results DataFrame in, matplotlib Figure out.

Saving is at the edge (`png_bytes`), and deterministic: same rows, same PNG bytes (no timestamp, no software tag).
"""

import io
import warnings

import matplotlib

matplotlib.use("Agg")  # no display: the report runs headless, and Agg's PNG output is reproducible

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from amal.report import select  # noqa: E402
from amal.report.format import layers, plural  # noqa: E402

DPI = 130
# sized for print: report.tex shrinks a figure ~9.5 in wide (legends included) to the text's 6.5 in, so 10 pt here
# prints at about 7 pt (tests: none below 6.5 pt)
STYLE = {"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titlesize": 12.5, "axes.labelsize": 11.5, "legend.fontsize": 10,
         "legend.title_fontsize": 10.5, "xtick.labelsize": 10.5, "ytick.labelsize": 10.5, "figure.titlesize": 13.5,
         "svg.hashsalt": "amal"}
PART_COLOURS = dict(zip(select.STEP_PARTS.values(), sns.color_palette("Set2", 4), strict=True))
DEVICE_LINES = {"cpu": {"ls": "--", "marker": "o"}}  # Fig. 6b; any other device (a GPU): solid, square markers


class _PlainLogFormatter(ticker.LogFormatterSciNotation):
    """Log-axis tick labels as plain numbers (0.6, 20, 300) where matplotlib would write 6 × 10⁻¹, 2 × 10¹; the
    same ticks are labelled."""

    def __call__(self, x, pos=None):
        return _plain_number(x) if super().__call__(x, pos) else ""


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


def _plain_number(value, _position=None) -> str:
    """Tick labels like 1, 16, 506, 0.01, 6,000, 100,000 instead of 10^0 or 1e+05 (very small values stay as 1e-05,
    very large ones from 1e+10 on too: 10²² written out in full is unreadable)."""
    if abs(value) >= 1e10:
        return f"{value:.2g}"
    return f"{value:,.0f}" if abs(value) >= 1e3 and float(value).is_integer() else f"{value:g}"


def _batch_axis(ax, batch_sizes, unit: str = "rows") -> None:
    """Log x axis ticked at the batch sizes measured; `unit`: what a batch holds. One batch size gets a factor of 2
    either side (autoscaled, points a few % apart would look like different batch sizes). Call it after drawing."""
    ax.set_xscale("log")
    sizes = sorted(set(int(b) for b in batch_sizes))
    ax.set_xticks(sizes)
    if len(sizes) == 1:
        ax.set_xlim(sizes[0] / 2, sizes[0] * 2)
    else:  # room for the points shifted apart (_dodge) at both ends
        ax.set_xlim(sizes[0] / 1.35, sizes[-1] * 1.35)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(_plain_number))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(f"batch size ({unit} per step, log scale)")


def _legend_below(ax, most: int = 3, **kwargs) -> None:
    """A legend under `ax` (no curve hidden) in as many columns, up to `most`, as keep it within the panel's width:
    wider, it ran under the next panel's legend (a label such as 'lr = 0.27 (growing, not stopped)')."""
    renderer = ax.figure.canvas.get_renderer()
    for ncols in range(most, 0, -1):
        legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=ncols, **kwargs)
        if legend.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width * 1.05:
            return


def _palette(values) -> dict:
    """One colour per sorted value, each easy to tell from its neighbours: the values that matter most are often
    close ones, such as learning rates on both sides of the threshold. tab10's ten hues, then their light shades
    (tab20) for the next ten."""
    values = sorted(set(values))
    if len(values) > 20:  # evenly spaced hues, dealt alternately from the two halves of the wheel
        hues, half = sns.color_palette("husl", len(values)), (len(values) + 1) // 2
        return {value: hues[i // 2 + (half if i % 2 else 0)] for i, value in enumerate(values)}
    shades = sns.color_palette("tab20", 20)  # pairs: dark and light shade of each tab10 hue
    return {value: shades[2 * (i % 10) + i // 10] for i, value in enumerate(values)}


def _batch_palette(sizes) -> dict:
    """One colour per batch size, dark (small) to light (large) along viridis: the order reads from the colour, and
    no batch size takes an implementation's colour (Fig. 4 shows both side by side). The palest end, hard to see on
    white, is left out."""
    sizes = sorted(set(int(size) for size in sizes))
    shades = matplotlib.colormaps["viridis"](np.linspace(0, 0.85, max(len(sizes), 2)))
    return {size: tuple(shades[i]) for i, size in enumerate(sizes)}


def _stopped(rows: pd.DataFrame) -> pd.Series:
    """Per batch size that diverged: the epoch its first seed to diverge was stopped at."""
    failed = rows[rows["diverged"].eq(True)]  # every epoch of a diverged training: the last is where it stopped
    return failed.groupby(["batch_size", "seed"])["epoch"].max().groupby("batch_size").min()


def _batch_names(rows: pd.DataFrame, stopped: pd.Series) -> dict:
    """Legend label per batch size of Fig. 2 and 4: '8', or '8 (diverged, epoch 3)' where a seed's training of that
    size was stopped (`stopped`, as _stopped gives it: the earliest such epoch)."""
    return {int(size): f"{size} (diverged, epoch {int(stopped[size])})" if size in stopped else str(size)
            for size in sorted(rows["batch_size"].unique())}


def _loss_range(rows: pd.DataFrame, key: str, leaving, target: float | None = None) -> tuple[float, float]:
    """Log-scale y limits for loss curves, one per value of `key` (lr, batch size): the losses of the curves not in
    `leaving` (those that diverged or grew), with room above when some are, and the target loss if any. A diverged
    run climbs to 10⁶ × its start or more: drawn whole, it would squash the curves that matter into the bottom of
    the panel, so it leaves through the top edge."""
    leaving = set(leaving)
    finite = rows[np.isfinite(rows["train_loss"])]
    kept = finite[~finite[key].isin(leaving)]
    if kept.empty:  # every run diverged: show how each started
        kept = finite.groupby(key).head(1)
    losses = kept["train_loss"].tolist() + ([] if target is None else [target])
    if not losses:  # and none has a finite loss: any range will do
        return 1.0, 10.0
    return min(losses) * 0.85, max(losses) * (3 if leaving else 1.3)


def lr_sweep_figure(df: pd.DataFrame):
    """Seed Fig. 1: MSE per epoch per lr (log y, × where diverged); final MSE vs lr with lr* and the bracket."""
    rows = select.lr_sweep_rows(df)
    outcomes = select.lr_outcomes(rows)
    colours = _palette(outcomes["lr"])
    fig, (curves, bound) = plt.subplots(1, 2, figsize=(9.0, 4.8), gridspec_kw={"width_ratios": [1.5, 1]})
    bottom, top = _loss_range(rows, "lr", outcomes.loc[outcomes["unstable"], "lr"])
    for outcome in outcomes.itertuples():
        run = rows[(rows["lr"] == outcome.lr) & np.isfinite(rows["train_loss"])]
        stopped = (f" (diverged, epoch {outcome.diverged_epoch:.0f})" if outcome.diverged
                   else " (growing, not stopped)" if outcome.growing else "")
        label = f"lr = {outcome.lr:g}{stopped}"
        curves.plot(run["epoch"], run["train_loss"], color=colours[outcome.lr], lw=1.6, label=label)
        if outcome.diverged:  # where the run was stopped, on the top edge: its loss is off the scale by then
            curves.plot([outcome.diverged_epoch], [top], marker="x", ms=10, mew=2.5, color=colours[outcome.lr],
                        clip_on=False, zorder=5)
        elif outcome.growing and (run["train_loss"] > top).any():  # where it leaves the scale (it may never enter)
            curves.plot([run.loc[run["train_loss"] > top, "epoch"].iloc[0]], [top], marker="^", ms=9,
                        color=colours[outcome.lr], clip_on=False, zorder=5)
    marks = [mark for mark, shown in (("× = diverged", outcomes["diverged"].any()),
                                      ("▲ = growing", outcomes["growing"].any())) if shown]
    diverged = f" ({', '.join(marks)}, off the scale)" if marks else ""
    curves.set(yscale="log", ylim=(bottom, top), xlabel="epoch (one full-batch gradient step)",
               ylabel=r"training MSE ((k\$)², log scale)", title=f"Training MSE per epoch{diverged}")
    curves.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=1))
    _legend_below(curves)
    _bound_panel(bound, outcomes, colours)
    fig.suptitle("Full-batch gradient descent on Boston Housing, by learning rate")
    fig.tight_layout()
    return fig


def _bound_panel(ax, outcomes: pd.DataFrame, colours: dict) -> None:
    """Final MSE per lr; diverged lrs as × on the top edge; lr* dashed; the observed bracket shaded. The lr axis
    reaches the smallest lr that diverged (or lr*, or the largest that did not): larger ones sit on its right edge."""
    stable, unstable = select.divergence_threshold(outcomes)
    finite = outcomes[~outcomes["unstable"]]
    theory = outcomes["lr_max_theory"].iloc[0]
    low = outcomes["lr"].min()
    high = max(v for v in (stable, unstable, theory, low) if v is not None and np.isfinite(v))
    logarithmic = high / low >= 100  # rates over decades: on a linear axis the small ones and the band squeeze
    edge = high * (1.5 if logarithmic else 1.08)
    ax.scatter(finite["lr"], finite["final_loss"], c=[colours[v] for v in finite["lr"]], s=45, zorder=3,
               label="final MSE" if len(finite) else "_nolegend_")  # no entry without a point to show
    top = finite["final_loss"].max() * 1.2 if not finite.empty else 1.0
    bottom = finite["final_loss"].min() * 0.85 if not finite.empty else 0.1
    diverged = outcomes[outcomes["unstable"]]  # stopped, or growing when the run ended: no final MSE to compare
    beyond = diverged["lr"] > edge
    ax.scatter(diverged["lr"].clip(upper=edge), [top] * len(diverged), marker="x", s=70, linewidths=2.5,
               c=[colours[v] for v in diverged["lr"]], clip_on=False, zorder=3,
               label="_nolegend_" if diverged.empty else
               ("diverged or growing" if outcomes["growing"].any() else "diverged")
               + (f" ({plural(int(beyond.sum()), 'larger lr')}: on the right edge)" if beyond.any() else ""))
    ax.axvline(theory, color="black", ls="--", lw=1.2, label=f"theory lr* = {theory:.4g}")
    if stable is not None and unstable is not None and stable < unstable:
        ax.axvspan(stable, unstable, color="tab:red", alpha=0.15, lw=0,
                   label=f"observed threshold ({stable:g}–{unstable:g})")
    else:  # no bracket to shade: the legend still says what was observed
        observed = "none diverged" if unstable is None else ("all diverged" if stable is None else "not monotone")
        ax.plot([], [], " ", label=f"observed: {observed}")
    if logarithmic:
        ax.set(xscale="log", xlim=(low / 1.5, edge), xlabel="learning rate (log scale)")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(_plain_number))
    else:
        ax.set(xlim=(0, edge), xlabel="learning rate")
    ax.set(ylim=(bottom, top), ylabel=r"final training MSE ((k\$)²)", title="Final MSE and the stability bound")
    if finite.empty:  # a scale with nothing on it would read as data: say why the panel is empty instead
        ax.set(yticks=[])
        grew = " or grew" if outcomes["growing"].any() else ""
        ax.text(0.5, 0.5, f"every learning rate diverged{grew}:\nno final MSE to compare", ha="center",
                va="center", transform=ax.transAxes, fontsize=10, color="dimgrey")
    _legend_below(ax, most=2)


def _over_seeds(rows: pd.DataFrame) -> str:
    """What a line of Fig. 2 is: 'mean over 3 seeds, band: lowest to highest', or 'seed 0' when there is one."""
    seeds = rows["seed"].unique()
    return f"mean over {len(seeds)} seeds, band: lowest to highest" if len(seeds) > 1 else f"seed {seeds[0]}"


def batch_loss_figure(df: pd.DataFrame):
    """Seed Fig. 2: MSE per epoch per batch size at lr = 1e-3, mean over seeds with a band from the lowest to the
    highest seed (a ± sd band went below zero, off the log axis)."""
    rows, lr, implementation = select.fig2_rows(select.batch_size_rows(df))
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    sizes = sorted(rows["batch_size"].unique())
    stopped = _stopped(rows)
    names = _batch_names(rows, stopped)
    colours = _batch_palette(sizes)  # as in Fig. 4
    shown = rows[np.isfinite(rows["train_loss"])]  # a diverged run's last loss may be inf or NaN: off any scale
    if shown.empty:  # every training diverged in its first epoch: the legend still names each batch size
        for size in sizes:
            ax.plot([], [], color=colours[size], label=names[size])
    else:
        sns.lineplot(data=shown.assign(batch=shown["batch_size"].map(names)), x="epoch", y="train_loss", hue="batch",
                     hue_order=[names[b] for b in sizes], errorbar=("pi", 100), ax=ax,
                     palette={names[size]: colour for size, colour in colours.items()})
    target = rows["target_loss"].iloc[0]
    ax.axhline(target, color="grey", ls=":", lw=1.2, label="target loss")
    bottom, top = _loss_range(rows, "batch_size", stopped.index, target)  # a diverged batch size: off the top
    ax.set(yscale="log", ylim=(bottom, top), xlabel="epoch (one pass over the training set)",
           ylabel=r"training MSE ((k\$)², log scale)")
    ax.set_title(f"Training MSE per epoch at lr = {lr:g} ({implementation}, {_over_seeds(rows)})"
                 + (" (× = diverged)" if len(stopped) else ""), pad=14 if len(stopped) else 6)  # clear of the ×
    for size, epoch in stopped.items():  # where the first seed was stopped, on the top edge (as in Fig. 1)
        ax.plot([epoch], [top], marker="x", ms=10, mew=2.5, color=colours[size], clip_on=False, zorder=5)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))
    ax.legend(title="batch size", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


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


def batch_time_figure(df: pd.DataFrame):
    """Seed Fig. 3: training time of 1000 epochs vs batch size, log-log, per implementation, mean over seeds with
    error bars from the fastest to the slowest; × marks a diverged run (its epochs before the stop, scaled), a ring
    a run whose threads waited for a CPU more than CONTENDED of its time (select.contended_runs: other processes
    slowed it)."""
    rows = select.batch_size_rows(df)
    runs = select.batch_runs(rows)
    order = sorted(runs["implementation"].unique())
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    sns.lineplot(data=runs, x="batch_size", y="time_per_1000_s", hue="implementation", style="implementation",
                 markers=implementation_markers(order), palette=implementation_colours(order), dashes=False,
                 errorbar=("pi", 100), err_style="bars", err_kws={"capsize": 3}, ax=ax, hue_order=order,
                 style_order=order)
    _batch_axis(ax, runs["batch_size"])
    epochs = select.epochs_asked(runs)
    scaled = "" if epochs == 1000 else f" (measured over {plural(epochs, 'epoch')}, scaled)"
    where = f"{runs['device'].iloc[0]}, {plural(runs['num_threads'].iloc[0], 'thread')}"
    failed = runs[runs["diverged"].eq(True)]
    if len(failed):  # their time is that of the epochs they ran before being stopped, scaled to 1000
        ax.scatter(failed["batch_size"], failed["time_per_1000_s"], marker="x", s=70, linewidths=1.5, color="black",
                   zorder=4, label="diverged: timed until its stop, scaled")
    keys = ["implementation", "batch_size", "seed"]
    waited = runs.merge(select.contended_runs(rows, keys)[0][keys], on=keys)
    if len(waited):  # a figure copied without the report's notes still says which times are too slow
        ax.scatter(waited["batch_size"], waited["time_per_1000_s"], marker="o", s=190, facecolors="none",
                   edgecolors="black", linewidths=1.2, zorder=4, label="slowed by other processes (note)")
    ax.set(yscale="log", ylabel="training time of 1000 epochs (s, log scale)",
           title=f"Training time of 1000 epochs{scaled} vs batch size ({where})")
    ax.legend(title="implementation")
    fig.tight_layout()
    return fig


def time_to_target_figure(df: pd.DataFrame):
    """Loss vs cumulative training time per batch size (one implementation), and time to target vs batch size."""
    rows = select.batch_size_rows(df)
    chosen, _, implementation = select.fig2_rows(rows)
    runs = select.batch_runs(rows)
    fig, (wall, target) = plt.subplots(1, 2, figsize=(9.6, 4.3))
    means = chosen.groupby(["batch_size", "epoch"], sort=True)[["elapsed_s", "train_loss"]].mean().reset_index()
    means = means[np.isfinite(means["train_loss"])]  # a diverged run's last epoch has no loss to draw
    colours = _batch_palette(chosen["batch_size"])  # every batch size shown in Fig. 2, diverged or not: same colours
    stopped = _stopped(chosen)
    names = _batch_names(chosen, stopped)
    for size in names:  # one diverged in its first epoch has no curve: the legend still names it, as Fig. 2's does
        curve = means[means["batch_size"] == size]
        wall.plot(curve["elapsed_s"], curve["train_loss"], color=colours[size], lw=1.6, label=names[size])
    target_loss = rows["target_loss"].iloc[0]
    wall.axhline(target_loss, color="grey", ls=":", lw=1.2, label="target")
    if means.empty:  # every run diverged in its first epoch: nothing to put on a log time axis
        wall.text(0.5, 0.5, "every run diverged in its first epoch", ha="center", va="center",
                  transform=wall.transAxes, fontsize=11, color="dimgrey")
        wall.set(xticks=[], xlabel="cumulative training time (s)")
    else:
        wall.set(xscale="log", xlabel="cumulative training time (s, log scale)")
    wall.set(yscale="log", ylim=_loss_range(chosen, "batch_size", stopped.index, target_loss),
             ylabel=r"training MSE ((k\$)², log scale)", title=f"Loss against wall-clock time ({implementation})")
    wall.legend(title="batch size", loc="upper center", bbox_to_anchor=(0.5, -0.2),  # below: curves seen
                ncols=6 if len(names) < 6 else 3)  # long labels ("8 (diverged, epoch 3)") in fewer columns
    reached = runs[runs["reached"]]
    order = sorted(runs["implementation"].unique())
    if reached.empty:  # a valid result: say it where the curve would be
        within = ("every run diverged first" if runs["diverged"].eq(True).all()
                  else f"within {plural(select.epochs_asked(rows), 'epoch')}")
        target.text(0.5, 0.5, f"no run reached the target loss\n{within}",
                    ha="center", va="center", transform=target.transAxes, fontsize=11, color="dimgrey")
        target.set(yticks=[], ylabel="time to target loss (s)")  # no time to show: no scale either
    else:
        shift = dict(zip(order, _dodge(len(order)), strict=True))  # side by side at a batch size, not on top
        sns.lineplot(data=reached.assign(batch_size=reached["batch_size"] * reached["implementation"].map(shift)),
                     x="batch_size", y="time_to_target_s", hue="implementation", style="implementation",
                     hue_order=order, style_order=order, markers=implementation_markers(order),
                     palette=implementation_colours(order), dashes=False, errorbar=("pi", 100), err_style="bars",
                     err_kws={"capsize": 3}, ax=target)
        target.set(yscale="log", ylabel="time to target loss (s, log scale)")
        target.margins(y=0.08)  # the fastest and slowest points (and their bars) clear of the frame
        target.legend(title="implementation")
    _batch_axis(target, runs["batch_size"])
    target.set(title="Time to reach the target loss")
    fig.tight_layout()
    return fig


def few_batch_sizes(sizes, count: int = 4) -> list[int]:
    """Up to `count` batch sizes spread over the measured range (always the smallest and the largest)."""
    sizes = sorted(set(int(s) for s in sizes))
    if len(sizes) <= count:
        return sizes
    return [sizes[i] for i in np.linspace(0, len(sizes) - 1, count).round().astype(int)]


def overhead_figure(df: pd.DataFrame):
    """Stacked bars of the mean step time split into data / forward / backward / update, per implementation.

    One panel per batch size (up to four, two per row, so that each stays readable at a page's width)."""
    summary = select.batch_summary(select.batch_runs(select.batch_size_rows(df)))
    sizes = few_batch_sizes(summary["batch_size"])
    columns = min(2, len(sizes))
    rows = -(-len(sizes) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.0 * columns + 1.6, 3.0 * rows + 0.5), squeeze=False)
    for ax, size in zip(axes.flat, sizes, strict=False):
        at = summary[summary["batch_size"] == size].sort_values("implementation")
        bottom = np.zeros(len(at))
        for column, part in select.STEP_PARTS.items():
            height = at[column].fillna(0).to_numpy() * 1e6
            bars = ax.bar(at["implementation"], height, bottom=bottom, color=PART_COLOURS[part], label=part, width=0.65)
            bottom += height
        # the whole step's time over each bar: one 50x shorter than its neighbour is a sliver, its number still reads
        split = at[list(select.STEP_PARTS)].notna().any(axis=1).to_numpy()  # a run stored without the split: no bar
        ax.bar_label(bars, labels=[_plain_number(round(total, 1 if total < 10 else 0)) if measured else ""
                                   for total, measured in zip(bottom, split, strict=True)], padding=2)
        ax.margins(y=0.12)  # room for the numbers above the tallest bar
        ax.set(title=f"batch size {size}", xlabel="", ylabel="time per step (µs)")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(_plain_number))  # 4,000 as over the bars
    for ax in axes.flat[len(sizes):]:  # an odd number of panels leaves one cell empty
        ax.set_visible(False)
    axes[0][-1].legend(title="part of the step", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Where the time of a step goes (mean over steps and seeds)")
    fig.tight_layout()
    return fig


def _model_colours(models) -> dict:
    """One tab10 hue per autoencoder model, (data path, hidden sizes, loss) in sorted order: the same in Fig. 6a and
    6b, so that a colour names one model in both."""
    hues = sns.color_palette("tab10", 10)
    return {model: hues[i % len(hues)] for i, model in enumerate(sorted(set(models)))}


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
    rows = select.autoencoder_rows(df)
    keys = ["device", "implementation", "hidden", "loss_fn", "batch_size"]
    means = rows.groupby([*keys, "epoch"], sort=True).agg(
        train_loss=("train_loss", "mean"), test_loss=("test_loss", "mean"), seeds=("seed", "nunique")).reset_index()
    losses = sorted(means["loss_fn"].unique())
    fig, axes = plt.subplots(1, len(losses), figsize=(11, 5.2) if len(losses) > 1 else (8.5, 4.8), squeeze=False)
    configs = list(means.groupby(keys, sort=True))
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


def _dodge(count: int, step: float = 1.04, widest: float = 1.2) -> list[float]:
    """Factors that shift `count` lines' points apart on a log x axis, centred on 1: each `step` times the one
    before, all within [1/widest, widest] (so that a point stays by its batch size's tick)."""
    if count < 2:
        return [1.0] * count
    spread = min(np.log(step) * (count - 1) / 2, np.log(widest))
    return np.exp(np.linspace(-spread, spread, count)).tolist()


def throughput_figure(df: pd.DataFrame):
    """Training images per second of training time by batch size, one line per device and configuration (GPU only
    where measured), error bars from the slowest to the fastest epoch. A configuration has one colour; the device
    is told by the line (dashed with circles: CPU; solid with squares: GPU); the lines' points are shifted a little
    apart in x so that bars at one batch size do not hide each other."""
    table = select.throughput(select.autoencoder_rows(df))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    devices = sorted(table["device"].unique())
    colours = _model_colours(zip(table["implementation"], table["hidden"], table["loss_fn"], strict=True))
    lines = list(table.groupby(["device", "implementation", "hidden", "loss_fn"], sort=True))
    for shift, ((device, implementation, hidden, loss_fn), line) in zip(_dodge(len(lines)), lines, strict=True):
        line = line.sort_values("batch_size")
        rate = line["samples_per_s"].to_numpy()  # arrays: pandas 2 warns when matplotlib floats a 1-row Series
        ax.errorbar(line["batch_size"].to_numpy() * shift, rate,
                    yerr=[rate - line["slowest"].to_numpy(), line["fastest"].to_numpy() - rate],
                    color=colours[(implementation, hidden, loss_fn)], ms=6, lw=1.8, capsize=3,
                    **DEVICE_LINES.get(device, {"ls": "-", "marker": "s"}),
                    label=_autoencoder_label(device, implementation, hidden, loss_fn))
    _batch_axis(ax, table["batch_size"], "images")
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


FIGURES = {
    "fig1-lr-sweep": lr_sweep_figure,
    "fig2-batch-loss": batch_loss_figure,
    "fig3-batch-time": batch_time_figure,
    "fig4-time-to-target": time_to_target_figure,
    "fig5-overhead": overhead_figure,
    "fig6a-ae-loss": autoencoder_loss_figure,
    "fig6b-ae-throughput": throughput_figure,
}


def render(df: pd.DataFrame, keys) -> dict[str, bytes]:
    """PNG bytes of the figures named by `keys` (those that are plots, i.e. in FIGURES)."""
    with plt.rc_context(STYLE), sns.axes_style("whitegrid"), warnings.catch_warnings():
        # seaborn's error bars hand matplotlib one-element Series where a group has one point; pandas 2.x deprecates
        # float() of those (pandas 3 accepts it): noise about seaborn's internals, not about the results
        warnings.filterwarnings("ignore", "Calling float on a single element Series", FutureWarning)
        return {key: png_bytes(FIGURES[key](df)) for key in keys if key in FIGURES}


def render_grids(grids: dict[str, tuple[bytes, str]]) -> dict[str, bytes]:
    """PNG bytes of each stored reconstruction grid, labelled: {key: (stored PNG, title)}; a stored file that is
    not a readable PNG is left out."""
    images = {}
    with plt.rc_context(STYLE), sns.axes_style("white"):
        for key, (png, title) in grids.items():
            try:
                fig = reconstruction_figure(png, title)
            except (OSError, ValueError, SyntaxError):  # what Pillow raises for a truncated or foreign file
                continue
            images[key] = png_bytes(fig)
    return images
