"""The embedded default: a seeded, learnable synthetic imaging task, 2D or 3D.

Each class draws a bright Gaussian blob around its own centre on a noisy
background, so a small CNN gets well above chance in a round or two while
the task is not trivial (centres jitter, noise is strong). Nothing is read
from disk.
"""

from __future__ import annotations

import numpy as np

from flowerbed.datasets.base import Dataset, ImageSet

CHUNK_VOXELS = 2**20  # voxels drawn at a time: about 50 MB of float64 intermediates


def make_synthetic(
    spatial_dims: int = 2,
    size: int = 28,
    num_classes: int = 2,
    n_train: int = 1600,
    n_test: int = 400,
    seed: int = 0,
) -> Dataset:
    """A train and a test set of ``size``-pixel images, one channel, ``num_classes`` classes."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.3, 0.7, size=(num_classes, spatial_dims)) * size
    return Dataset(
        train=_draw(rng, centres, n_train, size),
        test=_draw(rng, centres, n_test, size),
        num_classes=num_classes,
    )


def _draw(rng: np.random.Generator, centres: np.ndarray, count: int, size: int) -> ImageSet:
    num_classes, spatial_dims = centres.shape
    labels = rng.integers(0, num_classes, size=count)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * spatial_dims, indexing="ij"), axis=-1)
    jitter = rng.normal(0, size / 10, size=(count, spatial_dims))
    centre = centres[labels] + jitter
    images = np.empty((count, 1, *[size] * spatial_dims), dtype=np.float32)
    # Chunks bound the float64 intermediates (offsets alone are 2-3x the images)
    # that, drawn whole, took 2.5 GB per process for 1000 sites; the noise is
    # drawn chunk after chunk from the same stream, so the images are unchanged.
    chunk = max(1, CHUNK_VOXELS // size**spatial_dims)
    for start in range(0, count, chunk):
        part = centre[start : start + chunk]
        offsets = grid[None] - part.reshape(len(part), *([1] * spatial_dims), spatial_dims)
        blob = np.exp(-(offsets**2).sum(-1) / (2 * (size / 8) ** 2))
        noise = rng.normal(0, 0.35, size=blob.shape)
        images[start : start + chunk, 0] = np.clip(0.2 + 0.6 * blob + noise, 0, 1)
    return ImageSet(images, labels.astype(np.int64))
