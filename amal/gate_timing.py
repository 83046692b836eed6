"""The gate's timing: the cases two checkouts have in common, each set up in both sides' worker processes, warmed
up, then timed in rounds alternating A B A B, each side rotating over its processes (amal.gate runs it)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from amal.errors import UsageError
from amal.gate_processes import Side, WorkerDied
from amal.samples import settings_change, settings_text
from amal.stats import smallest_p

if TYPE_CHECKING:
    from amal.gate import GateConfig

SIDES = ("baseline", "candidate")


class GateSkipped(Exception):
    """The gate has nothing to compare (old baseline without cases, no case in common): say why, exit 0."""


def interleave(runs_a: list, runs_b: list, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of `rounds` calls a side, alternating A B A B, so both see the same drift of the machine; call i of a
    side goes to its process i mod len (A1 B1 A2 B2 ...: each process of a side gets its share of the rounds)."""
    seconds_a, seconds_b = [], []
    for i in range(rounds):
        seconds_a.append(runs_a[i % len(runs_a)]())
        seconds_b.append(runs_b[i % len(runs_b)]())
    return seconds_a, seconds_b


def rounds_for(round_s: float, n_cases: int, cfg: GateConfig) -> int:
    """Timed rounds per side: the case's share of the budget over two sides, within [min_rounds, rounds]."""
    affordable = cfg.budget_s / n_cases / (2 * max(round_s, 1e-9))  # (a float: a huge budget is no int overflow)
    return max(cfg.min_rounds, int(min(cfg.rounds, affordable)))


class BaselineFailed(Exception):
    """A case raised in the baseline (a bug the candidate may fix): that case is not compared."""


def time_case(a: Side, b: Side, name: str, n_cases: int, cfg: GateConfig) -> tuple[list[float], list[float]]:
    """Set the case up in every worker of both sides, warm each process up (interleaved), then time interleaved
    rounds. BaselineFailed when the baseline's setup or one of its rounds raises; the candidate's errors go up as
    they are."""

    def baseline(call):
        try:
            return call()
        except WorkerDied:  # not a bug of the case: with one process fewer the side would go on, and pass anything
            raise
        except UsageError as exc:
            raise BaselineFailed(str(exc)) from exc

    def release() -> None:
        a.request("release")
        b.request("release")

    baseline(lambda: a.request("setup", name=name))
    b.request("setup", name=name)
    rounds_a = [lambda run=run: baseline(run) for run in a.rounds()]
    rounds_b = b.rounds()
    try:
        warm_a, warm_b = interleave(rounds_a, rounds_b, cfg.warmup_rounds * len(rounds_a))  # that many per process
        rounds = rounds_for(float(np.median(warm_a + warm_b)) if warm_a else 0.0, n_cases, cfg)
        timed = interleave(rounds_a, rounds_b, rounds)
    except BaselineFailed:  # the gate goes on with the next case
        release()
        raise
    # (after Ctrl-C or a candidate's error the gate stops: no release, whose reply would be a round's)
    release()
    return timed


def check_rounds_can_decide(min_rounds: int, n_cases: int, alpha: float) -> None:
    """UsageError when a case timed `min_rounds` a side could never be called regressed: even fully separated
    samples would give a Holm p (the rank test's smallest p × the number of cases) of at least alpha. Such a gate
    passes whatever the code does."""
    needed = next(n for n in itertools.count(2) if smallest_p(n, n) * n_cases < alpha)
    if min_rounds < needed:
        raise UsageError(f"--min-rounds {min_rounds} cannot detect a regression: over {n_cases} case(s) at alpha "
                         f"{alpha:g}, a case needs at least {needed} rounds a side for its Holm p to go below alpha")


