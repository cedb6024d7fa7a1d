"""Image sets: what every reader returns and every site trains on.

An image is float32, channels first (C, H, W) or (C, H, W, D), scaled to
[0, 1]. Labels say which task a set is for: an int64 class index per image
(classification), or int64 per-voxel labels (H, W[, D]) on the image's own
grid (segmentation). Two kinds of set hold them: ``ImageSet`` keeps arrays in
memory (synthetic data, MedMNIST, small manifests: partitioning is exact and
cheap), ``datasets.files.FileImageSet`` reads its files batch by batch (a
manifest larger than memory). Training, scoring and the content checks use
only what both offer (``Images``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import TensorDataset

from flowerbed.catalogue import CLASSIFICATION, SEGMENTATION

# A change of labels (a simulated fault's), applied to each batch's labels as read.
Relabel = Callable[[np.ndarray], np.ndarray]


class Images(Protocol):
    """What a site's training and scoring need of a set of images."""

    def __len__(self) -> int: ...

    @property
    def task(self) -> str: ...

    @property
    def sample_shape(self) -> tuple[int, ...]: ...

    def strata(self) -> np.ndarray: ...

    def subset(self, indices: np.ndarray) -> Images: ...

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]: ...

    def as_torch(self) -> TorchDataset: ...

    def relabelled(self, change: Relabel) -> Images: ...


@dataclass(frozen=True)
class ImageSet:
    """Images and labels held as arrays."""

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

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

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

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.images[indices]), torch.from_numpy(self.labels[indices])

    def as_torch(self) -> TensorDataset:
        return TensorDataset(torch.from_numpy(self.images), torch.from_numpy(self.labels))

    def relabelled(self, change: Relabel) -> ImageSet:
        return ImageSet(self.images, change(self.labels).astype(self.labels.dtype))


@dataclass(frozen=True)
class Dataset:
    """A whole dataset before it is split across sites; ``test`` None means hold one out."""

    train: Images
    test: Images | None
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.train.sample_shape

    @property
    def task(self) -> str:
        return self.train.task


@dataclass(frozen=True)
class Canaries:
    """A site's canaries (``datasets.canaries``), wrong labels in place, and which of them
    its training set holds: what its one-run privacy audit scores the model on."""

    images: Images
    members: np.ndarray


@dataclass(frozen=True)
class SiteData:
    """One site's own data: what it trains on and its held-out test split; and the canaries
    planted in its training set, if the federation audits with them."""

    train: Images
    test: Images
    num_classes: int
    canaries: Canaries | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.train.sample_shape

    @property
    def task(self) -> str:
        return self.train.task
