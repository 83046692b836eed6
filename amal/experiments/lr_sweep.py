"""TP1: full-batch gradient descent with the hand-written Linear/MSE, over a grid of learning rates (seed Fig. 1)."""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from amal.data import BOSTON_SOURCE, NORMALIZATIONS, Regression, load_boston
from amal.errors import UsageError
from amal.experiments.options import MAX_EPOCHS, check_choice, check_positive, check_seed, floats, waited_note
from amal.functions import full_mse, manual_step
from amal.report.format import integer, number, seconds
from amal.timing import RunWait, Stopwatch, warmup

NAME = "lr-sweep"
# a run not stopped whose last loss is above GROWING x its lowest was diverging when it ended: below lr*, gradient
# descent never raises this quadratic loss (the report counts such a run as diverging too)
GROWING = 1.01


@dataclass(frozen=True)
class LrSweepConfig:
    lrs: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.26, 0.27, 0.3)  # learning rates to try
    epochs: int = 1000  # full-batch steps per run (1 epoch = 1 step)
    normalize: str = "minmax"  # feature scaling: minmax, zscore or none
    test_size: float = 0.0  # held-out fraction (0: train on all 506 rows, as the seed does)
    seed: int = 0  # seeds the initial weights and the split
    blowup: float = 1e6  # a loss above blowup x the initial loss counts as divergence
    warmup_steps: int = 5  # uncounted steps on a copy of the weights before timing


