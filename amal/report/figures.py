"""The report's figures (seaborn on matplotlib's Agg backend, styled by plotting.py): results DataFrame in,
matplotlib Figure out. TP1 and TP2's are here (Fig. 1-5), TP3's in autoencoder_figures.py; FIGURES names them all.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from amal.report import select
from amal.report.autoencoder_figures import autoencoder_loss_figure, reconstruction_figure, throughput_figure
from amal.report.format import plural, threads_on
from amal.report.plotting import (
    STYLE,
    batch_axis,
    batch_palette,
    dodge,
    implementation_colours,
    implementation_markers,
    legend_below,
    palette,
    plain_number,
    png_bytes,
)

PART_COLOURS = dict(zip(select.STEP_PARTS.values(), sns.color_palette("Set2", 4), strict=True))


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
    colours = palette(outcomes["lr"])
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
    legend_below(curves)
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
    pad = 0.08 * (high - low if high > low else high)  # linear: the span of the rates, not of 0 to the largest
    edge = high * 1.5 if logarithmic else high + pad
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
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    else:  # from 0 when the rates start near it; a sweep zooming in on lr* (0.2645 to 0.2655) spans the panel
        ax.set(xlim=(max(0.0, low - pad), edge), xlabel="learning rate")
        ax.ticklabel_format(axis="x", useOffset=False)
    ax.set(ylim=(bottom, top), ylabel=r"final training MSE ((k\$)²)", title="Final MSE and the stability bound")
    if finite.empty:  # a scale with nothing on it would read as data: say why the panel is empty instead
        ax.set(yticks=[])
        grew = " or grew" if outcomes["growing"].any() else ""
        ax.text(0.5, 0.5, f"every learning rate diverged{grew}:\nno final MSE to compare", ha="center",
                va="center", transform=ax.transAxes, fontsize=10, color="dimgrey")
    legend_below(ax, most=2)


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
    colours = batch_palette(sizes)  # as in Fig. 4
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
    batch_axis(ax, runs["batch_size"])
    epochs = select.epochs_asked(runs)
    scaled = "" if epochs == 1000 else f" (measured over {plural(epochs, 'epoch')}, scaled)"
    where = f"{runs['device'].iloc[0]}, {threads_on(runs['num_threads'].iloc[0], rows.get('cpu_count'))}"
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
    colours = batch_palette(chosen["batch_size"])  # every batch size shown in Fig. 2, diverged or not: same colours
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
        shift = dict(zip(order, dodge(len(order)), strict=True))  # side by side at a batch size, not on top
        sns.lineplot(data=reached.assign(batch_size=reached["batch_size"] * reached["implementation"].map(shift)),
                     x="batch_size", y="time_to_target_s", hue="implementation", style="implementation",
                     hue_order=order, style_order=order, markers=implementation_markers(order),
                     palette=implementation_colours(order), dashes=False, errorbar=("pi", 100), err_style="bars",
                     err_kws={"capsize": 3}, ax=target)
        target.set(yscale="log", ylabel="time to target loss (s, log scale)")
        target.margins(y=0.08)  # the fastest and slowest points (and their bars) clear of the frame
        target.legend(title="implementation")
    batch_axis(target, runs["batch_size"])
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
        ax.bar_label(bars, labels=[plain_number(round(total, 1 if total < 10 else 0)) if measured else ""
                                   for total, measured in zip(bottom, split, strict=True)], padding=2)
        ax.margins(y=0.12)  # room for the numbers above the tallest bar
        ax.set(title=f"batch size {size}", xlabel="", ylabel="time per step (µs)")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))  # 4,000 as over the bars
    for ax in axes.flat[len(sizes):]:  # an odd number of panels leaves one cell empty
        ax.set_visible(False)
    axes[0][-1].legend(title="part of the step", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Where the time of a step goes (mean over steps and seeds)")
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
