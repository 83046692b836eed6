import itertools
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from matplotlib.legend import Legend
from matplotlib.text import Text

from amal.report import figures, plotting, select


@pytest.mark.parametrize("key", sorted(figures.FIGURES))
def test_every_figure_has_a_title_and_labelled_axes_with_units(fixture_df, key):
    fig = figures.FIGURES[key](fixture_df)
    try:
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert axes
        assert fig._suptitle is not None or all(ax.get_title() for ax in axes)
        for ax in axes:
            assert ax.get_xlabel() or key == "fig5-overhead"  # the overhead panels are labelled by their bars
            assert ax.get_ylabel() or ax is not axes[0]
        assert "(" in axes[0].get_ylabel()  # a unit or a scale in brackets
    finally:
        plt.close(fig)


def test_png_is_deterministic_and_has_no_software_tag(fixture_df):
    first = figures.render(fixture_df, ["fig3-batch-time", "fig1-lr-sweep"])
    second = figures.render(fixture_df, ["fig1-lr-sweep", "fig3-batch-time"])
    assert first == second
    assert first["fig1-lr-sweep"].startswith(b"\x89PNG")
    assert b"matplotlib" not in first["fig1-lr-sweep"].lower()


def test_lr_sweep_marks_each_divergence(fixture_df):
    fig = figures.lr_sweep_figure(fixture_df)
    curves = fig.axes[0]
    crosses = [line for line in curves.get_lines() if line.get_marker() == "x"]
    assert sorted(int(line.get_xdata()[0]) for line in crosses) == [31, 196]
    bound = fig.axes[1]
    assert any(line.get_label() == "theory lr* = 0.2652" for line in bound.get_lines())
    plt.close(fig)


def test_lr_sweep_keeps_the_converging_curves_in_view(fixture_df):
    rows = select.lr_sweep_rows(fixture_df)
    kept = rows[~rows["lr"].isin(rows.loc[rows["diverged"].eq(True), "lr"])]
    fig = figures.lr_sweep_figure(fixture_df)
    curves = fig.axes[0]
    bottom, top = curves.get_ylim()
    assert bottom < kept["train_loss"].min() and kept["train_loss"].max() < top  # every kept loss is drawn
    assert top < rows["train_loss"].max() / 1000  # the diverged runs' 10⁶-fold climb leaves through the top
    crosses = [line for line in curves.get_lines() if line.get_marker() == "x"]
    assert all(line.get_ydata()[0] == top and not line.get_clip_on() for line in crosses)
    plt.close(fig)


def test_lr_axis_turns_logarithmic_when_the_rates_span_decades(fixture_df):
    rows = fixture_df[fixture_df["experiment"] == "lr-sweep"]
    assert rows["lr"].max() / rows["lr"].min() < 100  # the fixture's rates: a linear axis
    spread = rows.assign(lr=rows["lr"].where(rows["lr"] != rows["lr"].min(), rows["lr"].min() / 100))
    for df, scale in ((fixture_df, "linear"), (spread, "log")):
        fig = figures.lr_sweep_figure(df)
        assert fig.axes[1].get_xscale() == scale
        plt.close(fig)


def test_log_axes_are_labelled_with_plain_numbers(fixture_df):
    fig = figures.batch_time_figure(fixture_df)
    plotting.png_bytes(fig)  # labels are set when the figure is saved
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels and not any("10^" in label or "times" in label for label in labels)
    assert all(float(label.replace(",", "")) > 0 for label in labels)


def test_few_batch_sizes_spreads_over_the_range():
    assert figures.few_batch_sizes([1, 2, 4, 8, 16, 32, 64, 128, 256, 506]) == [1, 8, 64, 506]
    assert figures.few_batch_sizes([16, 1]) == [1, 16]


