"""Models of the experiments: the tied-weight MNIST autoencoder of TP3."""

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("bce", "mse")


class TiedAutoencoder(nn.Module):
    """Encoder Linear→ReLU per layer; decoder reuses each encoder weight transposed (own bias), ReLU, final Sigmoid.

    For hidden (h1, ..., hk): x → relu(x W1ᵀ + b1) → ... → h; h → relu(h Wk + ck) → ... → sigmoid(· W1 + c1).
    """

    def __init__(self, n_inputs: int, hidden: tuple[int, ...]):
        super().__init__()
        sizes = (n_inputs, *hidden)
        self.encoders = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        # only a bias per decoder layer: its weight is the encoder's, so one parameter gets both gradients
        self.decoder_biases = nn.ParameterList(nn.Parameter(torch.zeros(a)) for a, _ in pairwise(sizes))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoders:
            x = F.relu(layer(x))
        return x

    def decode_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid reconstruction: layer by layer h Wᵢ + cᵢ (the transpose of encoder i), ReLU between."""
        for i in reversed(range(len(self.encoders))):
            h = F.linear(h, self.encoders[i].weight.t(), self.decoder_biases[i])
            if i > 0:
                h = F.relu(h)
        return h

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_logits(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [0, 1]."""
        return torch.sigmoid(self.logits(x))


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor, loss_fn: str, reduction: str = "mean") -> torch.Tensor:
    """Mean over pixels of BCE(sigmoid(logits), x) (computed from the logits, stable) or of (sigmoid(logits) − x)²."""
    if loss_fn == "bce":
        return F.binary_cross_entropy_with_logits(logits, x, reduction=reduction)
    if loss_fn == "mse":
        return F.mse_loss(torch.sigmoid(logits), x, reduction=reduction)
    raise ValueError(f"unknown loss {loss_fn!r}; choose {', '.join(LOSSES)}")