def add_arguments(parser) -> None:
    parser.add_argument("--lr", type=floats, default=LrSweepConfig.lrs, metavar="LR[,LR...]",
                        help=f"learning rates, comma-separated (default: {','.join(map(str, LrSweepConfig.lrs))})")
    parser.add_argument("--epochs", type=int, default=LrSweepConfig.epochs,
                        help="epochs per run (default: %(default)s)")
    parser.add_argument("--normalize", default=LrSweepConfig.normalize,
                        help="feature scaling: minmax, zscore or none (default: %(default)s)")
    parser.add_argument("--test-size", type=float, default=LrSweepConfig.test_size,
                        help="held-out fraction, 0 trains on all rows (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=LrSweepConfig.seed, help="seed (default: %(default)s)")


def config_from_args(args) -> LrSweepConfig:
    """Validated config from parsed arguments; UsageError for values no run can use."""
    cfg = LrSweepConfig(lrs=tuple(dict.fromkeys(args.lr)), epochs=args.epochs, normalize=args.normalize,  # once each
                        test_size=args.test_size, seed=args.seed)
    check_positive("--lr", cfg.lrs)
    check_positive("--epochs", [cfg.epochs], MAX_EPOCHS)
    check_choice("--normalize", cfg.normalize, NORMALIZATIONS)
    if not 0.0 <= cfg.test_size < 1.0:
        raise UsageError(f"--test-size must be in [0, 1), got {cfg.test_size}")
    check_seed("--seed", cfg.seed)
    return cfg


def init_params(n_features: int, n_outputs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W ~ N(0, 1/n) (seeded), b = 0."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n_features, n_outputs, generator=gen) / math.sqrt(n_features)
    return w, torch.zeros(n_outputs)


def lr_max_theory(x: torch.Tensor) -> float:
    """2 / λ_max(H) for MSE = (1/q)‖XW + b − Y‖², whose Hessian in (W, b) is H = (2/q)·[X 1]ᵀ[X 1]."""
    a = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    hessian = 2.0 / len(x) * a.T @ a
    return 2.0 / torch.linalg.eigvalsh(hessian).max().item()


def train_one(data: Regression, lr: float, cfg: LrSweepConfig) -> pd.DataFrame:
    """Gradient descent at one learning rate; stops at divergence. One row per epoch completed."""
    w, b = init_params(data.x_train.shape[1], data.y_train.shape[1], cfg.seed)
    x, y = data.x_train, data.y_train
    w_spare, b_spare = w.clone(), b.clone()
    warmup(lambda: manual_step(x, y, w_spare, b_spare, lr), cfg.warmup_steps)
    initial = full_mse(x, y, w, b)
    clock, waits = Stopwatch(), RunWait()
    rows = []
    with waits:  # the run's share of time spent waiting for a CPU: read before and after its loop only
        for epoch in range(1, cfg.epochs + 1):
            with clock:
                manual_step(x, y, w, b, lr)
            eval_clock = Stopwatch()  # a fresh one each epoch: eval_s is this epoch's evaluation time
            with eval_clock:
                train_loss = full_mse(x, y, w, b)
                test_loss = full_mse(data.x_test, data.y_test, w, b) if data.has_test else math.nan
            diverged = not math.isfinite(train_loss) or train_loss > cfg.blowup * initial
            rows.append({"epoch": epoch, "train_loss": train_loss, "test_loss": test_loss,
                         "elapsed_s": clock.total_s, "eval_s": eval_clock.total_s})
            if diverged:
                break
    df = pd.DataFrame(rows)
    df["diverged"] = diverged
    df["diverged_epoch"] = pd.array([epoch if diverged else None] * len(df), dtype="Int64")
    df["cpu_wait"] = math.nan if waits.cpu_wait is None else waits.cpu_wait
    return df


CAMPAIGN_THREADS = 1  # the campaign's torch threads: a model this small only loses time to threading
PROFILES = {  # the campaign `python -m amal.report` runs when the store is empty
    "quick": LrSweepConfig(),
    "full": LrSweepConfig(lrs=(0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.26, 0.265, 0.27, 0.28, 0.3)),
}


def units(cfg: LrSweepConfig) -> int:
    """How many progress steps `run` reports: one per learning rate."""
    return len(cfg.lrs)


def run(cfg: LrSweepConfig, progress=None) -> pd.DataFrame:
    """Every learning rate of the grid on normalised Boston Housing; tidy rows (lr × epoch)."""
    data = load_boston(cfg.normalize, cfg.test_size, cfg.seed)
    bound = lr_max_theory(data.x_train)
    parts = []
    for lr in cfg.lrs:
        part = train_one(data, lr, cfg)
        part["lr"] = lr
        parts.append(part)
        if progress is not None:
            progress(1)
    df = pd.concat(parts, ignore_index=True)
    return df.assign(implementation="manual", seed=cfg.seed, device="cpu", epochs=cfg.epochs,
                     normalize=cfg.normalize, test_size=cfg.test_size, data_source=data.source,
                     n_train=len(data.x_train), lr_max_theory=bound)


def bench_cases(profile: str) -> list:
    """Benchmark cases (amal.cases): hand-written full-batch gradient descent, 100 (quick) or 1000 epochs."""
    from amal.cases import Case

    epochs = 100 if profile == "quick" else 1000
    lr = 0.1

    def setup():
        data = load_boston("minmax")
        w, b = init_params(data.x_train.shape[1], 1, seed=0)

        def one_round():
            for _ in range(epochs):
                manual_step(data.x_train, data.y_train, w, b, lr)

        return one_round

    params = {"experiment": "lr-sweep", "implementation": "manual", "batch_size": 506, "epochs": epochs, "lr": lr,
              "normalize": "minmax", "data_source": BOSTON_SOURCE}
    return [Case("lr-sweep/manual/cpu", "lr-sweep", setup, params)]


def growth(losses: pd.Series) -> float:
    """A run's last finite loss over its lowest (above GROWING: diverging when it ended); NaN without a finite loss."""
    finite = losses[np.isfinite(losses)]
    return finite.iloc[-1] / finite.min() if len(finite) else math.nan


def result(diverged: bool, epoch, final: float, grown: float) -> str:
    """'diverged at epoch 31', 'final MSE 27.0', or 'final MSE 17,900, 28.3× its lowest: diverging': the loss and its
    growth to three significant figures, as the report writes them (27 beside 55.75 read as different precisions)."""
    if diverged:
        return f"diverged at epoch {integer(epoch)}"
    growing = f", {number(grown)}× its lowest: diverging" if grown > GROWING else ""
    return f"final MSE {number(final)}{growing}"


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One line per learning rate: final loss or the epoch of divergence, training time, and lr* = 2/λmax(H), each
    written as the report writes it (lr* to four significant figures: 0.2652, 3.195e-06)."""
    ordered = df.sort_values(["lr", "epoch"])
    last = ordered.groupby("lr").tail(1)
    grown = ordered.groupby("lr")["train_loss"].agg(growth)  # indexed by lr
    return pd.DataFrame({
        "lr": [number(lr) for lr in last["lr"]],
        "result": [result(r.diverged, r.diverged_epoch, r.train_loss, grown[r.lr]) for r in last.itertuples()],
        "training time": [seconds(elapsed) for elapsed in last["elapsed_s"]],
        "lr* = 2/λmax(H)": [number(bound, 4) for bound in last["lr_max_theory"]],
    })


def notes(df: pd.DataFrame, cfg) -> list[str]:
    """What the CLI says on stderr after the summary: the runs whose threads waited for a CPU (other processes)."""
    runs = df.groupby("lr", sort=True)["cpu_wait"].first()
    return waited_note(runs, lambda lr: f"lr {number(lr)}", int(df["num_threads"].iloc[0]))