def test_batch_time_title_says_when_the_time_is_scaled_from_fewer_epochs(fixture_df):
    """The fixture's runs last 20 epochs: Fig. 3 shows them scaled to 1000 and says so (and where it was measured)
    on the figure itself."""
    fig = figures.batch_time_figure(fixture_df)
    title = fig.axes[0].get_title()
    assert title == ("Training time of 1000 epochs (measured over 20 epochs, scaled) vs batch size "
                     "(cpu, 2 threads)")
    plt.close(fig)
    batch = fixture_df["experiment"] == "batch-size"
    thousand = fixture_df.assign(epoch=fixture_df["epoch"].where(~batch, fixture_df["epoch"] * 50),
                                 epochs=fixture_df["epochs"].where(~batch, 1000))
    fig = figures.batch_time_figure(thousand)
    assert fig.axes[0].get_title() == "Training time of 1000 epochs vs batch size (cpu, 2 threads)"
    plt.close(fig)


def test_batch_time_error_bars_span_the_seeds_and_stay_on_the_log_axis(fixture_df):
    """Fig. 3's bars run from the fastest to the slowest seed: never below zero, as mean − sd could on a log axis."""
    runs = select.batch_runs(select.batch_size_rows(fixture_df))
    spread = runs.groupby(["implementation", "batch_size"])["time_per_1000_s"].agg(["min", "max"])
    fig = figures.batch_time_figure(fixture_df)
    bars = [segment for collection in fig.axes[0].collections for segment in collection.get_segments()]
    ends = sorted((round(float(s[:, 1].min()), 9), round(float(s[:, 1].max()), 9)) for s in bars if len(s) == 2)
    assert ends == sorted((round(lo, 9), round(hi, 9)) for lo, hi in spread.itertuples(index=False))
    plt.close(fig)


def test_overhead_panels_go_two_per_row(fixture_df):
    """Up to four batch sizes, two panels per row (one row of four is unreadable at a page's width); an odd count
    hides the spare cell."""
    sizes = select.batch_size_rows(fixture_df)["batch_size"].unique()
    for kept, shape in ((sizes, (2, 2)), (sizes[:3], (2, 2)), (sizes[:2], (1, 2))):
        df = fixture_df[(fixture_df["experiment"] != "batch-size") | fixture_df["batch_size"].isin(kept)]
        fig = figures.overhead_figure(df)
        visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("batch size")]
        assert len(fig.axes) == shape[0] * shape[1]
        assert [ax.get_title() for ax in visible] == [f"batch size {s}" for s in sorted(kept)][:4]
        plt.close(fig)


def test_unreadable_grids_are_left_out(fixture_results):
    png = next(fixture_results.glob("_artifacts/*/recon.png")).read_bytes()
    images = figures.render_grids({"good": (png, "t"), "truncated": (png[:100], "t"), "foreign": (b"GIF89a", "t")})
    assert list(images) == ["good"] and images["good"].startswith(b"\x89PNG")


def test_every_batch_size_run_diverging_at_once_still_gives_figures(fixture_df):
    """Each run stopped at its first epoch with no finite loss: nothing to draw on a log time axis, said in words."""
    batch = fixture_df["experiment"] == "batch-size"
    first = fixture_df[~batch | (fixture_df["epoch"] == 1)].copy()
    first.loc[first["experiment"] == "batch-size", ["train_loss", "time_to_target_s", "epoch_to_target"]] = None
    first.loc[first["experiment"] == "batch-size", "diverged"] = True
    for key in ("fig2-batch-loss", "fig3-batch-time", "fig4-time-to-target", "fig5-overhead"):
        assert figures.render(first, [key])[key].startswith(b"\x89PNG")
    fig = figures.batch_loss_figure(first)  # no curve to draw: each batch size is a × at epoch 1, named so
    sizes = sorted(first.loc[batch, "batch_size"].unique())
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        *(f"{size:g} (diverged, epoch 1)" for size in sizes), "target loss"]
    crosses = [line for line in fig.axes[0].lines if line.get_marker() == "x"]
    assert [tuple(line.get_xdata()) for line in crosses] == [(1,)] * len(sizes)
    assert fig.axes[0].get_title().endswith("(× = diverged)")
    plt.close(fig)
    fig = figures.batch_time_figure(first)  # each time is that of the epoch before the stop: marked
    assert "diverged: timed until its stop, scaled" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    fig = figures.time_to_target_figure(first)
    assert "every run diverged in its first epoch" in [t.get_text() for t in fig.axes[0].texts]
    assert "log scale" not in fig.axes[0].get_xlabel() and "log scale" not in fig.axes[1].get_ylabel()
    # the right panel says why no time to target is drawn: not "within 1 epochs" when 3 were asked for
    assert [t.get_text() for t in fig.axes[1].texts] == ["no run reached the target loss\nevery run diverged first"]
    plt.close(fig)


