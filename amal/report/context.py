"""The report's content as one context dict of text (findings, tables, figure captions) feeding both templates: the
sections (TP1/TP2's in regression_sections.py, TP3's in autoencoder_section.py, the benchmarks' here), the summary and
where each run was measured.

Pure: results DataFrame in, dict of strings out. Every number is formatted here; templates only lay it out.
A section whose results are missing says so and gives the command that produces them (section.py).
"""

import shlex

import pandas as pd

from amal.report import select
from amal.report.autoencoder_section import autoencoder_section
from amal.report.format import integer, number, plural, seconds, short_commit, utc_time
from amal.report.notes import (
    contended_run_notes,
    setting_value,
    shared_settings,
)
from amal.report.regression_sections import batch_size_section, lr_sweep_section
from amal.report.section import section, table

UNTAGGED = {"bench"}  # sections whose command stores its runs untagged (pytest bench: bench/conftest.py)


def store_options(results_dir: str, tags: list[str] | None = None) -> str:
    """The options that make `amal.run` store a run where this report reads and as it selects: --results, and --tag
    when the report shows only some tags (the first non-empty one; an untagged run needs none)."""
    tag = next((tag for tag in tags or [] if tag), "")
    return f"--results {shlex.quote(results_dir)}" + (f" --tag {shlex.quote(tag)}" if tag else "")


BENCH_PARAM_NAMES = {"implementation": "implementation", "batch_size": "batch size", "device": "device",
                     "hidden": "model size", "loss_fn": "loss", "epochs": "epochs"}


def bench_contrasts(cases: pd.DataFrame) -> list[tuple[str, pd.Series, pd.Series]]:
    """Per parameter in which the cases differ: (parameter, fastest, slowest) of the two cases alike in every other
    parameter, epochs a round trains included, whose median rounds differ most. Cases that differ in more than one
    (fused at batch size 506 against dataloader at 1) are never compared: the ratio would mix the two."""
    cases = cases[cases["median_s"] > 0]  # (a round of no time, or none, has no ratio)
    params = [p for p in [*select.BENCH_PARAMS, "epochs"] if cases[p].nunique(dropna=False) > 1]
    contrasts = []
    for param in params:
        others = [p for p in [*select.BENCH_PARAMS, "epochs"] if p != param]
        pairs = [(alike.loc[alike["median_s"].idxmin()], alike.loc[alike["median_s"].idxmax()])
                 for _, alike in cases.groupby(others, dropna=False, sort=False)
                 if alike[param].nunique() > 1 and alike["median_s"].nunique() > 1]  # a tie: no "1× faster"
        if pairs:
            contrasts.append((param, *max(pairs, key=lambda pair: pair[1]["median_s"] / pair[0]["median_s"])))
    return contrasts


def reference_findings(summary: pd.DataFrame) -> list[str]:
    """Per group whose rounds alternated with a reference loop (fidelity: a bare PyTorch loop, sgd-floor: NumPy):
    how many times as long as that loop its cases' rounds take, as the median ratio of paired rounds."""
    findings = []
    for group, cases in summary[summary["vs_reference"].notna()].groupby("bench_group", sort=True):
        cases = cases.sort_values("vs_reference")
        low, high = cases.iloc[0], cases.iloc[-1]
        ratios = (f"{number(low['vs_reference'])}×" if len(cases) == 1 else
                  f"{number(low['vs_reference'])}× ({low['benchmark']}) to {number(high['vs_reference'])}× "
                  f"({high['benchmark']})")
        findings.append(f"{group}: a round takes {ratios} as long as a {low['reference']} doing the same work, timed "
                        "just before it in the same process (median over the pairs of rounds).")
    return findings


