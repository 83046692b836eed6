"""SGD floor: µs per step at batch size 1 for each implementation next to a plain NumPy loop doing the same update.

The NumPy loop (float32, one permutation per epoch, Ŷ = xW + b, W -= lr·(2/q)·xᵀ(Ŷ − y)) is the practical floor of a
Python-driven loop on a CPU. One round = one epoch (506 steps); the NumPy epoch runs in pedantic's untimed `setup`
just before each round, so the two alternate in one process. Goal: the fastest implementation within 2× the floor.
`fused` does the same update in two torch operations (addmm, addmm_): what eager PyTorch costs per step
when the step has as few operations as NumPy's.
"""

import statistics

import numpy as np
import pytest
import torch

from amal.data import load_boston
from amal.experiments import batch_size
from amal.timing import recording

LR = 1e-3
ROUNDS = {"quick": 10, "full": 30}


def numpy_epoch(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """One SGD epoch (batch size 1) in NumPy; returns a callable so that the state persists across rounds."""
    rng = np.random.default_rng(seed)
    w, b = np.zeros((x.shape[1], 1), dtype=np.float32), np.zeros(1, dtype=np.float32)
    scale = np.float32(LR * 2.0)  # lr · 2/q with q = 1

    def run():
        perm = rng.permutation(len(x))
        xs, ys = x[perm], y[perm]
        for i in range(len(xs)):
            xb = xs[i:i + 1]
            residual = xb @ w + b - ys[i:i + 1]
            np.subtract(w, scale * (xb.T @ residual), out=w)  # in place: w and b live in the enclosing scope
            np.subtract(b, scale * residual[0], out=b)

    return run


@pytest.mark.parametrize("implementation", batch_size.IMPLEMENTATIONS)
def test_sgd_floor(benchmark, profile, implementation):
    data = load_boston("minmax")
    case = batch_size.case(implementation, batch_size=1, epochs=1)
    one_epoch, params = case.setup(), case.params
    floor = numpy_epoch(data.x_train.numpy(), data.y_train.numpy())
    floor_s = []

    benchmark.group = "sgd-floor"
    benchmark.pedantic(one_epoch, setup=recording(floor, floor_s),  # pedantic's setup: off its clock
                       rounds=ROUNDS[profile], warmup_rounds=2)
    if benchmark.disabled:  # --benchmark-disable: both loops ran once, as a test; there is no ratio to take
        return
    steps = len(data.x_train)
    timed = benchmark.stats.stats.data
    us_per_step = 1e6 * statistics.median(timed) / steps
    floor_s = floor_s[2:2 + len(timed)]  # the warm-ups' before, a cProfile run's after
    floor_us = 1e6 * statistics.median(floor_s) / steps
    benchmark.extra_info.update(params, profile=profile, num_threads=torch.get_num_threads(), us_per_step=us_per_step,
                                numpy_us_per_step=floor_us, reference="NumPy loop", reference_s=floor_s,
                                floor_ratio=us_per_step / floor_us, summary=(
                                    f"sgd floor {implementation:<11} batch 1: {us_per_step:7.1f} µs/step, NumPy "
                                    f"{floor_us:5.1f} µs/step, ratio {us_per_step / floor_us:5.2f}"))  # goal: min ≤ 2