def test_batch_loss_title_names_the_seed_when_there_is_one(fixture_df):
    for df, text in ((fixture_df, "mean over 2 seeds, band: lowest to highest)"),
                     (fixture_df[(fixture_df["experiment"] != "batch-size") | (fixture_df["seed"] == 0)], "seed 0)")):
        fig = figures.batch_loss_figure(df)
        assert fig.axes[0].get_title().endswith(text)
        plt.close(fig)


def with_lr_1e200(fixture_df) -> pd.DataFrame:
    """The fixtures plus an lr-sweep rate of 1e200, whose first loss is already not finite."""
    first = fixture_df[(fixture_df["experiment"] == "lr-sweep") & (fixture_df["epoch"] == 1)].iloc[:1]
    blown = first.assign(lr=1e200, train_loss=float("nan"), diverged=True, diverged_epoch=1)
    return pd.concat([fixture_df, blown], ignore_index=True)


def test_an_lr_whose_first_loss_is_not_finite_is_marked_where_it_stopped(fixture_df):
    fig = figures.lr_sweep_figure(with_lr_1e200(fixture_df))
    crosses = [line for line in fig.axes[0].get_lines() if line.get_marker() == "x"]
    assert sorted(int(line.get_xdata()[0]) for line in crosses) == [1, 31, 196]  # where each run was stopped
    plt.close(fig)


def test_the_lr_axis_ends_past_the_threshold_and_larger_diverged_rates_sit_on_its_edge(fixture_df):
    fig = figures.lr_sweep_figure(with_lr_1e200(fixture_df))
    bound = fig.axes[1]
    right = bound.get_xlim()[1]
    assert right < 1  # the fixture's threshold lies at 0.26–0.27: the axis is not stretched to 1e200
    crosses = [c for c in bound.collections if c.get_label().startswith("diverged")]
    assert crosses[0].get_offsets()[:, 0].max() == pytest.approx(right)
    assert crosses[0].get_label() == "diverged (2 larger lrs: on the right edge)"  # 0.3 and 1e200
    plt.close(fig)


def test_a_sweep_zooming_in_on_the_bound_spreads_its_rates_over_the_panel(fixture_df):
    """Rates 0.2645 to 0.2655 on an axis from 0 sat in one pixel column, the lr* line and the band with them."""
    sweep = fixture_df[fixture_df["experiment"] == "lr-sweep"]
    kept = sorted(sweep["lr"].unique())[:4]  # four stable rates of the fixture, renamed as a zoomed sweep
    zoom = dict(zip(kept, [0.2645, 0.2649, 0.2651, 0.2655], strict=True))
    fig = figures.lr_sweep_figure(sweep[sweep["lr"].isin(kept)].assign(lr=lambda d: d["lr"].map(zoom)))
    bound = fig.axes[1]
    low, high = bound.get_xlim()
    assert 0.26 < low < 0.2645 and 0.2655 < high < 0.27
    points = [c for c in bound.collections if c.get_label() == "final MSE"][0]
    xs = sorted(bound.transData.transform(points.get_offsets())[:, 0])
    assert min(b - a for a, b in itertools.pairwise(xs)) > 20  # pixels apart
    assert "e" not in bound.get_xaxis().get_major_formatter().format_ticks(bound.get_xticks())[0]  # no offset text
    plt.close(fig)


