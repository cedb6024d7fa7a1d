"""The embedded segmentation default: seeded bright shapes in noise, with their masks.

Each image holds one to three discs (2D) or balls (3D) of random radius and
place on a noisy background; the mask labels their voxels 1. Contrast and
noise are set so that a small UNet segments them well in a few rounds while a
threshold on intensity alone does not (the noise overlaps the shapes'
brightness). Nothing is read from disk.
"""

from __future__ import annotations

import numpy as np

from flowerbed.datasets.base import Dataset, ImageSet

MAX_SHAPES = 3
CONTRAST = 0.5
NOISE = 0.2


def make_synthetic_segmentation(
    spatial_dims: int = 2, size: int = 32, n_train: int = 1600, n_test: int = 400, seed: int = 0
) -> Dataset:
    """A train and a test set of ``size``-per-axis images with two labels (0 background)."""
    rng = np.random.default_rng(seed)
    return Dataset(
        train=_draw(rng, spatial_dims, size, n_train),
        test=_draw(rng, spatial_dims, size, n_test),
        num_classes=2,
    )


def _draw(rng: np.random.Generator, spatial_dims: int, size: int, count: int) -> ImageSet:
    grid = np.stack(np.meshgrid(*[np.arange(size)] * spatial_dims, indexing="ij"), axis=-1)
    images = np.empty((count, 1, *[size] * spatial_dims), dtype=np.float32)
    masks = np.zeros((count, *[size] * spatial_dims), dtype=np.int64)
    for index in range(count):
        for _ in range(rng.integers(1, MAX_SHAPES + 1)):
            radius = rng.uniform(0.08, 0.2) * size
            centre = rng.uniform(radius, size - radius, size=spatial_dims)
            inside = ((grid - centre) ** 2).sum(-1) <= radius**2
            masks[index][inside] = 1
        noise = rng.normal(0, NOISE, size=masks[index].shape)
        images[index, 0] = np.clip(0.25 + CONTRAST * masks[index] + noise, 0, 1)
    return ImageSet(images, masks)
