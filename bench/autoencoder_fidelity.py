"""Autoencoder throughput: the suite's run() against a bare PyTorch loop, interleaved in one process.

Same model shape, batch size, data (MnistVectors + DataLoader over the same images), device and thread count; on
CUDA both pin the loader's memory and copy each batch non-blocking, as a textbook GPU loop does. Each round runs
both, in alternating order (A B, then B A) so that drift on a shared machine hits both alike; the figure is the
median over rounds of (suite samples/s) / (bare samples/s).

    python bench/autoencoder_fidelity.py --rounds 9 --epochs 2 --batch-size 64 --hidden 256,64 --threads 1
    python bench/autoencoder_fidelity.py --device cuda
"""

import argparse
import statistics
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from amal.data import load_mnist
from amal.datasets import MnistVectors
from amal.errors import UsageError
from amal.experiments.autoencoder import AutoencoderConfig, run
from amal.experiments.options import ints
from amal.timing import Stopwatch, resolve_device, set_threads, warmup


def bare_loop(data: MnistVectors, hidden: tuple[int, ...], batch_size: int, epochs: int, seed: int,
              device: torch.device) -> float:
    """Samples/s of the textbook loop: tied weights as plain tensors, BCE on logits, Adam, nothing else."""
    torch.manual_seed(seed)
    sizes = (784, *hidden)
    encoders = [nn.Linear(a, b).to(device) for a, b in zip(sizes, sizes[1:], strict=False)]
    decoder_biases = [nn.Parameter(torch.zeros(a, device=device)) for a in sizes[:-1]]
    params = [p for layer in encoders for p in layer.parameters()] + decoder_biases
    optimizer = torch.optim.Adam(params, lr=1e-3)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                        pin_memory=device.type == "cuda")

    def step(x):
        x = x.to(device, non_blocking=True)
        h = x
        for layer in encoders:
            h = F.relu(layer(h))
        for i in reversed(range(len(encoders))):
            h = F.linear(h, encoders[i].weight.t(), decoder_biases[i])
            h = F.relu(h) if i > 0 else h
        loss = F.binary_cross_entropy_with_logits(h, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    first = data.vectors[:batch_size].pin_memory() if device.type == "cuda" else data.vectors[:batch_size]
    warmup(lambda: step(first), AutoencoderConfig.warmup_steps, device)  # as the suite warms up, off the clock
    clock = Stopwatch(device)
    with clock:
        for _ in range(epochs):
            for x in loader:
                step(x)
    return len(data) * epochs / clock.total_s


def suite(cfg: AutoencoderConfig) -> float:
    """Samples/s over all epochs of amal's run() (its own clock: training only, evaluation excluded)."""
    df = run(cfg)
    return cfg.epochs * df["n_train"].iloc[0] / df["elapsed_s"].iloc[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=ints, default=(256, 64))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except UsageError as exc:
        parser.error(str(exc))
    cfg = replace(AutoencoderConfig(), epochs=args.epochs, batch_size=args.batch_size, hidden=tuple(args.hidden),
                  device=device.type)
    data = MnistVectors(load_mnist().train_images)
    ratios, suite_rates, bare_rates = [], [], []
    for round_index in range(args.rounds):
        if round_index % 2 == 0:
            a, b = suite(cfg), bare_loop(data, cfg.hidden, cfg.batch_size, cfg.epochs, cfg.seed, device)
        else:
            b, a = bare_loop(data, cfg.hidden, cfg.batch_size, cfg.epochs, cfg.seed, device), suite(cfg)
        suite_rates.append(a)
        bare_rates.append(b)
        ratios.append(a / b)
    print(f"autoencoder fidelity on {device.type}: batch {cfg.batch_size}, hidden {','.join(map(str, cfg.hidden))}, "
          f"{len(data)} images x {cfg.epochs} epochs, {threads} thread(s), {args.rounds} interleaved rounds")
    print(f"  suite  {statistics.median(suite_rates):9.0f} samples/s (median)")
    print(f"  bare   {statistics.median(bare_rates):9.0f} samples/s (median)")
    print(f"  ratio  {statistics.median(ratios):.3f} (median of per-round suite/bare; "
          f"min {min(ratios):.3f}, max {max(ratios):.3f}; goal >= 0.95)")


if __name__ == "__main__":
    main()