def test_runs_of_one_epoch_are_drawn_as_points_on_whole_epoch_ticks(fixture_df):
    """A one-point line draws nothing; the epoch axis of one epoch was ticked 0.945, 0.960, ..."""
    first = fixture_df[fixture_df["experiment"].isin(["lr-sweep", "batch-size"]) & (fixture_df["epoch"] == 1)]
    for make in (figures.lr_sweep_figure, figures.batch_loss_figure):
        fig = make(first)
        plotting.png_bytes(fig)  # as the report writes it
        ax = fig.axes[0]
        single = [line for line in ax.get_lines() if len(line.get_xdata()) == 1]
        assert single and all(line.get_marker() not in ("None", "", None) for line in single)
        low, high = ax.get_xlim()
        ticks = [tick for tick in ax.get_xticks() if low <= tick <= high]
        assert ticks and all(float(tick).is_integer() for tick in ticks), (make.__name__, ticks)


def test_implementations_keep_their_own_markers_never_the_diverged_x(fixture_df):
    """Fig. 4's points of one batch size each drew a circle over their marker (the error bar's invisible centre got
    the one-point marker), and seaborn's second marker, ×, is the one that means "diverged"."""
    for build, panel in ((figures.batch_time_figure, 0), (figures.time_to_target_figure, 1)):
        fig = build(fixture_df)
        try:
            plotting._mark_single_points(fig)
            ax = fig.axes[panel]
            lines = ax.get_lines()
            # error bars' centres (no line style) stay unmarked; their caps are "_"
            assert {line.get_marker() for line in lines if line.get_linestyle() == "None"} <= {"None", "_"}
            drawn = {line.get_marker() for line in lines if line.get_marker() not in ("None", "", None, "_")}
            legend = {handle.get_marker() for handle in ax.get_legend().legend_handles if hasattr(handle, "get_marker")}
            shown = {i for i in select.batch_runs(select.batch_size_rows(fixture_df))["implementation"].unique()}
            assert drawn == legend == {plotting.IMPLEMENTATION_MARKERS[i] for i in shown}
            assert "x" not in drawn
        finally:
            plt.close(fig)


def test_batch_sizes_and_implementations_never_share_a_colour(fixture_df):
    """Fig. 4 puts batch sizes (left) beside implementations (right): blue meant batch size 1 on one side and
    dataloader on the other. Batch sizes now run dark to light in their order, in Fig. 2 as in Fig. 4."""
    sizes = sorted(select.batch_size_rows(fixture_df)["batch_size"].unique())
    fig = figures.time_to_target_figure(fixture_df)
    wall, target = fig.axes
    by_size = {line.get_label(): line.get_color() for line in wall.get_lines() if line.get_label() != "target"}
    assert list(by_size) == [str(size) for size in sizes]
    implementation_colours = {tuple(np.round(line.get_color(), 6)) for line in target.get_lines()}
    assert not implementation_colours & {tuple(np.round(colour, 6)) for colour in by_size.values()}
    lightness = [np.mean(colour[:3]) for colour in by_size.values()]
    assert lightness == sorted(lightness)  # small batches dark, large ones light
    plt.close(fig)
    fig = figures.batch_loss_figure(fixture_df)
    legend = fig.axes[0].get_legend()
    assert [tuple(handle.get_color()) for handle in legend.legend_handles[:len(sizes)]] == list(by_size.values())
    plt.close(fig)


