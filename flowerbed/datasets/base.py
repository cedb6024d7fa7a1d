"""In-memory image sets: what every reader returns and every site trains on.

Images are float32, channels first (N, C, H, W) or (N, C, H, W, D), scaled to
[0, 1]. Labels say which task the set is for: int64 class indices (N,) for
classification, or int64 per-voxel labels (N, H, W[, D]) for segmentation,
one mask per image on the image's own grid. Arrays make partitioning exact
and cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from flowerbed.catalogue import CLASSIFICATION, SEGMENTATION


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def task(self) -> str:
        """Segmentation when each image has a mask, classification when it has one label."""
        return SEGMENTATION if self.labels.ndim > 1 else CLASSIFICATION

    def strata(self) -> np.ndarray:
        """One class per example, for splitting: its label, or its mask's highest label.

        Label-skewed partitions (Dirichlet) need a class per example; for masks
        the highest label present is the rarest structure the image shows.
        """
        if self.task == CLASSIFICATION:
            return self.labels
        return self.labels.reshape(len(self.labels), -1).max(axis=1)

    def subset(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices])

    def as_torch(self) -> TensorDataset:
        return TensorDataset(torch.from_numpy(self.images), torch.from_numpy(self.labels))


@dataclass(frozen=True)
class Dataset:
    """A whole dataset before it is split across sites; ``test`` None means hold one out."""

    train: ImageSet
    test: ImageSet | None
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])

    @property
    def task(self) -> str:
        return self.train.task


@dataclass(frozen=True)
class SiteData:
    """One site's own data: what it trains on and its held-out test split."""

    train: ImageSet
    test: ImageSet
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])

    @property
    def task(self) -> str:
        return self.train.task
