"""MedMNIST v2 ``.npz`` files: any 2D (grey or RGB) or 3D set, any size, any class count.

The release files hold ``train_images``/``train_labels`` and the same for
``val`` and ``test``: images uint8 (N, H, W), (N, H, W, 3) or (N, H, W, D),
labels (N, 1). ``val`` is not used: a site's held-out split is the test split.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from flowerbed.datasets.base import Dataset, ImageSet
from flowerbed.errors import DataError

REQUIRED_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def load_medmnist(path: Path) -> Dataset:
    """Read a MedMNIST ``.npz``; ``DataError`` naming the file on anything unexpected."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass the path of a MedMNIST .npz")
    try:
        with np.load(path) as archive:
            missing = [key for key in REQUIRED_KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: not a MedMNIST file, it lacks {', '.join(missing)}; "
                    "use a MedMNIST v2 release .npz"
                )
            arrays = {key: archive[key] for key in REQUIRED_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(
            f"{path}: cannot be read as .npz ({err}); the file may be corrupt"
        ) from None
    train = _image_set(path, "train", arrays["train_images"], arrays["train_labels"])
    test = _image_set(path, "test", arrays["test_images"], arrays["test_labels"])
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"{path}: train and test images differ in shape; the file is inconsistent")
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    return Dataset(train=train, test=test, num_classes=num_classes)


def _image_set(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> ImageSet:
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise DataError(
            f"{path}: {split}_labels has {labels.shape[1]} columns (multi-label); "
            "flowerbed trains single-label classification"
        )
    labels = labels.reshape(-1)
    if len(labels) != len(images):
        raise DataError(
            f"{path}: {split}_images holds {len(images)} images but {split}_labels "
            f"{len(labels)} labels; the file is inconsistent"
        )
    return ImageSet(_channels_first(path, split, images), labels.astype(np.int64))


def _channels_first(path: Path, split: str, images: np.ndarray) -> np.ndarray:
    """(N, H, W) grey, (N, H, W, 3) RGB, (N, H, W, D) volume -> float32 channels first."""
    scaled = images.astype(np.float32) / 255.0
    if images.ndim == 3:
        return scaled[:, None]
    if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
        return np.moveaxis(scaled, -1, 1)
    if images.ndim == 4:
        return scaled[:, None]
    raise DataError(
        f"{path}: {split}_images has shape {images.shape}; expected (N, H, W), "
        "(N, H, W, 3) or (N, H, W, D)"
    )