def test_a_batch_size_diverged_at_its_first_epoch_is_still_named_in_fig4(fixture_df):
    """Its run has no finite loss to draw: the curve was left out, and its name with it, unlike Fig. 2's legend."""
    rows = fixture_df.copy()
    largest = rows["batch_size"].eq(rows.loc[rows["experiment"] == "batch-size", "batch_size"].max())
    stopped = (rows["experiment"] == "batch-size") & largest
    rows = rows[~stopped | (rows["epoch"] == 1)].copy()
    rows.loc[stopped, ["train_loss", "time_to_target_s", "epoch_to_target"]] = None
    rows.loc[stopped, "diverged"] = True
    fig = figures.time_to_target_figure(rows)
    names = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    fig2 = figures.batch_loss_figure(rows)
    assert names[:-1] == [t.get_text() for t in fig2.axes[0].get_legend().get_texts()][:-1]
    assert names[-2:] == ["506 (diverged, epoch 1)", "target"]
    plt.close(fig)
    plt.close(fig2)


def test_time_to_target_points_of_one_batch_size_stand_side_by_side(fixture_df):
    """Implementations at one batch size were drawn at the same x, their error bars on top of each other."""
    fig = figures.time_to_target_figure(fixture_df)
    target = fig.axes[1]
    points = [line for line in target.get_lines() if line.get_linestyle() != "None" and len(line.get_xdata())]
    reached = select.batch_runs(select.batch_size_rows(fixture_df)).query("reached")
    sizes = sorted(reached["batch_size"].unique())
    for size in sizes:
        xs = [x for line in points for x in line.get_xdata() if abs(np.log(x / size)) < np.log(1.2)]
        assert len(xs) == reached.loc[reached["batch_size"] == size, "implementation"].nunique()
        assert len(set(xs)) == len(xs)  # apart, each within 20 % of its tick
    low, high = target.get_xlim()
    assert low < min(sizes) / 1.2 and high > max(sizes) * 1.2  # the shifted ends stay inside the frame
    plt.close(fig)


def test_overhead_writes_each_steps_total_over_its_bar(fixture_df):
    """A fused step 50 times shorter than a dataloader one is a sliver on a linear axis: its number still reads."""
    summary = select.batch_summary(select.batch_runs(select.batch_size_rows(fixture_df)))
    fig = figures.overhead_figure(fixture_df)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        size = int(ax.get_title().split()[-1])
        at = summary[summary["batch_size"] == size].sort_values("implementation")
        totals = at[list(select.STEP_PARTS)].fillna(0).sum(axis=1) * 1e6
        labels = [t.get_text() for t in ax.texts]
        assert labels == [plotting.plain_number(round(t, 1 if t < 10 else 0)) for t in totals]
        assert max(totals) < ax.get_ylim()[1]
    plt.close(fig)
    # a run stored without the split has no bar: no "0" over it either
    unsplit = fixture_df.copy()
    unsplit.loc[unsplit["implementation"] == "dataloader", list(select.STEP_PARTS)] = None
    fig = figures.overhead_figure(unsplit)
    assert [t.get_text() == "" for t in fig.axes[0].texts] == [True, False, False]  # dataloader, manual, tensor
    plt.close(fig)


def test_a_batch_size_that_exploded_leaves_through_the_top_of_fig2_and_fig4(fixture_df):
    """Batch size 1 at a large lr reached MSE 4e22 in its first epoch: drawn, the log axis ran to 1e22 and squashed
    every other batch size into the bottom of the panel (Fig. 1 already kept such runs off its scale)."""
    rows = fixture_df.copy()
    batch = rows["experiment"] == "batch-size"
    smallest = batch & (rows["batch_size"] == rows.loc[batch, "batch_size"].min())
    rows = rows[~smallest | (rows["epoch"] == 1)].copy()
    rows.loc[smallest, ["train_loss", "diverged"]] = [4.2e22, True]
    rows.loc[smallest, ["time_to_target_s", "epoch_to_target"]] = None
    drawn, _, _ = select.fig2_rows(select.batch_size_rows(rows))  # the implementation both figures draw
    kept = drawn[~drawn["diverged"].eq(True)]
    assert len(kept) and kept["train_loss"].max() < 1e4
    for build in (figures.batch_loss_figure, figures.time_to_target_figure):
        with warnings.catch_warnings():  # as figures.render does: seaborn's error bars of a single point, pandas 2
            warnings.filterwarnings("ignore", "Calling float on a single element Series", FutureWarning)
            fig = build(rows)
        bottom, top = fig.axes[0].get_ylim()
        assert bottom <= kept["train_loss"].min() and kept["train_loss"].max() <= top < 1e4, build.__name__
        plt.close(fig)


