import pytest
import torch

from amal.functions import MSE, Context, Linear, full_mse, linear, manual_step, mse

SHAPES = [(5, 3, 1), (1, 4, 2), (7, 13, 3), (2, 1, 1)]  # (q, n, p): includes q = 1 and p > 1


def _tensors(q, n, p, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x, w, b, y = (torch.randn(*shape, generator=gen, dtype=dtype) for shape in [(q, n), (n, p), (p,), (q, p)])
    return x, w, b, y


@pytest.mark.parametrize("q,n,p", SHAPES)
def test_linear_gradcheck(q, n, p):
    x, w, b, _ = (t.requires_grad_() for t in _tensors(q, n, p))
    assert torch.autograd.gradcheck(linear, (x, w, b), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("q,n,p", SHAPES)
def test_mse_gradcheck(q, n, p):
    _, _, _, y = _tensors(q, n, p)
    yhat = torch.randn(q, p, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    assert torch.autograd.gradcheck(mse, (yhat, y.requires_grad_()), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("q,n,p", SHAPES)
def test_chain_agrees_with_autograd(q, n, p):
    x, w, b, y = _tensors(q, n, p)
    ours = [t.clone().requires_grad_() for t in (x, w, b)]
    mse(linear(*ours), y).backward()
    ref = [t.clone().requires_grad_() for t in (x, w, b)]
    (((ref[0] @ ref[1] + ref[2]) - y) ** 2).sum(1).mean().backward()
    for a, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-12, atol=1e-12)


def test_mse_value_by_hand():
    # rows: errors (1, 2) and (3, 0): (1 + 4 + 9 + 0) / 2 rows = 7
    yhat = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    assert MSE.forward(Context(), yhat, torch.zeros(2, 2)).item() == 7.0


def test_functions_run_without_autograd():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    w = torch.tensor([[1.0], [-1.0]])
    b = torch.tensor([0.5])
    lin_ctx, mse_ctx = Context(), Context()
    yhat = Linear.forward(lin_ctx, x, w, b)
    assert yhat.tolist() == [[-0.5], [-0.5]]
    loss = MSE.forward(mse_ctx, yhat, torch.tensor([[0.5], [-1.5]]))
    assert loss.item() == 1.0  # ((-1)^2 + 1^2) / 2
    grad_yhat, grad_y = MSE.backward(mse_ctx, torch.tensor(1.0))
    assert grad_yhat.tolist() == [[-1.0], [1.0]]  # (2/q)(Ŷ − Y)
    assert grad_y.tolist() == [[1.0], [-1.0]]
    grad_x, grad_w, grad_b = Linear.backward(lin_ctx, grad_yhat)
    assert grad_w.tolist() == [[2.0], [2.0]]  # Xᵀ·G = [[1·-1 + 3·1], [2·-1 + 4·1]]
    assert grad_b.tolist() == [0.0]
    assert grad_x.tolist() == [[-1.0, 1.0], [1.0, -1.0]]


def test_context_keeps_saved_tensors():
    ctx = Context()
    assert ctx.saved_tensors == ()
    a, b = torch.ones(1), torch.zeros(2)
    ctx.save_for_backward(a, b)
    assert ctx.saved_tensors[0] is a and ctx.saved_tensors[1] is b


def test_manual_step_matches_autograd_sgd():
    x, w, b, y = _tensors(6, 3, 2, dtype=torch.float64)
    w_ref, b_ref = w.clone().requires_grad_(), b.clone().requires_grad_()
    opt = torch.optim.SGD([w_ref, b_ref], lr=0.05)
    loss_ref = ((x @ w_ref + b_ref - y) ** 2).sum(1).mean()
    loss_ref.backward()
    opt.step()
    loss = manual_step(x, y, w, b, 0.05)
    assert loss.item() == pytest.approx(loss_ref.item(), rel=1e-12)
    torch.testing.assert_close(w, w_ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b, b_ref.detach(), rtol=1e-12, atol=1e-12)


def test_full_mse_by_hand():
    x, w, b = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0]]), torch.tensor([1.0])
    assert full_mse(x, torch.tensor([[4.0], [7.0]]), w, b) == 0.5  # Ŷ = (3, 7): errors (−1, 0), 1 / 2 rows
