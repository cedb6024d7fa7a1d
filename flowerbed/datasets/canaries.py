"""Canaries: mislabelled copies of a site's own images, each trained on with probability 1/2.

For the one-run privacy audit (Steinke, Nasr and Jagielski, NeurIPS 2023;
``privacy.canary_audit``). A site sets aside ``count`` of its training
images, gives each a wrong label (the next class), and flips a fair coin
per canary: heads, the mislabelled copy joins its training set; tails, it is
left out. The original images are left out either way, so a canary's only
trace in the model is its own inclusion. A model that memorises its
training data fits the wrong labels of the canaries it saw; DP-SGD bounds
how well anyone can tell which those were. The coins are seeded by the run
and the site, so every round (each a fresh process when deployed) plants
the same canaries; they never leave the site, only the bound computed from
them does.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from flowerbed.catalogue import CLASSIFICATION
from flowerbed.datasets.base import Canaries, Images, Relabel, SiteData


@dataclass(frozen=True)
class Mislabelled:
    """``base`` with the label of each example where ``flip`` is set moved to the next class."""

    base: Images
    flip: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return len(self.base)

    @property
    def task(self) -> str:
        return self.base.task

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.base.sample_shape

    def strata(self) -> np.ndarray:
        return self.base.strata()

    def subset(self, indices: np.ndarray) -> Mislabelled:
        return Mislabelled(self.base.subset(indices), self.flip[indices], self.num_classes)

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.base.batch(indices)
        flip = torch.from_numpy(self.flip[indices])
        return images, torch.where(flip, (labels + 1) % self.num_classes, labels)

    def as_torch(self) -> TorchDataset:
        return _MislabelledTorch(self.base.as_torch(), self.flip, self.num_classes)

    def relabelled(self, change: Relabel) -> Mislabelled:
        return Mislabelled(self.base.relabelled(change), self.flip, self.num_classes)


class _MislabelledTorch(TorchDataset):
    """What Opacus's loader reads: the base set's examples, flipped labels moved on."""

    def __init__(self, base: TorchDataset, flip: np.ndarray, num_classes: int) -> None:
        self.base, self.flip, self.num_classes = base, flip, num_classes

    def __len__(self) -> int:
        return len(self.flip)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.base[index]
        return image, (label + 1) % self.num_classes if self.flip[index] else label


def plant_canaries(data: SiteData, count: int, seed: int, site: str) -> SiteData:
    """``data`` with ``count`` canaries planted in its training set (at most half of it), and
    the canaries and their coins kept beside it; unchanged for segmentation (a mask has no
    single label to get wrong) or ``count`` 0."""
    train = data.train
    count = min(count, len(train) // 2)
    if count == 0 or data.task != CLASSIFICATION:
        return data
    rng = np.random.default_rng([seed, zlib.crc32(site.encode())])
    chosen = np.sort(rng.choice(len(train), count, replace=False))
    members = rng.random(count) < 0.5
    keep = np.ones(len(train), dtype=bool)
    keep[chosen[~members]] = False
    flip = np.zeros(len(train), dtype=bool)
    flip[chosen[members]] = True
    planted = Mislabelled(train, flip, data.num_classes).subset(np.flatnonzero(keep))
    canaries = Mislabelled(train.subset(chosen), np.ones(count, dtype=bool), data.num_classes)
    return replace(data, train=planted, canaries=Canaries(canaries, members))