def test_an_implementation_keeps_its_colour_whichever_others_are_shown(fixture_df):
    """seaborn deals colours in order: fused was orange beside dataloader and blue without it."""
    batch = fixture_df["experiment"] == "batch-size"
    only = fixture_df[~batch | fixture_df["implementation"].isin(["manual", "tensor"])]
    for df in (fixture_df, only):
        for build, panel in ((figures.batch_time_figure, 0), (figures.time_to_target_figure, 1)):
            fig = build(df)
            legend = fig.axes[panel].get_legend()
            colours = {text.get_text(): handle.get_color()
                       for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)}
            for implementation in ("manual", "tensor"):
                assert tuple(colours[implementation]) == tuple(plotting.IMPLEMENTATION_COLOURS[implementation])
            plt.close(fig)


def test_lr_sweep_legend_lists_only_what_is_drawn(fixture_df):
    """Nothing diverged: "diverged" was listed with no marker; everything diverged: "final MSE" with none, over an
    empty 0.1-1 scale."""
    sweep = fixture_df["experiment"] == "lr-sweep"
    outcomes = select.lr_outcomes(select.lr_sweep_rows(fixture_df))
    calm = fixture_df[~sweep | fixture_df["lr"].isin(outcomes.loc[~outcomes["unstable"], "lr"])]
    wild = fixture_df[~sweep | fixture_df["lr"].isin(outcomes.loc[outcomes["unstable"], "lr"])]
    for df, absent, present in ((calm, "diverged", "final MSE"), (wild, "final MSE", "diverged")):
        fig = figures.lr_sweep_figure(df)
        bound = fig.axes[1]
        labels = [t.get_text().split(" (")[0] for t in bound.get_legend().get_texts()]
        assert present in labels and absent not in labels, labels
        assert (list(bound.get_yticks()) == []) == (df is wild)
        assert any("no final MSE" in t.get_text() for t in bound.texts) == (df is wild)
        plt.close(fig)


# report.tex (a4paper, margin=2.2cm) scales each figure down to the text's width, at most half the text's height
PRINTED_IN = ((21.0 - 2 * 2.2) / 2.54, 0.5 * (29.7 - 2 * 2.2) / 2.54)


@pytest.mark.parametrize("key", sorted(figures.FIGURES))
def test_every_figures_text_prints_at_6_5_pt_or_more_in_the_pdf(fixture_df, key):
    """A 9.6 in wide figure shrinks to 6.5 in in the PDF: its 8.5 pt legends printed at 5.6 pt."""
    template = (Path(__file__).parents[1] / "templates" / "report.tex.j2").read_text()
    assert "a4paper" in template and "margin=2.2cm" in template  # what PRINTED_IN assumes
    with plt.rc_context(plotting.STYLE), sns.axes_style("whitegrid"):
        fig = figures.FIGURES[key](fixture_df)
        fig.canvas.draw()
        box = fig.get_tightbbox().padded(0.15)  # as png_bytes saves it (bbox_inches="tight", pad_inches=0.15)
        scale = min(1.0, PRINTED_IN[0] / box.width, PRINTED_IN[1] / box.height)
        shown = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
                 and (t.axes is None or t.axes.get_visible())]
        plt.close(fig)
    assert shown
    assert min(t.get_fontsize() for t in shown) * scale >= 6.5


