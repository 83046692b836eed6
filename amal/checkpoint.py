"""Checkpoints: one plain dict (tensors and plain Python values only) saved atomically, loaded with weights_only.

Because the file holds no pickled code, `torch.load(weights_only=True)` reads it and refuses anything else; the RNG
states are stored as tensors and plain numbers so that they pass that check too.
"""

import io
import math
import os
import pickle
import random
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from amal.errors import UsageError
from amal.files import atomic_write_bytes

FORMAT = "amal-checkpoint/1"  # bumped when the layout changes; older files are refused, not misread
REQUIRED = ("format", "model", "optimizer", "epoch", "iteration", "config", "rng")
TYPES = {"model": dict, "optimizer": dict, "epoch": int, "iteration": int, "config": dict, "rng": dict}


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every random state a training run draws from: torch CPU/CUDA, NumPy, Python, and the loader's generator."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        # only where CUDA is in use: asking would start it (a second and GPU memory) in a CPU run on a GPU machine
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss_next": gauss_next},
        "loader": generator.get_state() if generator is not None else None,
    }


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what rng_state() saved (the CUDA part only where the same number of GPUs is present)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
    if generator is not None and state["loader"] is not None:
        generator.set_state(state["loader"])


def save_checkpoint(path: str | Path, checkpoint: dict) -> Path:
    """Serialise in memory, then temp file + rename: a kill leaves the previous checkpoint or this one, never half."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **checkpoint}, buffer)
    return atomic_write_bytes(Path(path), buffer.getvalue(), overwrite=True)


def file_state(path: Path) -> tuple | None:
    """What tells one version of a file from the next: its modification time and size (not its inode number, which
    vfat, exFAT and some FUSE file systems make up anew when they read the file back), or None when there is none."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


class CheckpointFile:
    """The checkpoint a run writes after each epoch. It replaces only the version it read (a resumed run) or wrote
    last, or none (a fresh run): two runs given one path would otherwise overwrite each other's file in turn,
    each ending with the other's state. The later one to write stops with a UsageError."""

    def __init__(self, path: str | Path, resume: bool):
        self.path = Path(path)
        self.known = file_state(self.path) if resume else None  # the version this run starts from
        self.written = False

    def save(self, checkpoint: dict) -> None:
        if file_state(self.path) != self.known:
            since = "last wrote it" if self.written else "started"
            raise UsageError(f"checkpoint {self.path} was written by another process since this run {since} (two "
                             "runs given one --checkpoint?): stopped, that file left as it is")
        save_checkpoint(self.path, checkpoint)
        self.known, self.written = file_state(self.path), True


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, read with weights_only=True; UsageError (one line) for unsafe, corrupt or foreign files.

    torch.save writes a zip archive whose members carry CRC-32 checksums, which torch.load does not verify: they are
    checked first, so that a file damaged on disk is refused instead of trained on."""
    path = Path(path)
    check_archive(path)
    try:
        with warnings.catch_warnings():  # torch warns (several lines) about some files it then refuses
            warnings.filterwarnings("ignore", category=UserWarning, module="torch")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():  # the weights-only unpickler met a class or function: code
            raise UsageError(f"checkpoint {path} holds pickled objects other than tensors and plain data; "
                             "refusing to load it (nothing from it was run)") from exc
        raise UsageError(f"checkpoint {path} is corrupt or not a torch checkpoint") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UsageError(f"checkpoint {path} is truncated or corrupt ({exc.__class__.__name__})") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UsageError(f"checkpoint {path} is not an amal checkpoint of format {FORMAT}")
    missing = [key for key in REQUIRED if key not in checkpoint]
    if missing:
        raise UsageError(f"checkpoint {path} lacks {', '.join(missing)}")
    wrong = [key for key, kind in TYPES.items()
             if not isinstance(checkpoint[key], kind) or isinstance(checkpoint[key], bool)]
    wrong += [key for key in ("epoch", "iteration") if key not in wrong and checkpoint[key] < 0]
    elapsed = checkpoint.get("elapsed_s", 0.0)
    if isinstance(elapsed, bool) or not isinstance(elapsed, int | float) or not 0 <= elapsed < math.inf:
        wrong.append("elapsed_s")
    if wrong:
        raise UsageError(f"checkpoint {path} holds {', '.join(wrong)} of the wrong type or value")
    return checkpoint


def check_archive(path: Path) -> None:
    """UsageError unless `path` is a zip archive (torch.save's format) whose every member matches its checksum."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except FileNotFoundError as exc:
        raise UsageError(f"checkpoint {path} does not exist") from exc
    except zipfile.BadZipFile as exc:
        raise UsageError(f"checkpoint {path} is truncated, corrupt or not a torch checkpoint "
                         "(not a zip archive as torch.save writes)") from exc
    except (OSError, EOFError, ValueError, NotImplementedError, zlib.error) as exc:  # unreadable members
        raise UsageError(f"checkpoint {path} is corrupt ({exc.__class__.__name__})") from exc
    if damaged is not None:
        raise UsageError(f"checkpoint {path} is corrupt: its member {damaged} fails its checksum")


def check_config(path: str | Path, saved: dict, requested: dict, keys: tuple[str, ...]) -> None:
    """UsageError naming the first of `keys` whose saved value differs from the requested one (a sequence written as
    its option takes it: hidden=256,64)."""
    def shown(value) -> str:
        return ",".join(map(str, value)) if isinstance(value, list | tuple) else repr(value)

    for key in keys:
        if saved.get(key) != requested.get(key):
            raise UsageError(f"checkpoint {path} was made with {key}={shown(saved.get(key))}, "
                             f"this run asks for {key}={shown(requested.get(key))}")
