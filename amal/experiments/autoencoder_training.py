"""One epoch of the autoencoder and what surrounds it: its batches (from the DataLoader, copied to the device every
step, or resident there), the Adam steps, the losses evaluated off the training clock, the untimed warm-up on a copy
of the model, and the reconstruction grid. `cfg` is an AutoencoderConfig (amal.experiments.autoencoder)."""

import copy
import io
import signal

import torch
from torch.utils.data import DataLoader

from amal.datasets import MnistVectors
from amal.models import reconstruction_loss
from amal.timing import Stopwatch, StreamStopwatch, warmup


class ResidentBatches:
    """The training set on the device once; each pass yields shuffled batches indexed there (no copy per batch)."""

    def __init__(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator):
        self.vectors, self.batch_size, self.generator = vectors, batch_size, generator

    def epoch(self, transfer):
        """One pass; the shuffled order is drawn on the host and copied to the device on the `transfer` clock."""
        order = torch.randperm(len(self.vectors), generator=self.generator)
        if self.vectors.device.type != "cpu":
            with transfer:
                order = order.to(self.vectors.device)
        return (self.vectors[index] for index in order.split(self.batch_size))


def leave_interrupts_to_the_main_process(worker_id: int) -> None:
    """A DataLoader worker's start: it ignores Ctrl-C and SIGTERM, which a terminal, `timeout` or a cancelled CI job
    send to the whole process group. The main process stops on them and shuts its workers down; a worker they killed
    first made torch raise 'DataLoader worker is killed by signal' over its clean 'interrupted' exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_batches(train: MnistVectors, cfg, device: torch.device, generator: torch.Generator):
    """The DataLoader (batches copied host → device every step) or, with data_on_device, resident batches."""
    if cfg.data_on_device:
        return ResidentBatches(train.vectors.to(device), cfg.batch_size, generator)
    # no persistent workers: each epoch's iterator then draws from `generator` exactly as with num_workers=0, so the
    # batches, and a resumed run, do not depend on the worker count
    return DataLoader(train, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                      pin_memory=device.type == "cuda", generator=generator,
                      worker_init_fn=leave_interrupts_to_the_main_process if cfg.num_workers else None)


def train_epoch(model, batches, optimizer, loss_fn: str, device: torch.device) -> dict:
    """One pass over `batches` with Adam; host → device copies (each batch's, or a resident set's shuffled order)
    timed on the GPU's stream (none on the CPU): `transfer`, a StreamStopwatch to read after the epoch's clock."""
    transfer = StreamStopwatch(device)
    samples = steps = 0
    for x in batches.epoch(transfer) if isinstance(batches, ResidentBatches) else batches:
        if x.device.type != device.type:
            with transfer:
                x = x.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = reconstruction_loss(model.logits(x), x, loss_fn)
        loss.backward()
        optimizer.step()
        samples += len(x)
        steps += 1
    return {"samples": samples, "steps": steps, "transfer": transfer}


@torch.no_grad()
def evaluate(model, vectors: torch.Tensor, loss_fn: str, device: torch.device, chunk: int = 1000) -> float:
    """Mean reconstruction loss per pixel over all of `vectors`, in chunks (memory stays bounded)."""
    total = 0.0
    for part in vectors.split(chunk):
        part = part.to(device)
        total += reconstruction_loss(model.logits(part), part, loss_fn, reduction="sum").item()
    return total / vectors.numel()


@torch.no_grad()
def reconstruction_png(model, vectors: torch.Tensor, device: torch.device) -> bytes:
    """PNG of a grid: the given test images on the top row, their reconstructions below."""
    from torchvision.utils import make_grid, save_image

    originals = vectors.to(device)
    images = torch.cat([originals, model(originals)]).reshape(-1, 1, 28, 28).cpu()
    buffer = io.BytesIO()
    save_image(make_grid(images, nrow=len(vectors), padding=2, pad_value=1.0), buffer, format="png")
    return buffer.getvalue()


def losses(model, train_set: MnistVectors, test_set: MnistVectors, loss_fn: str, device: torch.device) -> dict:
    """Train and test loss after an epoch, and the time they took (eval_s, kept off the training clock)."""
    clock = Stopwatch(device)
    with clock:
        train_loss = evaluate(model, train_set.vectors, loss_fn, device)
        test_loss = evaluate(model, test_set.vectors, loss_fn, device)
    return {"train_loss": train_loss, "test_loss": test_loss, "eval_s": clock.total_s}


def warm_up(model, cfg, vectors: torch.Tensor, device: torch.device) -> None:
    """A few untimed steps on a copy (own optimiser, no RNG drawn) with a full batch and, where the epoch ends with
    a shorter one, a batch of that size, fed as the run feeds its batches (resident, or from pinned host memory
    copied each step on CUDA): allocators, copies and kernels of both shapes settle, the run unchanged."""
    spare = copy.deepcopy(model)
    spare_optimizer = torch.optim.Adam(spare.parameters(), lr=cfg.lr)
    rest = len(vectors) % cfg.batch_size
    if cfg.data_on_device:  # the run's own path: an order drawn, copied, and batches gathered on the device
        batches = ResidentBatches(vectors[:cfg.batch_size + rest].to(device), cfg.batch_size, torch.Generator())
    else:
        batches = [vectors[:cfg.batch_size]] + ([vectors[:rest]] if rest else [])
        batches = [batch.pin_memory() for batch in batches] if device.type == "cuda" else batches
    warmup(lambda: train_epoch(spare, batches, spare_optimizer, cfg.loss_fn, device), cfg.warmup_steps, device)
