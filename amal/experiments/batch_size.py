"""TP2: full batch, SGD and mini-batch on Boston Housing: loss per epoch and wall time per batch size (seed Fig. 2, 3).

Linear regression Ŷ = XW + b, MSE loss, plain SGD update W -= lr·∂C/∂W, written four ways (the `implementation`):
`dataloader` (Dataset + DataLoader(shuffle=True) + nn.Linear/nn.MSELoss + torch.optim.SGD, as the course teaches),
`tensor` (the same Module and optimiser, the data held as tensors: one randperm per epoch, then slices), `manual`
(TP1's hand-written Linear/MSE forward and backward, hand-written update, no autograd) and `fused` (the closed-form
gradient with the bias folded into W: two torch operations per step, the fewest eager PyTorch allows).
`tensor`, `manual` and `fused` draw the same permutations from the same seeded generator, so they give the same
losses up to float rounding. The DataLoader
draws from a generator seeded the same way, but each epoch it also takes a worker base seed and one permutation it
discards from that generator, so its epoch orders are a different, equally uniform sequence: its curves agree with the
others in distribution, and exactly (up to rounding) only at full batch, where the order does not matter.

A batch size above the number of training rows is refused (the word `n` in --batch-size means full batch).
"""

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amal.data import BOSTON_SOURCE, NORMALIZATIONS, least_squares_mse, load_boston
from amal.errors import UsageError
from amal.experiments.lr_sweep import init_params
from amal.experiments.options import check_choice, check_positive, waited_note, words
from amal.functions import MSE, Context, Linear, full_mse
from amal.report.format import integer, number, seconds
from amal.timing import RunWait, Sections, Stopwatch, resolve_device, synced, warmup

NAME = "batch-size"
IMPLEMENTATIONS = ("dataloader", "tensor", "manual", "fused")
FULL_BATCH = "n"  # in --batch-size: as many rows as the training set has


@dataclass(frozen=True)
class BatchSizeConfig:
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 506)  # rows per step (506 = full batch)
    implementations: tuple[str, ...] = IMPLEMENTATIONS  # how the training loop is written
    epochs: int = 1000  # passes over the training set per run
    seeds: int = 3  # repetitions, seeds 0..seeds-1 (initial weights and shuffling; the split stays seed 0)
    lr: float = 1e-3  # SGD learning rate, as in the seed
    normalize: str = "minmax"  # feature scaling: minmax, zscore or none
    test_size: float = 0.0  # held-out fraction (0: train on all 506 rows, as the seed does)
    device: str = "cpu"  # cpu, cuda or auto
    target_ratio: float = 1.10  # time-to-target threshold: target_ratio × the least-squares optimum
    warmup_epochs: int = 2  # uncounted epochs on a throwaway copy before timing
    decomposition_steps: int = 512  # instrumented steps (whole epochs, at least one) for the step decomposition
    blowup: float = 1e6  # a loss above blowup x the initial loss counts as divergence (as in lr-sweep)


def batch_sizes(text: str) -> tuple[int | str, ...]:
    """'1,16,n' -> (1, 16, 'n'); 'n' is full batch, '1.5' or 'x' are refused."""
    values = []
    for item in words(text):
        if item == FULL_BATCH:
            values.append(item)
            continue
        try:
            values.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"batch size {item!r} is not a whole number (or n)") from None
    return tuple(values)


