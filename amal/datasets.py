"""torch Datasets over the loaded data: MNIST digits as flat float vectors for the autoencoder (TP3)."""

import numpy as np
import torch
from torch.utils.data import Dataset

PIXELS = 28 * 28  # length of one flattened MNIST image


def are_digit_images(images: np.ndarray) -> bool:
    """Whether `images` is what every MNIST copy is read as: uint8 images of 28 × 28 pixels, shape (N, 28, 28)."""
    return images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28)


class MnistVectors(Dataset):
    """MNIST images as flat float32 vectors of 784 pixels in [0, 1] (pixel / 255); item i is one image."""

    def __init__(self, images: np.ndarray):
        if not are_digit_images(images):
            raise ValueError(f"expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
        # converted once here, so an item is a view of one row: the DataLoader's per-item cost stays an index
        self.vectors = torch.from_numpy(np.ascontiguousarray(images)).reshape(len(images), PIXELS).float().div_(255.0)

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.vectors[index]