@pytest.mark.parametrize("key", sorted(figures.FIGURES))
def test_no_legend_covers_another_legend_or_panel(fixture_df, key):
    """Fig. 1's three-column legend, with a 'diverged, epoch 31' label, ran under the other panel's legend."""
    with plt.rc_context(plotting.STYLE), sns.axes_style("whitegrid"):
        fig = figures.FIGURES[key](fixture_df)
        fig.canvas.draw()
        legends = [(legend, legend.get_window_extent()) for legend in fig.findobj(Legend)]
        panels = [(ax, ax.get_window_extent()) for ax in fig.axes if ax.get_visible()]
        plt.close(fig)
    for i, (legend, box) in enumerate(legends):
        assert not any(box.overlaps(other) for _, other in legends[i + 1:])
        assert not any(box.overlaps(panel) for ax, panel in panels if ax is not legend.axes)


def test_a_run_still_growing_is_marked_where_it_leaves_fig1s_scale_and_no_legend_overlaps(fixture_df):
    """lr = 0.27 run 100 epochs without being stopped, its MSE growing from 600 to 6e5: the scale (set by the stable
    rates) ended below its first epoch, so it was nowhere on the left panel, and its two-column legend, with the
    long '(growing, not stopped)' label, ran under the right panel's."""
    sweep = fixture_df[fixture_df["experiment"] == "lr-sweep"]
    kept = sweep[sweep["lr"].isin([0.1]) & (sweep["epoch"] <= 100)]
    growing = kept.assign(lr=0.27, diverged=False, diverged_epoch=None, train_loss=600 * 1.072 ** kept["epoch"])
    df = pd.concat([fixture_df[fixture_df["experiment"] != "lr-sweep"], kept, growing], ignore_index=True)
    assert select.lr_outcomes(select.lr_sweep_rows(df))["growing"].tolist() == [False, True]
    with plt.rc_context(plotting.STYLE), sns.axes_style("whitegrid"):
        fig = figures.lr_sweep_figure(df)
        fig.canvas.draw()
        curves = fig.axes[0]
        top = curves.get_ylim()[1]
        marks = [line for line in curves.get_lines() if line.get_marker() == "^"]
        assert len(marks) == 1 and list(marks[0].get_ydata()) == [top] and list(marks[0].get_xdata()) == [1]
        assert "▲ = growing" in curves.get_title()
        (left,), (right,) = (ax.findobj(Legend)[:1] for ax in fig.axes)
        assert not left.get_window_extent().overlaps(right.get_window_extent())
        plt.close(fig)


def test_fig3_rings_the_runs_other_processes_slowed(fixture_df):
    """A run whose threads waited for a CPU more than 15 % of its loop: its point gets a ring, named in the legend,
    so that the figure says it without the report's note."""
    batch = fixture_df["experiment"].eq("batch-size")
    slow = batch & fixture_df["implementation"].eq("tensor") & fixture_df["batch_size"].eq(16)
    df = fixture_df.assign(cpu_wait=np.where(slow, 0.3, np.where(batch, 0.01, np.nan)))
    fig = figures.batch_time_figure(df)
    ax = fig.axes[0]
    assert "slowed by other processes (note)" in [t.get_text() for t in ax.get_legend().get_texts()]
    (ring,) = [c for c in ax.collections if c.get_label() == "slowed by other processes (note)"]
    runs = select.batch_runs(select.batch_size_rows(df))
    expected = runs.loc[runs["implementation"].eq("tensor") & runs["batch_size"].eq(16), "time_per_1000_s"]
    assert sorted(ring.get_offsets()[:, 1]) == pytest.approx(sorted(expected))
    plt.close(fig)
    fig = figures.batch_time_figure(fixture_df)
    assert "slowed by other processes (note)" not in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
