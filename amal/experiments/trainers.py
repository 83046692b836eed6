"""TP2's linear regression trained four ways, each behind the same Trainer: one epoch, one instrumented epoch, the
current parameters.

Linear regression Ŷ = XW + b, MSE loss, plain SGD update W -= lr·∂C/∂W, written four ways: `dataloader` (Dataset +
DataLoader(shuffle=True) + nn.Linear/nn.MSELoss + torch.optim.SGD, as the course teaches), `tensor` (the same Module and
optimiser, the data held as tensors: one randperm per epoch, then slices), `manual` (TP1's hand-written Linear/MSE
forward and backward, hand-written update, no autograd) and `fused` (the closed-form gradient with the bias folded into
W: two torch operations per step, the fewest eager PyTorch allows). `tensor`, `manual` and `fused` draw the same
permutations from the same seeded generator, so they give the same losses up to float rounding. The DataLoader draws
from a generator seeded the same way, but each epoch it also takes a worker base seed and one permutation it discards
from that generator, so its epoch orders are a different, equally uniform sequence: its curves agree with the others in
distribution, and exactly (up to rounding) only at full batch, where the order does not matter.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amal.experiments.lr_sweep import init_params
from amal.functions import MSE, Context, Linear
from amal.timing import Sections


@dataclass(frozen=True)
class Trainer:
    """One implementation's training state, seen through three functions."""

    epoch: Callable[[], None]  # one pass over the shuffled training set, as fast as it is written
    instrumented_epoch: Callable[[Sections], None]  # the same pass with data/forward/backward/update timed
    params: Callable[[], tuple[torch.Tensor, torch.Tensor]]  # current (W, b), W of shape (n_features, 1)


def _module(w: torch.Tensor, b: torch.Tensor, lr: float) -> tuple[nn.Linear, nn.MSELoss, torch.optim.SGD]:
    """nn.Linear holding W (as its (1, n) weight) and b, nn.MSELoss, and plain SGD."""
    model = nn.Linear(w.shape[0], w.shape[1]).to(w.device)
    with torch.no_grad():
        model.weight.copy_(w.T)
        model.bias.copy_(b)
    return model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=lr)


def _module_params(model: nn.Linear) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    return lambda: (model.weight.detach().T, model.bias.detach())


