"""Benchmark cases: named, parametrised units of training work that `bench/` and the regression gate both time.

Each experiment module contributes its own with `bench_cases(profile) -> list[Case]`.
A case's `setup()` builds its state (data, model, optimiser) and returns a zero-argument callable; one call of it is
one round. The pytest-benchmark suites in `bench/` time rounds with `benchmark.pedantic`; the regression gate
(`amal.compare`) times the same callables interleaved between two checkouts. Both read `params` as the case's
parameters (pytest-benchmark's extra_info, the results store's columns).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

PROFILES = ("quick", "full")


@dataclass(frozen=True)
class Case:
    name: str  # unique and stable across commits, e.g. "lr-sweep/manual/cpu"
    group: str  # benchmark group (the gate's threshold can differ per group)
    setup: Callable[[], Callable[[], object]]  # builds the state, returns one round of work
    params: dict = field(default_factory=dict)  # experiment parameters, stored as extra_info / columns
    device: str = "cpu"  # "cuda" cases are skipped without CUDA


def cases(profile: str = "quick") -> list[Case]:
    """Every case of the profile ('quick': minutes on 2 cores; 'full': the seed's 1000-epoch grid)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose {', '.join(PROFILES)}")
    from amal.experiments import EXPERIMENTS

    return [case for experiment in EXPERIMENTS.values() for case in experiment.bench_cases(profile)]
