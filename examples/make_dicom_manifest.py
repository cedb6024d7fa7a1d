"""Write NIfTI volumes out as DICOM series, with a manifest flowerbed reads.

For trying flowerbed's DICOM path on real anatomy without a PACS export:
``python examples/make_dicom_manifest.py ../shared/data/seg/msd_hippocampus/manifest.csv
runs/dicom --cases 24`` turns the first 24 cases of a ``path,mask`` manifest
into one folder of CT-style slices per case (rescale slope and intercept
set, as scanners write them) beside the masks as NIfTI, and writes
``runs/dicom/manifest.csv``. ``write_series`` is also what the tests use to
make DICOM files.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_slice(
    path: Path,
    pixels: np.ndarray,
    series: str,
    position: int,
    slope: float = 1.0,
    intercept: float = 0.0,
    photometric: str = "MONOCHROME2",
) -> None:
    """One 16-bit CT slice of ``pixels`` (stored values) at slice ``position`` of ``series``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1", series
    ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "anonymous", position + 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.ImagePositionPatient = [0, 0, position]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [1, 1], 1
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, volume: np.ndarray, slope: float = 1.0, intercept: float = 0.0):
    """``volume`` (H, W, D) as one DICOM series of D slices in ``folder``.

    MONAI's ``PydicomReader`` reads a slice's rows as its second axis
    (``swap_ij``, to match NIfTI's orientation), so each slice is written
    transposed: the series then reads back on the volume's own grid.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    stored = np.round((volume - intercept) / slope).clip(0, 65535)
    for z in range(volume.shape[2]):
        write_slice(folder / f"slice{z:03d}.dcm", stored[:, :, z].T, series, z, slope, intercept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="a path,mask manifest of NIfTI volumes")
    parser.add_argument("out", type=Path, help="folder to write the DICOM series and manifest")
    parser.add_argument("--cases", type=int, default=24)
    args = parser.parse_args()
    with open(args.manifest) as table:
        rows = list(csv.DictReader(table))[: args.cases]
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [("path", "mask")]
    for number, row in enumerate(rows):
        volume = np.asarray(nib.load(args.manifest.parent / row["path"]).dataobj, np.float64)
        case = f"case{number:03d}"
        write_series(args.out / case, volume, slope=0.5, intercept=-1024.0)
        shutil.copy(args.manifest.parent / row["mask"], args.out / f"{case}_mask.nii.gz")
        lines.append((case, f"{case}_mask.nii.gz"))
    with open(args.out / "manifest.csv", "w", newline="") as out:
        csv.writer(out).writerows(lines)
    print(f"wrote {len(rows)} DICOM series and {args.out / 'manifest.csv'}")


if __name__ == "__main__":
    main()
