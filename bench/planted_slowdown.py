"""A planted slowdown, for measuring the regression gate only (bench/gate_error_rates.py); production never loads it.

The gate's worker loads this file with `--wrap`. When the worker's environment has AMAL_PLANTED_SLOWDOWN=F (e.g.
1.25), every round of a case also runs real extra work (matrix products on the case's device) calibrated to take
(F - 1) x the round's own undisturbed time, so that the round takes about F times as long. Unset or 1: rounds unchanged.
"""

import os

import torch

from amal.timing import measure

UNITS_PER_CALIBRATION = 200  # matrix products timed together to learn the cost of one


def extra_work(a: torch.Tensor, units: int) -> None:
    """`units` products of a 64 x 64 matrix: real arithmetic the round waits for."""
    for _ in range(units):
        a @ a


def wrap(fn, case):
    """`fn`, or `fn` followed by extra work worth (F - 1) of its round time when AMAL_PLANTED_SLOWDOWN=F."""
    factor = float(os.environ.get("AMAL_PLANTED_SLOWDOWN", "1"))
    if factor == 1.0:
        return fn
    a = torch.randn(64, 64, device=case.device)
    calibrate = lambda: extra_work(a, UNITS_PER_CALIBRATION)  # noqa: E731
    round_times, unit_times = [], []
    for _ in range(15):  # alternated, so a burst of load on the machine hits both alike
        round_times += measure(fn, rounds=1, warmup_rounds=1, device=case.device)
        unit_times += measure(calibrate, rounds=1, warmup_rounds=1, device=case.device)
    # minima: the undisturbed cost of each (a round sharing its core with another process takes twice as long)
    round_s = min(round_times)
    unit_s = min(unit_times) / UNITS_PER_CALIBRATION
    units = max(0, round((factor - 1.0) * round_s / unit_s))

    def slowed():
        fn()
        extra_work(a, units)

    return slowed