def common_cases(a: Side, b: Side, cfg: GateConfig) -> tuple[list[dict], list[str]]:
    """The cases both sides have (CUDA ones only with CUDA), and lines noting what is left out."""
    cases, known = {}, set()
    for worker in (a, b):
        # a baseline from before amal or its cases has nothing to compare: skipped; a candidate without them is
        # the wrong folder (--candidate), which must not pass CI
        lacking = GateSkipped if worker is a else UsageError
        hello = worker.request("hello")
        if "missing" in hello:
            raise lacking(f"{worker.label} has no amal package ({hello['missing']})")
        if not Path(hello["amal_file"]).resolve().is_relative_to(worker.checkout):
            if not (worker.checkout / "amal" / "__init__.py").is_file():  # the one it found is on PYTHONPATH
                raise lacking(f"{worker.label} has no amal package")
            raise UsageError(f"{worker.label} worker imported {hello['amal_file']}, not the checkout's amal")
        listing = worker.request("cases", profile=cfg.profile, threads=cfg.threads)
        if "missing" in listing:
            raise lacking(f"{worker.label} has no benchmark cases ({listing['missing']})")
        threads = listing.get("threads")  # what the worker's torch runs with
        cases[worker.label] = {c["name"]: {**c, "threads": threads, "settings": settings_text(
            {**c.get("params", {}), "device": c["device"], "profile": cfg.profile, "num_threads": threads})}
            for c in listing["cases"] if c["device"] == "cpu" or listing["cuda"]}
        known |= {c["name"] for c in listing["cases"]}
    unknown = sorted(set(cfg.only) - known)
    if unknown:  # a misspelt --case must not pass the gate by comparing nothing
        raise UsageError(f"--case {', '.join(unknown)}: no such case in the baseline or the candidate "
                         f"(profile {cfg.profile}; cases: {', '.join(sorted(known)) or 'none'})")
    runnable = set(cases[a.label]) | set(cases[b.label])
    no_cuda = sorted(set(cfg.only) - runnable)  # known but left out above: CUDA cases on a machine without CUDA
    if cfg.only and not set(cfg.only) & runnable:
        raise GateSkipped(f"--case {', '.join(no_cuda)} needs a CUDA device; none on this machine")
    names = sorted(set(cases[a.label]) & set(cases[b.label]) & (set(cfg.only) or set(cases[b.label])))
    notes = [f"only in the {w.label} (not compared): {', '.join(sorted(set(cases[w.label]) - set(names)))}"
             for w in (a, b) if set(cases[w.label]) - set(names) and not cfg.only]
    notes += [f"not compared, needs a CUDA device (none on this machine): {', '.join(no_cuda)}"] if no_cuda else []
    changes = {name: settings_change(cases[a.label][name]["settings"], cases[b.label][name]["settings"])
               for name in names}
    notes += [f"{name}: not compared, its settings differ ({change})" for name, change in changes.items() if change]
    names = [name for name in names if not changes[name]]  # other work on each side: not timed at all
    if not names and any(changes.values()):
        raise GateSkipped("every case in common changed its settings: " + "; ".join(notes))
    if not names:
        raise GateSkipped(f"no benchmark case in common between {a.label} and {b.label} (profile {cfg.profile})")
    return [{**cases[b.label][name], "sides": {"baseline": cases[a.label][name], "candidate": cases[b.label][name]}}
            for name in names], notes


def time_all(a: Side, b: Side, cases: list[dict], cfg: GateConfig,
             quiet: bool = True, desc: str = "gate") -> tuple[pd.DataFrame, list[str]]:
    """Rounds of every case in both sides (columns side + amal.samples.ROUND_COLUMNS), and lines on cases that
    failed in the baseline; GateSkipped when every case did."""
    parts, notes = [], []
    for case in tqdm(cases, desc=desc, unit="case", disable=quiet or not sys.stderr.isatty(), leave=False):
        try:
            timed = time_case(a, b, case["name"], len(cases), cfg)
        except BaselineFailed as exc:
            notes.append(f"not compared, failed in the baseline: {exc}")
            continue
        for side, seconds in zip(SIDES, timed, strict=True):
            parts.append(pd.DataFrame({"side": side, "benchmark": case["name"], "bench_group": case["group"],
                                       "round": np.arange(1, len(seconds) + 1), "round_s": seconds,
                                       "settings": case["sides"][side]["settings"]}))
    if not parts:
        raise GateSkipped("every case failed in the baseline: " + "; ".join(notes))
    return pd.concat(parts, ignore_index=True), notes
