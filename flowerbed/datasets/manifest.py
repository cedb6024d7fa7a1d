"""Images, NIfTI volumes and DICOM listed in a CSV manifest.

The manifest has a ``path`` column (relative to the manifest's folder or
absolute) and either an integer ``label`` column (classification) or a
``mask`` column naming each image's mask file (segmentation: integer labels
per voxel, 0 the background, on the image's own grid). An optional
``split`` column (``train``/``test``) fixes the held-out set, otherwise one
is drawn per site. PNG/JPEG files give 2D images, ``.nii``/``.nii.gz`` 3D
volumes, a ``.dcm`` file a slice and a folder of ``.dcm`` files one series
as a volume (``flowerbed.datasets.dicom``); each is read as
``flowerbed.datasets.files`` reads one example.

A manifest whose images, once read, take at most ``IN_MEMORY_BYTES`` is read
whole into arrays: every epoch then costs no file reads. A larger one stays
on disk (``FileImageSet``) and is read batch by batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flowerbed.datasets.base import Dataset, Images, ImageSet
from flowerbed.datasets.files import Example, FileImageSet, read_example, read_file
from flowerbed.errors import DataError

TARGETS = ("label", "mask")  # one of them says the task: a class per image, or a mask
IN_MEMORY_BYTES = 512 * 2**20  # images read whole up to this; beyond, batch by batch
MANIFEST_IMAGE_SIZE = 32  # the MedMNIST size: a manifest's images are resized to it by default


def csv_manifest(source: str, sites: int, seed: int, image_size: int | None) -> Dataset:
    """The ``.csv`` reader of ``datasets.source``: a manifest, at ``MANIFEST_IMAGE_SIZE``
    unless told otherwise."""
    return load_manifest(Path(source), image_size or MANIFEST_IMAGE_SIZE)


def load_manifest(
    path: Path, image_size: int = MANIFEST_IMAGE_SIZE, in_memory: int = IN_MEMORY_BYTES
) -> Dataset:
    """Every example a manifest lists; ``DataError`` naming the file on any problem.

    ``in_memory`` is the most bytes of images read whole (see the module's note).
    """
    path = Path(path)
    table = _read_table(path)
    examples = _examples(path, table)
    first, _ = read_example(path, examples[0], image_size)
    if len(examples) * first.nbytes <= in_memory:
        images, labels = _read_whole(path, examples, image_size, first.shape)
        return _split(table, ImageSet(images, labels), int(labels.max()) + 1)
    strata = _strata(path, table, examples)
    whole = FileImageSet(path, tuple(examples), image_size, first.shape, strata)
    return _split(table, whole, int(strata.max()) + 1)


def _examples(path: Path, table: pd.DataFrame) -> list[Example]:
    images = [path.parent / entry for entry in table.path]
    if "mask" in table:
        return [
            Example(i, mask=path.parent / m) for i, m in zip(images, table["mask"], strict=True)
        ]
    labels = table.label.to_numpy(dtype=np.int64)
    return [Example(i, label=int(label)) for i, label in zip(images, labels, strict=True)]


def _read_whole(
    path: Path, examples: list[Example], image_size: int, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for example in examples:
        image, label = read_example(path, example, image_size)
        if image.shape != shape:
            raise DataError(
                f"{example.image}: shape {image.shape} after loading differs from {shape} "
                f"of {examples[0].image.name}; a manifest must hold images of one kind"
            )
        images.append(image)
        labels.append(label)
    return np.stack(images), np.asarray(np.stack(labels), dtype=np.int64)


def _strata(path: Path, table: pd.DataFrame, examples: list[Example]) -> np.ndarray:
    """Each example's class, or its mask's highest label (the masks read once, at their own
    size): what partitioning and the class count need, without holding any image."""
    if "label" in table:
        return table.label.to_numpy(dtype=np.int64)
    highest = [read_file(path, e.mask, "a mask").max() for e in examples if e.mask is not None]
    return np.asarray(highest).round().astype(np.int64)


def _split(table: pd.DataFrame, whole: Images, num_classes: int) -> Dataset:
    if "split" not in table:
        return Dataset(whole, None, num_classes)
    is_test = (table.split.str.lower() == "test").to_numpy()
    return Dataset(
        whole.subset(np.flatnonzero(~is_test)), whole.subset(np.flatnonzero(is_test)), num_classes
    )


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(
            f"{path}: no such file; pass a CSV manifest with columns path,label or path,mask"
        )
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({err}); fix the manifest") from None
    targets = [column for column in TARGETS if column in table]
    if "path" not in table or len(targets) != 1:
        raise DataError(
            f"{path}: a manifest has columns path and either label (classification) or mask "
            f"(segmentation); it has {', '.join(map(str, table.columns))}"
        )
    if table.empty:
        raise DataError(f"{path}: manifest lists no images")
    if "label" in table:
        labels = pd.to_numeric(table.label, errors="coerce")
        bad = labels.isna() | (labels < 0) | (labels % 1 != 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 2
            raise DataError(f"{path}: line {row}: label must be a non-negative integer class index")
    elif table["mask"].isna().any():
        row = int(np.flatnonzero(table["mask"].isna())[0]) + 2
        raise DataError(f"{path}: line {row}: names no mask file; every image needs its mask")
    if "split" in table and not table.split.str.lower().isin(["train", "test"]).all():
        raise DataError(f"{path}: split column may only hold 'train' or 'test'")
    return table
