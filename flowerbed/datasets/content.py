"""What a data set must hold before anything trains on it.

Readers check a file's form (keys, shapes, columns); this checks its content,
once per data set, before a simulation starts, a site folder is written, a
SuperNode is launched or a site answers the roll call. Data that fails here
would otherwise train to a loss of ``nan`` or to a one-class model and be
reported as a success. A set read from files is read once, batch by batch.
"""

from __future__ import annotations

import numpy as np

from flowerbed.catalogue import SEGMENTATION
from flowerbed.datasets.base import Dataset, Images
from flowerbed.errors import DataError

CHUNK = 1024  # images checked at a time: bounded memory for any data set size


def check_content(dataset: Dataset, source: str) -> None:
    """``DataError`` naming ``source`` and the fix if ``dataset`` cannot be trained on."""
    splits = {"training": dataset.train, "test": dataset.test}
    present: dict[str, np.ndarray] = {}
    for split, images in splits.items():
        if images is None:
            continue
        if images.task != dataset.task:
            raise DataError(
                f"{source}: the training split has {dataset.task} labels but the test split not; "
                "give both splits class labels, or both masks"
            )
        present[split] = _check_images(images, split, source)
    _check_labels(dataset, present, source)


def _check_images(images: Images, split: str, source: str) -> np.ndarray:
    """Refuse non-finite or blank images; the labels the split holds."""
    labels, non_finite, blank = [], [], []
    for start in range(0, len(images), CHUNK):
        batch, batch_labels = images.batch(np.arange(start, min(start + CHUNK, len(images))))
        flat = batch.numpy().reshape(len(batch), -1)
        finite = np.isfinite(flat).all(axis=1)
        non_finite.extend((start + np.flatnonzero(~finite)).tolist())
        constant = finite & (flat.max(axis=1) == flat.min(axis=1))
        blank.extend((start + i, float(flat[i, 0])) for i in np.flatnonzero(constant))
        labels.append(np.unique(batch_labels.numpy()))
    if non_finite:
        raise DataError(
            f"{source}: {len(non_finite)} {split} image(s) hold NaN or infinite pixel values "
            f"(the first is image {non_finite[0]}); export the images again or remove them"
        )
    if blank:
        first, value = blank[0]
        raise DataError(
            f"{source}: {split} image {first} is blank (every pixel {value:g}); remove blank "
            "images or export them again"
        )
    return np.unique(np.concatenate(labels))


def _check_labels(dataset: Dataset, present: dict[str, np.ndarray], source: str) -> None:
    every = np.unique(np.concatenate(list(present.values())))
    if len(every) and every.min() < 0:
        raise DataError(
            f"{source}: label {int(every.min())} is negative; labels must be class indices 0..K-1"
        )
    missing = sorted(set(range(dataset.num_classes)) - {int(label) for label in every})
    if missing:
        raise DataError(
            f"{source}: labels {', '.join(str(int(c)) for c in every)} are not 0..K-1 "
            f"(no example of class {', '.join(map(str, missing))}); renumber the classes "
            "from 0 without gaps"
        )
    trained = present["training"]
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
