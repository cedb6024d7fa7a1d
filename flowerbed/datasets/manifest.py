"""Images, NIfTI volumes and DICOM listed in a CSV manifest, read through MONAI transforms.

The manifest has a ``path`` column (relative to the manifest's folder or
absolute) and either an integer ``label`` column (classification) or a
``mask`` column naming each image's mask file (segmentation: integer labels
per voxel, 0 the background, on the image's own grid). An optional
``split`` column (``train``/``test``) fixes the held-out set, otherwise one
is drawn per site. PNG/JPEG files give 2D images, ``.nii``/``.nii.gz`` 3D
volumes, a ``.dcm`` file a slice and a folder of ``.dcm`` files one series
as a volume (``flowerbed.datasets.dicom``). MONAI's ``LoadImage`` picks the
reader; every image is brought to one channel layout, scaled to [0, 1] and
resized to ``image_size`` per axis, its mask alike by nearest neighbour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from monai.transforms import EnsureChannelFirst, LoadImage, Resize, ScaleIntensity

from flowerbed.datasets.base import Dataset, ImageSet
from flowerbed.datasets.dicom import is_dicom, is_inverted
from flowerbed.errors import DataError

TARGETS = ("label", "mask")  # one of them says the task: a class per image, or a mask


def load_manifest(path: Path, image_size: int = 32) -> Dataset:
    """Read every image (and mask) a manifest lists; ``DataError`` naming the file if bad."""
    path = Path(path)
    table = _read_table(path)
    files = [path.parent / entry for entry in table.path]
    masks = [path.parent / entry for entry in table["mask"]] if "mask" in table else None
    images, per_voxel = [], []
    for row, file in enumerate(files):
        raw = _read(path, file, "an image")
        if masks is not None:
            per_voxel.append(_load_mask(path, masks[row], file, raw, image_size))
        images.append(_scaled(file, raw, image_size))
    for file, image in zip(files, images, strict=True):
        if image.shape != images[0].shape:
            raise DataError(
                f"{file}: shape {image.shape} after loading differs from {images[0].shape} "
                f"of {files[0].name}; a manifest must hold images of one kind"
            )
    labels = np.stack(per_voxel) if masks is not None else table.label.to_numpy(dtype=np.int64)
    stacked = np.stack(images)
    num_classes = int(labels.max()) + 1
    if "split" not in table:
        return Dataset(ImageSet(stacked, labels), None, num_classes)
    is_test = (table.split.str.lower() == "test").to_numpy()
    return Dataset(
        ImageSet(stacked[~is_test], labels[~is_test]),
        ImageSet(stacked[is_test], labels[is_test]),
        num_classes,
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


def _innermost(error: BaseException) -> str:
    """The message of the exception at the bottom of ``error``'s chain.

    MONAI's ``Compose`` re-raises a reader's failure as "applying transform <LoadImage
    object at 0x...>", which tells the user nothing; the reader's own words are innermost.
    """
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return str(error) or type(error).__name__


def _read(manifest: Path, file: Path, what: str) -> np.ndarray:
    """``file`` as a channels-first float array at its own size, or a one-line ``DataError``."""
    if not file.exists():
        raise DataError(f"{file}: listed in {manifest.name} as {what} but no such file")
    reader = LoadImage(image_only=True, reader="PydicomReader") if is_dicom(file) else None
    try:
        loaded = (reader or LoadImage(image_only=True))(str(file))
        array = np.asarray(EnsureChannelFirst()(loaded), dtype=np.float32)
    except Exception as err:  # MONAI wraps every reader failure differently
        reason = _innermost(err).splitlines()[0][:200]
        raise DataError(f"{file}: cannot be read as {what} ({reason})") from None
    if array.ndim not in (3, 4):
        raise DataError(
            f"{file}: has {array.ndim - 1} spatial axes after loading; expected 2 or 3 "
            "(2D images or 3D volumes, not 4D series)"
        )
    return array


def _scaled(file: Path, image: np.ndarray, image_size: int) -> np.ndarray:
    """A read image in [0, 1], bright meaning dense, at ``image_size`` per axis."""
    if image.ndim == 3 and image.shape[0] == 4:
        image = image[:3]  # drop alpha
    scaled = np.asarray(ScaleIntensity()(image), dtype=np.float32)
    if is_dicom(file) and is_inverted(file):
        scaled = 1.0 - scaled  # MONOCHROME1: 0 is white; make bright mean dense everywhere
    return np.asarray(Resize([image_size] * (image.ndim - 1))(scaled), dtype=np.float32)


def _load_mask(
    manifest: Path, mask_file: Path, image_file: Path, image: np.ndarray, image_size: int
) -> np.ndarray:
    """The mask of ``image_file`` (read as ``image``) as int64 labels at ``image_size``."""
    mask = _read(manifest, mask_file, "a mask")
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
    resized = Resize([image_size] * (mask.ndim - 1), mode="nearest")(mask)
    return np.asarray(resized, dtype=np.float32)[0].round().astype(np.int64)