def add_arguments(parser) -> None:
    default_sizes = ",".join(map(str, BatchSizeConfig.batch_sizes[:-1])) + f",{FULL_BATCH}"
    parser.add_argument("--batch-size", type=batch_sizes, default=default_sizes, metavar="B[,B...]",
                        help=f"rows per step, comma-separated; n = full batch; larger than the training set is "
                             f"refused (default: {default_sizes})")
    parser.add_argument("--implementation", type=words, default=IMPLEMENTATIONS, metavar="NAME[,NAME...]",
                        help=f"training loops: {', '.join(IMPLEMENTATIONS)} (default: all)")
    parser.add_argument("--epochs", type=int, default=BatchSizeConfig.epochs,
                        help="epochs per run (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=BatchSizeConfig.seeds,
                        help="repetitions, seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=BatchSizeConfig.lr, help="learning rate (default: %(default)s)")
    parser.add_argument("--normalize", default=BatchSizeConfig.normalize,
                        help="feature scaling: minmax, zscore or none (default: %(default)s)")
    parser.add_argument("--test-size", type=float, default=BatchSizeConfig.test_size,
                        help="held-out fraction, 0 trains on all rows (default: %(default)s)")
    parser.add_argument("--device", default=BatchSizeConfig.device,
                        help="cpu, cuda, cuda:N (GPU number N) or auto (default: %(default)s)")
    parser.add_argument("--target-ratio", type=float, default=BatchSizeConfig.target_ratio,
                        help="time-to-target: first epoch with train loss <= RATIO × least-squares optimum "
                             "(default: %(default)s)")


def n_train_rows(test_size: float) -> int:
    """Training rows of Boston Housing for a held-out fraction (scikit-learn's split: ceil(test_size·506) held out)."""
    return 506 - math.ceil(test_size * 506)


def config_from_args(args) -> BatchSizeConfig:
    """Validated config from parsed arguments; UsageError for values no run can use."""
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a finite number > 0, got {args.lr}")
    largest = torch.finfo(torch.float32).max / 2  # fused's update scales by 2·lr/q, a float32 on the device
    if args.lr > largest:
        raise UsageError(f"--lr must be at most {largest:.3g} (half the largest float32: the update's 2·lr must "
                         f"fit), got {args.lr:g}")
    if not 0.0 <= args.test_size < 1.0:
        raise UsageError(f"--test-size must be in [0, 1), got {args.test_size}")
    n = n_train_rows(args.test_size)
    sizes = tuple(dict.fromkeys(n if b == FULL_BATCH else b for b in args.batch_size))  # duplicates dropped
    check_positive("--batch-size", sizes)
    too_big = [b for b in sizes if b > n]
    if too_big:
        raise UsageError(f"--batch-size {too_big[0]} is larger than the {n} training rows (use n for full batch)")
    check_choice("--implementation", args.implementation, IMPLEMENTATIONS)
    check_positive("--epochs", [args.epochs])
    check_positive("--seeds", [args.seeds])
    if args.seeds > 2**32:
        raise UsageError(f"--seeds must be at most 2**32 (seeds 0..N-1 are 32-bit), got {args.seeds}")
    if not (math.isfinite(args.target_ratio) and args.target_ratio > 1):  # the optimum is the least loss there is
        raise UsageError(f"--target-ratio must be > 1 (a multiple of the least-squares optimum), "
                         f"got {args.target_ratio}")
    check_choice("--normalize", args.normalize, NORMALIZATIONS)
    device = str(resolve_device(args.device))  # 'auto' resolved; an index (cuda:1) kept
    return BatchSizeConfig(batch_sizes=sizes, implementations=tuple(dict.fromkeys(args.implementation)),
                           epochs=args.epochs, seeds=args.seeds, lr=args.lr, normalize=args.normalize,
                           test_size=args.test_size, device=device, target_ratio=args.target_ratio)


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


def steps_per_epoch(n: int, batch_size: int) -> int:
    """⌈n / batch_size⌉: the last step of an epoch takes the remaining rows."""
    return -(-n // batch_size)


def decomposition(trainer: Trainer, steps: int, epochs: int, device) -> dict[str, float]:
    """Mean seconds per step spent in data fetch, forward, backward and update, over `epochs` instrumented epochs."""
    sections = Sections(device)
    for _ in range(epochs):
        trainer.instrumented_epoch(sections)
    return {f"step_{name}_s": watch.total_s / (steps * epochs) for name, watch in sections.watches.items()}


def time_to_target(curve: pd.DataFrame, target: float) -> tuple[float, int | None]:
    """(training seconds, epoch) at which train_loss first is <= target; (nan, None) when it never is."""
    reached = curve[curve["train_loss"] <= target]
    if reached.empty:
        return math.nan, None
    first = reached.iloc[0]
    return float(first["elapsed_s"]), int(first["epoch"])


def train_run(implementation: str, data, batch_size: int, seed: int, cfg: BatchSizeConfig,
              device: torch.device) -> pd.DataFrame:
    """One run: warm-up, timed training with per-epoch evaluation off the clock, then the instrumented pass."""
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    spare = make_trainer(implementation, x, y, batch_size, seed, cfg.lr)
    warmup(spare.epoch, cfg.warmup_epochs, device)
    trainer = make_trainer(implementation, x, y, batch_size, seed, cfg.lr)
    initial = full_mse(x, y, *trainer.params())
    clock, waits, rows, diverged = Stopwatch(device), RunWait(device), [], False
    with waits:  # the run's share of time spent waiting for a CPU: read before and after its loop only
        for epoch in range(1, cfg.epochs + 1):
            with clock:
                trainer.epoch()
            eval_clock = Stopwatch(device)
            with eval_clock:
                w, b = trainer.params()
                train_loss = full_mse(x, y, w, b)
                test_loss = full_mse(x_test, y_test, w, b) if data.has_test else math.nan
            rows.append({"epoch": epoch, "train_loss": train_loss, "test_loss": test_loss,
                         "elapsed_s": clock.total_s, "eval_s": eval_clock.total_s})
            diverged = not math.isfinite(train_loss) or train_loss > cfg.blowup * initial
            if diverged:
                break
    df = pd.DataFrame(rows)
    df["diverged"] = diverged
    df["diverged_epoch"] = pd.array([len(df) if diverged else None] * len(df), dtype="Int64")
    df["cpu_wait"] = math.nan if waits.cpu_wait is None else waits.cpu_wait
    steps = steps_per_epoch(len(x), batch_size)
    sample_epochs = steps_per_epoch(cfg.decomposition_steps, steps)
    split = decomposition(make_trainer(implementation, x, y, batch_size, seed, cfg.lr), steps, sample_epochs, device)
    return df.assign(implementation=implementation, batch_size=batch_size, seed=seed, steps_per_epoch=steps, **split)


def units(cfg: BatchSizeConfig) -> int:
    """How many progress steps `run` reports: one per (implementation, batch size, seed)."""
    return len(cfg.implementations) * len(cfg.batch_sizes) * cfg.seeds


def run(cfg: BatchSizeConfig, progress=None) -> pd.DataFrame:
    """Every (implementation, batch size, seed) of the grid; tidy rows (run × epoch) with time-to-target."""
    device = resolve_device(cfg.device)
    data = load_boston(cfg.normalize, cfg.test_size, seed=0)
    if max(cfg.batch_sizes) > len(data.x_train):
        raise UsageError(f"batch size {max(cfg.batch_sizes)} is larger than the {len(data.x_train)} training rows")
    optimum = least_squares_mse(data.x_train, data.y_train)
    target = cfg.target_ratio * optimum
    parts = []
    for implementation in cfg.implementations:
        for batch_size in cfg.batch_sizes:
            for seed in range(cfg.seeds):
                part = train_run(implementation, data, batch_size, seed, cfg, device)
                seconds, epoch = time_to_target(part, target)
                part["time_to_target_s"] = seconds
                part["epoch_to_target"] = pd.array([epoch] * len(part), dtype="Int64")
                parts.append(part)
                if progress is not None:
                    progress(1)
    df = pd.concat(parts, ignore_index=True)
    return df.assign(device=device.type, lr=cfg.lr, epochs=cfg.epochs, normalize=cfg.normalize,
                     test_size=cfg.test_size, data_source=data.source, n_train=len(data.x_train),
                     optimum_loss=optimum, target_loss=target)


CAMPAIGN_THREADS = 1  # the campaign's torch threads: a model this small only loses time to threading
PROFILES = {  # the campaign `python -m amal.report` runs when the store is empty
    "quick": BatchSizeConfig(batch_sizes=(1, 8, 64, 506), epochs=100, seeds=2, decomposition_steps=256),
    "full": BatchSizeConfig(),
}


STEP_PARTS = ("data", "forward", "backward", "update")  # the instrumented pass's split of a step


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One line per (implementation, batch size): final loss (over the seeds that did not diverge: an exploded loss
    is no result), how many seeds diverged (and the first epoch one was stopped at), training time, time per step,
    time to target (over the seeds that reached it; 'not reached' where none did), how many seeds reached it and ran,
    and the step split (means over seeds). Written as the report writes them: three significant figures, a time with
    its unit (220 µs, not 0.0002), '–' where there is no value."""
    last = df.sort_values("epoch").groupby(["implementation", "batch_size", "seed"]).tail(1)
    last = last.assign(us_per_step=1e6 * last["elapsed_s"] / (last["epoch"] * last["steps_per_epoch"]),
                       train_loss=last["train_loss"].where(~last["diverged"].eq(True)))
    table = last.groupby(["implementation", "batch_size"]).agg(
        final_mse=("train_loss", "mean"), train_time_s=("elapsed_s", "mean"), us_per_step=("us_per_step", "mean"),
        time_to_target_s=("time_to_target_s", "mean"), reached=("epoch_to_target", "count"), runs=("seed", "size"),
        **{part: (f"step_{part}_s", "mean") for part in STEP_PARTS})
    stopped = last[last["diverged"].eq(True)].groupby(["implementation", "batch_size"])["epoch"]
    diverged = [f"{integer(n)}/{integer(runs)} at epoch {integer(first)}" if n else "–" for n, first, runs in zip(
        stopped.size().reindex(table.index, fill_value=0), stopped.min().reindex(table.index), table["runs"],
        strict=True)]
    return pd.DataFrame({
        "implementation": table.index.get_level_values("implementation"),
        "batch size": [integer(size) for size in table.index.get_level_values("batch_size")],
        "final MSE": [number(loss) for loss in table["final_mse"]],
        "diverged": diverged,
        "training time": [seconds(elapsed) for elapsed in table["train_time_s"]],
        "µs/step": [number(us) for us in table["us_per_step"]],
        "time to target": [seconds(s) if n else "not reached" for s, n in zip(table["time_to_target_s"],
                                                                               table["reached"], strict=True)],
        "reached": [integer(n) for n in table["reached"]],
        "seeds": [integer(n) for n in table["runs"]],
        **{f"{part} µs/step": [number(1e6 * s) for s in table[part]] for part in STEP_PARTS},
    })


def case(implementation: str, batch_size: int, epochs: int, device: str = "cpu", lr: float = BatchSizeConfig.lr):
    """Benchmark case: one round = `epochs` training epochs (no evaluation), continuing from the previous round."""
    from amal.cases import Case

    def setup():
        dev = torch.device(device)
        data = load_boston("minmax")
        trainer = make_trainer(implementation, data.x_train.to(dev), data.y_train.to(dev), batch_size, 0, lr)

        def one_round():
            for _ in range(epochs):
                trainer.epoch()

        return synced(one_round, dev)

    params = {"experiment": NAME, "implementation": implementation, "batch_size": batch_size, "epochs": epochs,
              "lr": lr, "normalize": "minmax", "n_train": 506, "device": device, "data_source": BOSTON_SOURCE}
    return Case(f"{NAME}/{implementation}/b{batch_size}/{device}", NAME, setup, params, device)


def bench_cases(profile: str) -> list:
    """quick: batch sizes 1, 16, 506 for 5 epochs a round; full: the whole grid for 1000 epochs; cpu and cuda."""
    sizes, epochs = ((1, 16, 506), 5) if profile == "quick" else (BatchSizeConfig.batch_sizes, 1000)
    return [case(impl, b, epochs, device) for device in ("cpu", "cuda") for impl in IMPLEMENTATIONS for b in sizes]


def notes(df: pd.DataFrame, cfg) -> list[str]:
    """What the CLI says on stderr after the summary: the runs whose threads waited for a CPU (other processes)."""
    runs = df.groupby(["implementation", "batch_size", "seed"], sort=True)["cpu_wait"].first()
    return waited_note(runs, lambda run: f"{run[0]}, batch size {integer(run[1])}, seed {integer(run[2])}",
                       int(df["num_threads"].iloc[0]))
