"""What a data set must hold before anything trains on it.

Readers check a file's form (keys, shapes, columns); this checks its content,
once per data set, before a simulation starts, a site folder is written, a
SuperNode is launched or a site answers the roll call. Data that fails here
would otherwise train to a loss of ``nan`` or to a one-class model and be
reported as a success.
"""

from __future__ import annotations

import numpy as np

from flowerbed.catalogue import SEGMENTATION
from flowerbed.datasets.base import Dataset, ImageSet
from flowerbed.errors import DataError

CHUNK = 4096  # images checked at a time: bounded memory for any data set size


def check_content(dataset: Dataset, source: str) -> None:
    """``DataError`` naming ``source`` and the fix if ``dataset`` cannot be trained on."""
    splits = {"training": dataset.train, "test": dataset.test}
    for split, images in splits.items():
        if images is not None:
            _check_images(images, split, source)
    _check_labels(dataset, source)


def _check_images(images: ImageSet, split: str, source: str) -> None:
    flat = images.images.reshape(len(images), -1)
    for start in range(0, len(flat), CHUNK):
        chunk = flat[start : start + CHUNK]
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            first = start + int(np.flatnonzero(~finite)[0])
            bad = int((~np.isfinite(flat)).any(axis=1).sum())
            raise DataError(
                f"{source}: {bad} {split} image(s) hold NaN or infinite pixel values "
                f"(the first is image {first}); export the images again or remove them"
            )
        constant = chunk.max(axis=1) == chunk.min(axis=1)
        if constant.any():
            first = start + int(np.flatnonzero(constant)[0])
            raise DataError(
                f"{source}: {split} image {first} is blank (every pixel "
                f"{float(flat[first, 0]):g}); remove blank images or export them again"
            )


def _check_labels(dataset: Dataset, source: str) -> None:
    splits = [dataset.train] + ([] if dataset.test is None else [dataset.test])
    if {split.task for split in splits} != {dataset.task}:
        raise DataError(
            f"{source}: the training split has {dataset.task} labels but the test split not; "
            "give both splits class labels, or both masks"
        )
    present = np.unique(np.concatenate([np.unique(split.labels) for split in splits]))
    if len(present) and present.min() < 0:
        raise DataError(
            f"{source}: label {int(present.min())} is negative; labels must be class indices 0..K-1"
        )
    missing = sorted(set(range(dataset.num_classes)) - {int(label) for label in present})
    if missing:
        raise DataError(
            f"{source}: labels {', '.join(str(int(c)) for c in present)} are not 0..K-1 "
            f"(no example of class {', '.join(map(str, missing))}); renumber the classes "
            "from 0 without gaps"
        )
    trained = np.unique(dataset.train.labels)
    if len(trained) < 2 and dataset.task == SEGMENTATION:
        raise DataError(
            f"{source}: every training mask holds label {int(trained[0])} only; a segmentation "
            "needs masks that mark a structure (label 1 or more) against background 0"
        )
    if len(trained) < 2:
        only = int(trained[0]) if len(trained) else "none"
        raise DataError(
            f"{source}: the training split holds one class only (class {only}); a classifier "
            "needs examples of at least two classes"
        )
