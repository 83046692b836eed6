"""Fidelity: the time the suite records for a batch-size case vs a bare hand-written loop doing the same work.

Both run in this process, interleaved A B A B: pytest-benchmark times the case's round (amal's trainer, built by
amal.experiments.batch_size.case) and, in pedantic's untimed `setup` just before each round, the bare loop below is
timed with a Stopwatch. Reported (extra_info, terminal summary) as the median over rounds of suite / bare, each round
against the bare run just before it, so that the drift of a shared machine cancels; goal: within 5 %.
"""

import statistics

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amal.data import load_boston
from amal.experiments import batch_size
from amal.functions import MSE, Context, Linear
from amal.timing import recording

BATCH_SIZE, EPOCHS, LR = 16, 5, 1e-3
ROUNDS = {"quick": 31, "full": 101}


def bare_loop(implementation: str, x: torch.Tensor, y: torch.Tensor):
    """The training loop as one would type it in a notebook, no amal code: returns one round of EPOCHS epochs."""
    n, gen = len(x), torch.Generator().manual_seed(0)
    if implementation == "manual":
        w, b = torch.zeros(x.shape[1], 1), torch.zeros(1)

        def run():
            for _ in range(EPOCHS):
                perm = torch.randperm(n, generator=gen)
                xs, ys = x[perm], y[perm]
                for i in range(0, n, BATCH_SIZE):
                    lin, err = Context(), Context()
                    MSE.forward(err, Linear.forward(lin, xs[i:i + BATCH_SIZE], w, b), ys[i:i + BATCH_SIZE])
                    _, grad_w, grad_b = Linear.backward(lin, MSE.backward(err, 1.0)[0])
                    w.sub_(grad_w, alpha=LR)
                    b.sub_(grad_b, alpha=LR)

        return run
    if implementation == "fused":
        x1, theta = torch.cat([x, torch.ones(n, 1)], dim=1), torch.zeros(x.shape[1] + 1, 1)

        def run():
            for _ in range(EPOCHS):
                perm = torch.randperm(n, generator=gen)
                xs, ys = x1[perm], y[perm]
                batches = zip(xs.split(BATCH_SIZE), xs.T.split(BATCH_SIZE, dim=1), ys.split(BATCH_SIZE), strict=True)
                for xb, xb_t, yb in batches:
                    residual = torch.addmm(yb, xb, theta, beta=-1)
                    theta.addmm_(xb_t, residual, alpha=-2 * LR / len(xb))

        return run
    if implementation not in ("tensor", "dataloader"):
        raise ValueError(f"no bare loop for implementation {implementation!r}")
    model, loss_fn = nn.Linear(x.shape[1], 1), nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    if implementation == "dataloader":
        loader = DataLoader(TensorDataset(x, y), batch_size=BATCH_SIZE, shuffle=True, generator=gen)

        def run():
            for _ in range(EPOCHS):
                for xb, yb in loader:
                    optimizer.zero_grad()
                    loss_fn(model(xb), yb).backward()
                    optimizer.step()

        return run

    def run():
        for _ in range(EPOCHS):
            perm = torch.randperm(n, generator=gen)
            xs, ys = x[perm], y[perm]
            for i in range(0, n, BATCH_SIZE):
                optimizer.zero_grad()
                loss_fn(model(xs[i:i + BATCH_SIZE]), ys[i:i + BATCH_SIZE]).backward()
                optimizer.step()

    return run


@pytest.mark.parametrize("implementation", batch_size.IMPLEMENTATIONS)
def test_fidelity(benchmark, profile, implementation):
    case = batch_size.case(implementation, BATCH_SIZE, EPOCHS)
    suite_round = case.setup()
    data = load_boston("minmax")
    bare = bare_loop(implementation, data.x_train, data.y_train)
    bare_s = []

    benchmark.group = "fidelity"
    benchmark.pedantic(suite_round, setup=recording(bare, bare_s),  # pedantic's setup: off its clock
                       rounds=ROUNDS[profile], warmup_rounds=2)
    if benchmark.disabled:  # --benchmark-disable: both loops ran once, as a test; there is no ratio to take
        return
    suite_s = benchmark.stats.stats.data
    bare_s = bare_s[2:2 + len(suite_s)]  # the first two ran before the warm-up rounds (a cProfile run adds one)
    ratio = statistics.median(suite / bare for suite, bare in zip(suite_s, bare_s, strict=True))
    suite_median, bare_median = statistics.median(suite_s), statistics.median(bare_s)
    benchmark.extra_info.update(case.params, profile=profile, num_threads=torch.get_num_threads(),
                                bare_median_s=bare_median, suite_median_s=suite_median,
                                reference="bare PyTorch loop", reference_s=bare_s,  # stored beside each round
                                fidelity_ratio=ratio, summary=(
                                    f"fidelity {case.name} ({EPOCHS} epochs): suite {suite_median * 1e3:.2f} ms, "
                                    f"bare loop {bare_median * 1e3:.2f} ms, median ratio {ratio:.3f} over "
                                    f"{len(bare_s)} interleaved pairs (goal within 5 %)"))
