"""Image folders and NIfTI volumes listed in a CSV manifest, read through MONAI transforms.

The manifest has a ``path`` column (relative to the manifest's folder or
absolute) and an integer ``label`` column; an optional ``split`` column
(``train``/``test``) fixes the held-out set, otherwise one is drawn per site.
PNG/JPEG files give 2D images, ``.nii``/``.nii.gz`` give 3D volumes; MONAI's
``LoadImage`` picks the reader, then every image is brought to one channel
layout, scaled to [0, 1] and resized to ``image_size`` per axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Resize, ScaleIntensity

from flowerbed.datasets.base import Dataset, ImageSet
from flowerbed.errors import DataError

VOLUME_SUFFIXES = (".nii", ".nii.gz")


def load_manifest(path: Path, image_size: int = 32) -> Dataset:
    """Read every image a manifest lists; ``DataError`` naming the file on any problem."""
    path = Path(path)
    table = _read_table(path)
    files = [path.parent / entry for entry in table.path]
    loaded = [_load_image(path, file, image_size) for file in files]
    for file, image in zip(files, loaded, strict=True):
        if image.shape != loaded[0].shape:
            raise DataError(
                f"{file}: shape {image.shape} after loading differs from {loaded[0].shape} "
                f"of {files[0].name}; a manifest must hold images of one kind"
            )
    images = np.stack(loaded)
    labels = table.label.to_numpy(dtype=np.int64)
    num_classes = int(labels.max()) + 1
    if "split" not in table:
        return Dataset(ImageSet(images, labels), None, num_classes)
    is_test = (table.split.str.lower() == "test").to_numpy()
    return Dataset(
        ImageSet(images[~is_test], labels[~is_test]),
        ImageSet(images[is_test], labels[is_test]),
        num_classes,
    )


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass a CSV manifest with columns path,label")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({err}); fix the manifest") from None
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise DataError(f"{path}: manifest lacks column(s) {', '.join(sorted(missing))}")
    if table.empty:
        raise DataError(f"{path}: manifest lists no images")
    labels = pd.to_numeric(table.label, errors="coerce")
    if labels.isna().any() or (labels < 0).any() or (labels % 1 != 0).any():
        row = int(np.flatnonzero(labels.isna() | (labels < 0) | (labels % 1 != 0))[0]) + 2
        raise DataError(f"{path}: line {row}: label must be a non-negative integer class index")
    if "split" in table and not table.split.str.lower().isin(["train", "test"]).all():
        raise DataError(f"{path}: split column may only hold 'train' or 'test'")
    return table


def _innermost(error: BaseException) -> str:
    """The message of the exception at the bottom of ``error``'s chain.

    MONAI's ``Compose`` re-raises a reader's failure as "applying transform <LoadImage
    object at 0x...>", which tells the user nothing; the reader's own words are innermost.
    """
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return str(error) or type(error).__name__


def _load_image(manifest: Path, image_path: Path, image_size: int) -> np.ndarray:
    if not image_path.is_file():
        raise DataError(f"{image_path}: listed in {manifest.name} but no such file")
    spatial_dims = 3 if image_path.name.endswith(VOLUME_SUFFIXES) else 2
    reader = Compose(
        [
            LoadImage(image_only=True),
            EnsureChannelFirst(),
            ScaleIntensity(),
            Resize([image_size] * spatial_dims),
        ]
    )
    try:
        image = np.asarray(reader(str(image_path)), dtype=np.float32)
    except Exception as err:  # MONAI wraps every reader failure differently
        reason = _innermost(err).splitlines()[0][:200]
        raise DataError(f"{image_path}: cannot be read as an image ({reason})") from None
    if image.ndim != spatial_dims + 1:
        raise DataError(
            f"{image_path}: has {image.ndim - 1} spatial axes after loading; "
            f"expected {spatial_dims} (2D images or 3D volumes, not 4D series)"
        )
    return image[:3] if spatial_dims == 2 and image.shape[0] == 4 else image  # drop alpha
