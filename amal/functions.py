"""TP1: Linear and MSE as autograd Functions with hand-written forward and backward.

They run under autograd (`linear(X, W, b)`) and also without it, as in the course:

    ctx = Context(); yhat = Linear.forward(ctx, X, W, b); dX, dW, db = Linear.backward(ctx, grad)
"""

import torch


class Context:
    """Stands in for autograd's ctx when a Function is called by hand: keeps the tensors backward needs."""

    def __init__(self):
        self._saved_tensors = ()

    def save_for_backward(self, *tensors):
        self._saved_tensors = tensors

    @property
    def saved_tensors(self):
        return self._saved_tensors


class Linear(torch.autograd.Function):
    """Ŷ = X·W + b with X (q×n), W (n×p), b (p)."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w + b

    @staticmethod
    def backward(ctx, grad_output):
        """Given G = ∂C/∂Ŷ (q×p): ∂C/∂X = G·Wᵀ, ∂C/∂W = Xᵀ·G, ∂C/∂b = Σ_rows G."""
        x, w = ctx.saved_tensors
        return grad_output @ w.T, x.T @ grad_output, grad_output.sum(0)


class MSE(torch.autograd.Function):
    """C = (1/q)·‖Ŷ − Y‖²: squared error summed over the p outputs, averaged over the q rows."""

    @staticmethod
    def forward(ctx, yhat, y):
        diff = yhat - y
        ctx.save_for_backward(diff)
        return (diff * diff).sum() / diff.shape[0]

    @staticmethod
    def backward(ctx, grad_output):
        """∂C/∂Ŷ = (2/q)·(Ŷ − Y) and ∂C/∂Y = −(2/q)·(Ŷ − Y), each times the incoming scalar gradient."""
        (diff,) = ctx.saved_tensors
        grad = grad_output * (2.0 / diff.shape[0]) * diff
        return grad, -grad


linear = Linear.apply
mse = MSE.apply


def full_mse(x, y, w, b) -> float:
    """Full-data MSE (1/q)·‖XW + b − Y‖² of the linear model, with the hand-written functions, no graph built."""
    with torch.no_grad():
        return MSE.forward(Context(), Linear.forward(Context(), x, w, b), y).item()


def manual_step(x, y, w, b, lr):
    """One gradient-descent step with the hand-written forward/backward, no autograd; returns the loss before it."""
    lin_ctx, mse_ctx = Context(), Context()
    yhat = Linear.forward(lin_ctx, x, w, b)
    loss = MSE.forward(mse_ctx, yhat, y)
    grad_yhat, _ = MSE.backward(mse_ctx, torch.ones((), dtype=x.dtype, device=x.device))
    _, grad_w, grad_b = Linear.backward(lin_ctx, grad_yhat)
    w.sub_(lr * grad_w)
    b.sub_(lr * grad_b)
    return loss