def bench_section(df: pd.DataFrame) -> dict:
    rows = select.experiment_rows(df, "bench")
    title = "Benchmarks (pytest-benchmark rounds)"
    intro = "Raw rounds of pytest bench exported to the results store; per case the median and spread of a round."
    if rows.empty:
        return section("bench", title, intro, rows)
    summary = select.bench_summary(rows)
    commits = summary["git_commit"].map(short_commit)
    mixed = commits.nunique() > 1  # a case rerun alone after a change: its rows are another commit's code
    findings = reference_findings(summary)
    for (group, commit), cases in summary.groupby(["bench_group", commits], sort=True):
        # cases compared only with cases timed at the same commit
        for param, quick, slow in bench_contrasts(cases):
            findings.append(f"{group}, by {BENCH_PARAM_NAMES[param]}: {quick['benchmark']} is "
                            f"{number(slow['median_s'] / quick['median_s'])}× faster than {slow['benchmark']} "
                            f"(alike in every other setting; median round{f', commit {commit}' if mixed else ''}).")
    paired = summary["vs_reference"].notna().any()  # a column only where some case alternated with a loop
    caption = ("Round times per benchmark case; one round trains the case's model for the epochs given (an lr-sweep "
               "epoch is one full-batch step)")
    columns = ["case", "group", "one round", "rounds", "median", "IQR", "min"]
    if paired:
        caption += "; against a loop timed just before each round: the median ratio"
        columns.append("against a loop")
    if mixed:
        caption += "; the commit of the run each case comes from"
        columns.append("commit")
    body = [[s.benchmark, s.bench_group, "–" if pd.isna(s.epochs) else plural(s.epochs, "epoch"),
             integer(s.rounds), seconds(s.median_s), seconds(s.iqr_s), seconds(s.min_s),
             *([f"{number(s.vs_reference)}× {s.reference}" if pd.notna(s.vs_reference) else "–"] if paired else []),
             *([commit] if mixed else [])]
            for s, commit in zip(summary.itertuples(), commits, strict=True)]
    settings, notes = shared_settings(df, "bench", select.BENCH_SETTINGS)
    waited = contended_run_notes(select.bench_rows(df), ["benchmark"], lambda case: case.benchmark, noun="case",
                                 during="the rounds' time", option="--amal-threads")
    if mixed:
        counts = commits.value_counts()
        notes.append(f"The cases come from runs at {len(counts)} commits (" + ", ".join(
            f"{commit}: {plural(n, 'case')}" for commit, n in counts.sort_index().items()) + "): a ratio between "
            "cases of two commits would mix the change of code with the cases' difference, so the findings compare "
            "cases of one commit only.")
    return section("bench", title, intro, rows, findings=findings, settings=settings, notes=notes + waited,
                   contended=bool(waited),
                   tables=[table(caption, columns, body, align="llrrrrr" + "l" * (len(columns) - 7))])


def environment_table(df: pd.DataFrame) -> dict:
    """One row per run shown: where (host, CPU, the CPUs it could use, threads, GPU), with what (torch, Python,
    commit), when, its tag. A run stored before its CPU count was recorded shows '–' there."""
    runs = select.runs_table(df)
    cpus = [integer(count) for count in runs["cpu_count"]]  # '–' for a run stored before the count was
    body = [[r.run_id, r.experiment, r.host, r.cpu_model, count, integer(r.num_threads), r.cuda_device or "–",
             r.torch_version, r.python_version, short_commit(r.git_commit), utc_time(r.timestamp_utc),
             setting_value(r.tag, "tag")]
            for r, count in zip(runs.drop(columns="cpu_count").fillna("").itertuples(), cpus, strict=True)]
    columns = ["run", "experiment", "host", "CPU", "CPUs", "threads", "GPU", "torch", "Python", "commit", "UTC time",
               "tag"]
    # versions and times read as one token; the run id wraps at its hyphens, the CPU, the GPU and the tag at spaces
    whole = {"experiment", "torch", "Python", "commit", "UTC time"}
    return {**table("Where and when each run was measured", columns, body, align="llllrrllllll"),
            "nowrap": [column in whole for column in columns]}


def contended_summary(sections: list[dict]) -> list[str]:
    """A line for the summary when a section notes that other processes slowed some of its times: a reader of the
    summary alone would otherwise take them for the machine's."""
    named = [s["title"].split(":")[0].split(" (")[0] for s in sections if s["contended"]]
    if not named:
        return []
    where = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    return [f"Other processes competed for the CPUs while some of these times were measured ({where}: the notes "
            "name them): those times are slower than the machine is."]


def build_context(df: pd.DataFrame, results_dir: str, command: str = "python -m amal.report",
                  tags: list[str] | None = None, stored_runs: int | None = None) -> dict:
    """The whole report as text: header, sections (with findings, tables, figures), environment of the runs;
    `command` is the one that regenerates it; `tags`: the tags it was restricted to (None: all runs), of
    `stored_runs` runs in the store."""
    options = store_options(results_dir, tags)
    chosen = " or ".join(repr(tag) for tag in tags or [])
    sections = [lr_sweep_section(df), batch_size_section(df), autoencoder_section(df, options), bench_section(df)]
    for part in sections:  # a missing section's command writes where this report reads, whatever $AMAL_RESULTS is
        if not part["available"] and part["how_to"]:
            untagged = part["id"] in UNTAGGED
            part["how_to"] += " " + (store_options(results_dir) if untagged else options)
            if tags is not None:
                then = (" (it stores them untagged: add --tag '' to this report's command to show them)"
                        if untagged and "" not in tags else "")
                part["missing"] = f"No {part['id']} results tagged {chosen} in the store. To produce them, run{then}:"
    runs = df["run_id"].nunique()
    scope = ""
    if tags is not None:
        others = (stored_runs or runs) - runs
        scope = f" (tagged {chosen}; {integer(others)} other run{'s' if others != 1 else ''} stored)"
    return {
        "title": "amal: loss and wall-clock time of PyTorch training",
        "source": f"{integer(runs)} run{'s' if runs != 1 else ''}, {integer(len(df))} rows from {results_dir}{scope}",
        "latest": utc_time(df["timestamp_utc"].max()) if runs else "–",
        "summary": [s["findings"][0] for s in sections if s["findings"]] + contended_summary(sections),
        "sections": sections,
        "environment": environment_table(df),
        "command": command,
    }
