"""Training-time augmentation as MONAI transforms: flips, small rotations, intensity jitter.

Off by default (``[data] augment``): the benchmarks compare strategies on the
data as it is. Each image of a training batch is transformed on its own; a
mask takes every spatial transform its image takes (nearest neighbour, so
labels stay labels) and no intensity one. The random draws are seeded per
round, so a seeded run repeats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from monai.transforms import (
    Compose,
    RandFlipd,
    RandRotated,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from monai.utils import convert_to_tensor

from flowerbed.catalogue import SEGMENTATION

MAX_ROTATION = math.radians(10)
FLIP, ROTATE, JITTER = 0.5, 0.5, 0.5  # each transform's probability per image
Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def augmenter(task: str, seed: int) -> Augment:
    """A batch augmentation for ``task``, its draws seeded by ``seed``."""
    transforms: dict[int, Compose] = {}  # by spatial dimensions, made on first use
    segments = task == SEGMENTATION

    def augment(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dims = images.ndim - 2
        if dims not in transforms:
            transforms[dims] = _transform(dims, segments).set_random_state(seed)
        out_images, out_labels = [], []
        for image, label in zip(images, labels, strict=True):
            item = {"image": image, "label": label[None].float()} if segments else {"image": image}
            done = transforms[dims](item)
            out_images.append(convert_to_tensor(done["image"], track_meta=False))
            if segments:
                out_labels.append(convert_to_tensor(done["label"], track_meta=False)[0].long())
        return torch.stack(out_images), torch.stack(out_labels) if segments else labels

    return augment


def _transform(dims: int, segments: bool) -> Compose:
    spatial = ["image", "label"] if segments else ["image"]
    modes = ("bilinear", "nearest") if segments else ("bilinear",)
    return Compose(
        [
            *[RandFlipd(spatial, prob=FLIP, spatial_axis=axis) for axis in range(dims)],
            RandRotated(
                spatial, range_x=MAX_ROTATION, prob=ROTATE, mode=modes, padding_mode="border"
            ),
            RandScaleIntensityd("image", factors=0.1, prob=JITTER),
            RandShiftIntensityd("image", offsets=0.05, prob=JITTER),
        ]
    )
