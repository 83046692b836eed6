import math

import pytest
import torch

from amal.models import TiedAutoencoder, reconstruction_loss


def test_decoder_has_no_weight_of_its_own():
    model = TiedAutoencoder(7, (5, 3))
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {"encoders.0.weight": (5, 7), "encoders.0.bias": (5,), "encoders.1.weight": (3, 5),
                      "encoders.1.bias": (3,), "decoder_biases.0": (7,), "decoder_biases.1": (5,)}


def test_forward_is_the_tied_formula():
    torch.manual_seed(0)
    model = TiedAutoencoder(6, (4, 2)).double()
    with torch.no_grad():
        for bias in model.decoder_biases:
            bias.normal_()
    x = torch.rand(3, 6, dtype=torch.float64)
    (w1, b1), (w2, b2) = [(layer.weight, layer.bias) for layer in model.encoders]
    c1, c2 = model.decoder_biases
    code = torch.relu(torch.relu(x @ w1.T + b1) @ w2.T + b2)
    expected = torch.sigmoid(torch.relu(code @ w2 + c2) @ w1 + c1)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-15)  # float64, same operations: rounding only


def test_tied_weight_gets_the_encoder_and_decoder_gradients():
    torch.manual_seed(1)
    model = TiedAutoencoder(6, (4,)).double()
    x = torch.rand(5, 6, dtype=torch.float64)
    reconstruction_loss(model.logits(x), x, "bce").backward()
    # the same computation with two independent copies of the weight: the tied gradient must be their sum
    w_enc = model.encoders[0].weight.detach().clone().requires_grad_()
    w_dec = model.encoders[0].weight.detach().clone().requires_grad_()
    logits = torch.relu(x @ w_enc.T + model.encoders[0].bias.detach()) @ w_dec + model.decoder_biases[0].detach()
    reconstruction_loss(logits, x, "bce").backward()
    assert w_enc.grad.abs().sum() > 0 and w_dec.grad.abs().sum() > 0
    torch.testing.assert_close(model.encoders[0].weight.grad, w_enc.grad + w_dec.grad, rtol=0, atol=1e-14)


def test_changing_the_encoder_weight_changes_the_decoder():
    model = TiedAutoencoder(4, (2,))
    code = torch.ones(1, 2)
    before = model.decode_logits(code).detach().clone()
    with torch.no_grad():
        model.encoders[0].weight.add_(1.0)
    torch.testing.assert_close(model.decode_logits(code).detach(), before + 2.0, rtol=0, atol=1e-6)


def test_gradcheck_float64():
    torch.manual_seed(2)
    model = TiedAutoencoder(5, (4, 3)).double()
    x = torch.rand(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))


def test_loss_values_by_hand():
    logits = torch.zeros(2, 2)  # sigmoid(0) = 0.5 for every pixel
    x = torch.tensor([[0.0, 1.0], [0.25, 0.75]])
    # BCE(0.5, t) = -(t ln .5 + (1-t) ln .5) = ln 2 whatever t
    assert reconstruction_loss(logits, x, "bce").item() == pytest.approx(math.log(2), abs=1e-7)
    # (0.5 - t)^2: 0.25, 0.25, 0.0625, 0.0625 -> mean 0.15625
    assert reconstruction_loss(logits, x, "mse").item() == 0.15625
    with pytest.raises(ValueError, match="unknown loss"):
        reconstruction_loss(logits, x, "l1")
