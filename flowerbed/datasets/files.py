"""One example read from its files, and a set of examples read batch by batch.

Reading goes through MONAI: ``LoadImage`` picks the reader (PIL for PNG and
JPEG, nibabel for NIfTI, pydicom for DICOM), ``EnsureChannelFirst`` gives one
layout, ``ScaleIntensity`` brings the image to [0, 1] and ``Resize`` to
``image_size`` per axis, its mask alike by nearest neighbour.
``FileImageSet`` keeps only the file names: its batches are read when asked
for, through MONAI's ``Dataset``, so a site's data never has to fit in
memory, and DP-SGD's Poisson sampling stays exact (Opacus draws a batch of
indices, then the loader reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from monai.data import Dataset as MonaiDataset
from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Resize, ScaleIntensity

from flowerbed.catalogue import CLASSIFICATION, SEGMENTATION
from flowerbed.datasets.base import Relabel
from flowerbed.datasets.dicom import is_dicom, is_inverted
from flowerbed.errors import DataError

SCALE = ScaleIntensity()  # to [0, 1], per image


@dataclass(frozen=True)
class Example:
    """Where one example lives: its image, and its mask file or its class."""

    image: Path
    mask: Path | None = None
    label: int | None = None


def _innermost(error: BaseException) -> str:
    """The message of the exception at the bottom of ``error``'s chain.

    MONAI's ``Compose`` re-raises a reader's failure as "applying transform <LoadImage
    object at 0x...>", which tells the user nothing; the reader's own words are innermost.
    """
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return str(error) or type(error).__name__


@lru_cache(maxsize=2)
def _loader(dicom: bool) -> Compose:
    """Made once per process: a set on disk reads every example every epoch."""
    reader = LoadImage(image_only=True, reader="PydicomReader" if dicom else None)
    return Compose([reader, EnsureChannelFirst()])


@lru_cache(maxsize=8)
def _resize(spatial_dims: int, image_size: int, mode: str) -> Resize:
    return Resize([image_size] * spatial_dims, mode=mode)


def read_file(manifest: Path, file: Path, what: str) -> np.ndarray:
    """``file`` as a channels-first float array at its own size, or a one-line ``DataError``."""
    if not file.exists():
        raise DataError(f"{file}: listed in {manifest.name} as {what} but no such file")
    try:
        array = np.asarray(_loader(is_dicom(file))(str(file)), dtype=np.float32)
    except Exception as err:  # MONAI wraps every reader failure differently
        reason = _innermost(err).splitlines()[0][:200]
        raise DataError(f"{file}: cannot be read as {what} ({reason})") from None
    if array.ndim not in (3, 4):
        raise DataError(
            f"{file}: has {array.ndim - 1} spatial axes after loading; expected 2 or 3 "
            "(2D images or 3D volumes, not 4D series)"
        )
    return array


def scaled(file: Path, image: np.ndarray, image_size: int) -> np.ndarray:
    """A read image in [0, 1], bright meaning dense, at ``image_size`` per axis."""
    if image.ndim == 3 and image.shape[0] == 4:
        image = image[:3]  # drop alpha
    bright = np.asarray(SCALE(image), dtype=np.float32)
    if is_dicom(file) and is_inverted(file):
        bright = 1.0 - bright  # MONOCHROME1: 0 is white; make bright mean dense everywhere
    return np.asarray(_resize(image.ndim - 1, image_size, "area")(bright), dtype=np.float32)


def mask_of(
    manifest: Path, mask_file: Path, image_file: Path, image: np.ndarray, image_size: int
) -> np.ndarray:
    """The mask of ``image_file`` (read as ``image``) as int64 labels at ``image_size``."""
    mask = read_file(manifest, mask_file, "a mask")
    if mask.shape[1:] != image.shape[1:] or mask.shape[0] != 1:
        raise DataError(
            f"{mask_file}: mask of shape {list(mask.shape[1:])} with {mask.shape[0]} channel(s) "
            f"does not fit image {image_file} of shape {list(image.shape[1:])}; a mask has one "
            "channel on its image's grid"
        )
    if (mask < 0).any() or not np.array_equal(mask, np.round(mask)):
        odd = mask[(mask < 0) | (mask != np.round(mask))].flat[0]
        raise DataError(
            f"{mask_file}: mask of image {image_file} holds {odd:g}, not an integer label; "
            "export masks as labels 0 (background), 1, 2, ..."
        )
    resized = _resize(mask.ndim - 1, image_size, "nearest")(mask)
    return np.asarray(resized, dtype=np.float32)[0].round().astype(np.int64)


def read_example(
    manifest: Path, example: Example, image_size: int
) -> tuple[np.ndarray, np.ndarray | int]:
    """One example as training takes it: the image, and its mask or class."""
    raw = read_file(manifest, example.image, "an image")
    image = scaled(example.image, raw, image_size)
    if example.mask is None:
        return image, int(example.label or 0)
    return image, mask_of(manifest, example.mask, example.image, raw, image_size)


@dataclass(frozen=True)
class FileImageSet:
    """Examples kept as file names, read batch by batch; never all in memory at once.

    ``strata`` holds each example's class (or its mask's highest label), read
    once when the manifest was opened; ``sample_shape`` the shape every image
    must have once read (one that differs is a ``DataError`` naming its file).
    """

    manifest: Path
    examples: tuple[Example, ...]
    image_size: int
    sample_shape: tuple[int, ...]
    stratum: np.ndarray
    relabel: Relabel | None = None

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def task(self) -> str:
        return SEGMENTATION if self.examples[0].mask is not None else CLASSIFICATION

    def strata(self) -> np.ndarray:
        return self.stratum

    def subset(self, indices: np.ndarray) -> FileImageSet:
        chosen = tuple(self.examples[int(i)] for i in indices)
        return FileImageSet(
            self.manifest, chosen, self.image_size, self.sample_shape, self.stratum[indices],
            self.relabel,
        )  # fmt: skip

    def example(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Example ``index`` read from its files, checked against the set's shape."""
        image, label = read_example(self.manifest, self.examples[index], self.image_size)
        if image.shape != self.sample_shape:
            raise DataError(
                f"{self.examples[index].image}: shape {list(image.shape)} after loading differs "
                f"from {list(self.sample_shape)}; a manifest must hold images of one kind"
            )
        labels = np.asarray(label, dtype=np.int64)
        if self.relabel is not None:
            labels = self.relabel(labels).astype(np.int64)
        return torch.from_numpy(image), torch.from_numpy(labels)

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        read = [self.example(int(i)) for i in indices]
        if not read:
            return torch.empty(0, *self.sample_shape), torch.empty(0, dtype=torch.int64)
        return torch.stack([r[0] for r in read]), torch.stack([r[1] for r in read])

    def as_torch(self) -> MonaiDataset:
        """MONAI's map-style ``Dataset``: index i reads example i when a loader asks."""
        return MonaiDataset(data=list(range(len(self))), transform=self.example)

    def relabelled(self, change: Relabel) -> FileImageSet:
        return FileImageSet(
            self.manifest, self.examples, self.image_size, self.sample_shape, self.stratum,
            change,
        )  # fmt: skip