def shuffled(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of x and y in one random order drawn from `gen` (one randperm, one gathered copy each)."""
    perm = torch.randperm(len(x), generator=gen, device=x.device)
    return x[perm], y[perm]


def timed_batches(sections: Sections, x, y, batch_size: int, gen: torch.Generator):
    """The shuffled batches of an epoch, as tensor_trainer slices them, with the shuffle and every slice on the
    "data" stopwatch."""
    with sections("data"):
        xs, ys = shuffled(x, y, gen)
    for i in range(0, len(xs), batch_size):
        with sections("data"):
            xb, yb = xs[i:i + batch_size], ys[i:i + batch_size]
        yield xb, yb


def timed_module_step(sections: Sections, model, loss_fn, optimizer, xb, yb) -> None:
    """One Module + optimiser step with forward, backward and update each on its own stopwatch."""
    with sections("forward"):
        loss = loss_fn(model(xb), yb)
    with sections("backward"):
        loss.backward()
    with sections("update"):
        optimizer.step()
        optimizer.zero_grad()


def tensor_trainer(x, y, batch_size: int, w, b, lr: float, gen: torch.Generator) -> Trainer:
    """nn.Linear + SGD; per epoch one randperm and one gathered copy, then contiguous slices (views)."""
    model, loss_fn, optimizer = _module(w, b, lr)
    n = len(x)

    def epoch():
        xs, ys = shuffled(x, y, gen)
        for i in range(0, n, batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(xs[i:i + batch_size]), ys[i:i + batch_size])
            loss.backward()
            optimizer.step()

    def instrumented_epoch(sections: Sections):
        for xb, yb in timed_batches(sections, x, y, batch_size, gen):
            timed_module_step(sections, model, loss_fn, optimizer, xb, yb)

    return Trainer(epoch, instrumented_epoch, _module_params(model))


def manual_trainer(x, y, batch_size: int, w, b, lr: float, gen: torch.Generator) -> Trainer:
    """TP1's hand-written Linear/MSE forward and backward, update W -= lr·∂C/∂W; same permutations as `tensor_trainer`.

    The step is amal.functions.manual_step written out, with two fewer tensor operations per step (the incoming
    gradient 1 stays a Python float, the update is one `sub_(grad, alpha=lr)`, as torch.optim.SGD does it): at
    batch size 1 a step is a few dozen microseconds of per-operation overhead, so each operation shows.
    """
    w, b = w.clone(), b.clone()
    n = len(x)

    def epoch():
        xs, ys = shuffled(x, y, gen)
        for i in range(0, n, batch_size):
            lin_ctx, mse_ctx = Context(), Context()
            MSE.forward(mse_ctx, Linear.forward(lin_ctx, xs[i:i + batch_size], w, b), ys[i:i + batch_size])
            grad_yhat, _ = MSE.backward(mse_ctx, 1.0)
            _, grad_w, grad_b = Linear.backward(lin_ctx, grad_yhat)
            w.sub_(grad_w, alpha=lr)
            b.sub_(grad_b, alpha=lr)

    def instrumented_epoch(sections: Sections):
        for xb, yb in timed_batches(sections, x, y, batch_size, gen):
            with sections("forward"):
                lin_ctx, mse_ctx = Context(), Context()
                MSE.forward(mse_ctx, Linear.forward(lin_ctx, xb, w, b), yb)
            with sections("backward"):
                grad_yhat, _ = MSE.backward(mse_ctx, 1.0)
                _, grad_w, grad_b = Linear.backward(lin_ctx, grad_yhat)
            with sections("update"):
                w.sub_(grad_w, alpha=lr)
                b.sub_(grad_b, alpha=lr)

    return Trainer(epoch, instrumented_epoch, lambda: (w, b))


def fused_trainer(x, y, batch_size: int, w, b, lr: float, gen: torch.Generator) -> Trainer:
    """The closed-form gradient in the fewest torch operations: the bias is the weight of a constant-1 feature,
    θ = [W; b], so a step is r = [X 1]·θ − Y and θ −= (2lr/q)·[X 1]ᵀr, two operations (addmm, addmm_).
    No autograd, no Function objects; same permutations as `tensor_trainer`, same mathematics."""
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
    theta = torch.cat([w, b.view(1, -1)])  # (n_features + 1) × p

    def shuffled_batches():
        """Per epoch one permutation, then batches as views: rows, the same rows transposed, targets."""
        xs, ys = shuffled(x1, y, gen)
        return zip(xs.split(batch_size), xs.T.split(batch_size, dim=1), ys.split(batch_size), strict=True)

    def epoch():
        for xb, xb_t, yb in shuffled_batches():
            residual = torch.addmm(yb, xb, theta, beta=-1)  # [X 1]·θ − Y in one operation
            theta.addmm_(xb_t, residual, alpha=-2.0 * lr / len(xb))  # gradient and update in one operation

    def instrumented_epoch(sections: Sections):
        with sections("data"):
            batches = iter(list(shuffled_batches()))
        for xb, xb_t, yb in batches:
            with sections("forward"):
                residual = torch.addmm(yb, xb, theta, beta=-1)
            with sections("backward"):  # the fast path fuses this product into the update (addmm_)
                grad = xb_t @ residual
            with sections("update"):
                theta.sub_(grad, alpha=2.0 * lr / len(xb))

    return Trainer(epoch, instrumented_epoch, lambda: (theta[:-1], theta[-1]))


def dataloader_trainer(x, y, batch_size: int, w, b, lr: float, gen: torch.Generator) -> Trainer:
    """TensorDataset + DataLoader(shuffle=True) on the CPU, batches moved to the device, nn.Linear + SGD."""
    device = x.device
    model, loss_fn, optimizer = _module(w, b, lr)
    loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=batch_size, shuffle=True, generator=gen)

    def epoch():
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()

    def instrumented_epoch(sections: Sections):
        with sections("data"):
            batches = iter(loader)
        while True:
            with sections("data"):  # includes the last, empty fetch that ends the epoch
                batch = next(batches, None)
                if batch is not None:
                    xb, yb = batch[0].to(device), batch[1].to(device)
            if batch is None:
                break
            timed_module_step(sections, model, loss_fn, optimizer, xb, yb)

    return Trainer(epoch, instrumented_epoch, _module_params(model))


TRAINERS = {"dataloader": dataloader_trainer, "tensor": tensor_trainer, "manual": manual_trainer,
            "fused": fused_trainer}


def make_trainer(implementation: str, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int,
                 lr: float) -> Trainer:
    """A fresh trainer: W, b from `seed` (lr_sweep.init_params), shuffling from a generator seeded with `seed`."""
    w, b = init_params(x.shape[1], y.shape[1], seed)
    device = x.device if implementation != "dataloader" else torch.device("cpu")  # the DataLoader samples on the CPU
    gen = torch.Generator(device=device).manual_seed(seed)
    return TRAINERS[implementation](x, y, batch_size, w.to(x.device), b.to(x.device), lr, gen)
