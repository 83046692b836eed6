"""pytest-benchmark glue for bench/: how many rounds a case gets, and its raw rounds as results-store rows."""

import pandas as pd

from amal import store
from amal.samples import benchmark_names

ROUND_BUDGET_S = {"quick": 1.0, "full": 20.0}  # timed seconds aimed at per case
# medians need a few rounds even when one round is long; quick's 10 let amal.compare reach significance after
# Holm's correction over all 37 quick cases (exact two-sided Mann-Whitney p 1.1e-5 at best, x 37 < 0.01; 8 is the
# least that could), which 5 could not
MIN_ROUNDS = {"quick": 10, "full": 3}
MAX_ROUNDS = 100  # short cases stop here: a round of a few ms is already stable, and the store gets a row per round

# columns the export itself fills; a benchmark's extra_info cannot override them
RESERVED = {"run_id", "experiment", "tag", "benchmark", "bench_group", "round", "round_s", "profile", "reference_s",
            *store.ENVIRONMENT}


def rounds_for(round_s: float, profile: str) -> int:
    """Rounds for a case whose round takes `round_s`: ROUND_BUDGET_S / round_s, within [MIN_ROUNDS, MAX_ROUNDS]."""
    wanted = int(ROUND_BUDGET_S[profile] / max(round_s, 1e-9))
    return max(MIN_ROUNDS[profile], min(MAX_ROUNDS, wanted))


def param_columns(params: dict) -> dict:
    """The case parameters that are result columns (implementation, batch_size, epochs, lr, device...), less those
    the export fills itself (RESERVED)."""
    return {k: v for k, v in params.items() if k in store.COLUMNS and k not in RESERVED}


def round_rows(benchmarks: list[dict], profile: str) -> pd.DataFrame:
    """One row per timed round of each benchmark, from pytest-benchmark's `as_dict(include_data=True)` dicts.

    `benchmark` is extra_info["case"] (the amal.cases name) when present, else the test name (samples.benchmark_names:
    the full name where two tests share one); extra_info keys that are result columns (param_columns) fill those
    columns, the rest stay in JSON. extra_info["reference_s"], one time per round of a loop timed just before each
    (fidelity, sgd-floor), gives each round its `reference_s`.
    """
    rows = []
    for bench, name in zip(benchmarks, benchmark_names(benchmarks), strict=True):
        params = param_columns(bench.get("extra_info", {}))
        rounds = bench["stats"]["data"]
        paired = bench.get("extra_info", {}).get("reference_s") or [None] * len(rounds)
        if len(paired) != len(rounds):
            raise ValueError(f"{name}: {len(paired)} reference times for {len(rounds)} rounds")
        for number, (seconds, reference_s) in enumerate(zip(rounds, paired, strict=True), start=1):
            rows.append({"benchmark": name, "bench_group": bench.get("group"), "round": number, "round_s": seconds,
                         "profile": profile, **params, **({} if reference_s is None else {"reference_s": reference_s})})
    return pd.DataFrame(rows)
