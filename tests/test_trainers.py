import numpy as np
import pytest
import torch

from amal.data import load_boston
from amal.experiments.lr_sweep import init_params
from amal.experiments.trainers import make_trainer
from amal.functions import full_mse


@pytest.fixture(scope="module")
def boston():
    return load_boston("minmax")


def losses(implementation, data, batch, seed, epochs, lr=1e-3):
    """Training MSE after each epoch."""
    trainer = make_trainer(implementation, data.x_train, data.y_train, batch, seed, lr)
    out = []
    for _ in range(epochs):
        trainer.epoch()
        out.append(full_mse(data.x_train, data.y_train, *trainer.params()))
    return np.array(out)


@pytest.mark.parametrize("batch", [1, 16, 506])
@pytest.mark.parametrize("other", ["manual", "fused"])
def test_tensor_manual_and_fused_agree_for_the_same_seed(boston, batch, other):
    tensor = losses("tensor", boston, batch, seed=3, epochs=3)
    theirs = losses(other, boston, batch, seed=3, epochs=3)
    # float32 sums in another order (addmm vs matmul + add): a few ulps per step, far below the change per epoch
    np.testing.assert_allclose(tensor, theirs, rtol=1e-5)
    assert not np.allclose(np.diff(tensor), 0, atol=1e-3)  # the runs trained


def test_all_three_agree_at_full_batch(boston):
    """At batch size n the row order only changes the summation order, so the DataLoader agrees too."""
    dataloader = losses("dataloader", boston, 506, seed=1, epochs=4)
    np.testing.assert_allclose(dataloader, losses("tensor", boston, 506, seed=1, epochs=4), rtol=1e-5)


def test_dataloader_is_seeded_and_orders_differently_from_tensor(boston):
    first = losses("dataloader", boston, 16, seed=2, epochs=2)
    np.testing.assert_array_equal(first, losses("dataloader", boston, 16, seed=2, epochs=2))
    assert not np.allclose(first, losses("dataloader", boston, 16, seed=5, epochs=2), rtol=1e-4)
    # same seed, different permutations (the DataLoader also draws a base seed per epoch): not the tensor curve
    assert not np.allclose(first, losses("tensor", boston, 16, seed=2, epochs=2), rtol=1e-4)


def test_full_batch_epoch_is_one_gradient_step(boston):
    """W1 = W0 − lr·(2/q)·Xᵀ(XW0 + b0 − Y), b1 = b0 − lr·(2/q)·Σ(XW0 + b0 − Y), computed here in float64."""
    lr = 0.05
    x, y = boston.x_train.double(), boston.y_train.double()
    w0, b0 = init_params(13, 1, seed=4)
    w0, b0 = w0.double(), b0.double()
    residual = x @ w0 + b0 - y
    w1 = w0 - lr * 2 / len(x) * x.T @ residual
    b1 = b0 - lr * 2 / len(x) * residual.sum(0)
    for implementation in ("manual", "tensor", "fused"):
        trainer = make_trainer(implementation, boston.x_train, boston.y_train, 506, seed=4, lr=lr)
        trainer.epoch()
        w, b = trainer.params()
        torch.testing.assert_close(w.double(), w1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b.double(), b1, rtol=1e-5, atol=1e-6)
