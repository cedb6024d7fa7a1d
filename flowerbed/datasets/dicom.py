"""DICOM images: one ``.dcm`` file (a slice) or a folder holding one series (a volume).

MONAI's ``LoadImage`` reads them through ``PydicomReader``, which applies each
file's rescale slope and intercept. Two things it leaves to us are checked
here, from the headers alone: a folder must hold exactly one series (a
folder of two would be stacked into one meaningless volume), and an image
stored MONOCHROME1 (0 is white) is inverted so that bright means dense on
every site.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from flowerbed.errors import DataError

DICOM_SUFFIX = ".dcm"
# MONAI warns on every read that no GPU decoder is installed; the CPU one is what we use.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
INVERTED = "MONOCHROME1"


def is_dicom(path: Path) -> bool:
    """A ``.dcm`` file, or a folder of them."""
    return path.suffix.lower() == DICOM_SUFFIX or path.is_dir()


def dicom_files(path: Path) -> list[Path]:
    """The files of one DICOM image: the file itself, or every file of the folder."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"{path}: folder holds no DICOM files; list a .dcm file or a series folder")
    return files


def is_inverted(path: Path) -> bool:
    """Whether the image at ``path`` is MONOCHROME1; ``DataError`` if it is not one series.

    Reads headers only (no pixel data), so checking a series costs little.
    """
    headers = []
    for file in dicom_files(path):
        try:
            headers.append(pydicom.dcmread(file, stop_before_pixels=True))
        except (InvalidDicomError, OSError, ValueError) as err:
            raise DataError(
                f"{file}: cannot be read as DICOM ({err}); remove or re-export it"
            ) from None
    series = {str(getattr(h, "SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise DataError(
            f"{path}: folder mixes {len(series)} DICOM series; give each series its own folder "
            "(one manifest row per volume)"
        )
    photometric = {str(getattr(h, "PhotometricInterpretation", "")) for h in headers}
    return photometric == {INVERTED}
