"""Benchmark cases: named, parametrised units of training work that `bench/` and the regression gate both time.

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


def _lr_sweep_cases(profile: str) -> list[Case]:
    from amal.data import load_boston
    from amal.experiments.lr_sweep import init_params
    from amal.functions import manual_step

    epochs = 100 if profile == "quick" else 1000
    lr = 0.1

    def setup():
        data = load_boston("minmax")
        w, b = init_params(data.x_train.shape[1], 1, seed=0)

        def one_round():
            for _ in range(epochs):
                manual_step(data.x_train, data.y_train, w, b, lr)

        return one_round

    params = {"experiment": "lr-sweep", "implementation": "manual", "batch_size": 506, "epochs": epochs, "lr": lr}
    return [Case("lr-sweep/manual/cpu", "lr-sweep", setup, params)]


def cases(profile: str = "quick") -> list[Case]:
    """Every case of the profile ('quick': minutes on 2 cores; 'full': the seed's 1000-epoch grid)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose {', '.join(PROFILES)}")
    return [*_lr_sweep_cases(profile)]
