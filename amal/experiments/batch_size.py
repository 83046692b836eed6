"""TP2: full batch, SGD and mini-batch on Boston Housing: loss per epoch and wall time per batch size (seed Fig. 2, 3).

Linear regression Ŷ = XW + b, MSE loss, plain SGD update W -= lr·∂C/∂W, written four ways (the `implementation`:
dataloader, tensor, manual, fused; amal.experiments.trainers says how each trains and how their losses compare).

A batch size above the number of training rows is refused (the word `n` in --batch-size means full batch).
"""

import argparse
import math
from dataclasses import dataclass

import pandas as pd
import torch

from amal.data import BOSTON_SOURCE, NORMALIZATIONS, least_squares_mse, load_boston
from amal.errors import UsageError
from amal.experiments.options import MAX_EPOCHS, check_choice, check_positive, waited_note, words
from amal.experiments.trainers import Trainer, make_trainer
from amal.functions import full_mse
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
    check_positive("--epochs", [args.epochs], MAX_EPOCHS)
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
