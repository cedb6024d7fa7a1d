"""Segmentation beside classification: synthetic masks, mask manifests, DICOM, Dice, UNet."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, flowerbed, site_context, train_instruction
from PIL import Image

from flowerbed.catalogue import SEGMENTATION
from flowerbed.config import load_federation
from flowerbed.datasets.augment import augmenter
from flowerbed.datasets.base import ImageSet
from flowerbed.datasets.files import read_file
from flowerbed.datasets.manifest import load_manifest
from flowerbed.datasets.source import load_dataset, site_data
from flowerbed.errors import DataError
from flowerbed.hospital_client import local_round
from flowerbed.hospital_client.scoring import Scores
from flowerbed.hospital_client.training import TrainPlan, evaluate, train
from flowerbed.models.factory import build_model
from flowerbed.privacy.accounting import PrivacyAccount
from flowerbed.protocol.model_spec import ModelSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_dicom_manifest import write_series, write_slice

HIPPOCAMPUS = SHARED_DATA / "seg" / "msd_hippocampus" / "manifest.csv"


@pytest.mark.parametrize(
    ("source", "shape"), [("synthetic-seg", (32, 32)), ("synthetic-seg-3d", (16,) * 3)]
)
def test_synthetic_segmentation_is_seeded_with_a_mask_on_each_image_grid(source, shape):
    first, again = load_dataset(source, 4, 3), load_dataset(source, 4, 3)
    assert first.task == SEGMENTATION and first.num_classes == 2
    assert first.train.images.shape[1:] == (1, *shape)
    assert first.train.labels.shape[1:] == shape and first.train.labels.dtype == np.int64
    assert np.array_equal(first.train.labels, again.train.labels)
    shown = first.train.labels.reshape(len(first.train), -1).mean(axis=1)
    assert (shown > 0).all() and (shown < 0.5).all()  # every image shows structure, not all
    bright = first.train.images[:, 0][first.train.labels == 1].mean()
    assert bright > first.train.images[:, 0][first.train.labels == 0].mean() + 0.3


def test_image_size_reaches_the_synthetic_sources_and_a_medmnist_file_refuses_another():
    assert load_dataset("synthetic-seg", 2, 0, 64).sample_shape == (1, 64, 64)
    assert load_dataset("synthetic", 2, 0, 40).sample_shape == (1, 40, 40)


def test_a_unet_learns_the_synthetic_masks_in_a_few_epochs():
    data = load_dataset("synthetic-seg", 4, 0, 16)
    train_set, test_set = data.train.subset(np.arange(96)), data.test.subset(np.arange(48))
    torch.manual_seed(0)
    model = build_model(ModelSpec.for_images("unet", train_set.images.shape[1:], 2))
    before, _ = evaluate(model, test_set, 2)
    plan = TrainPlan(epochs=4, batch_size=16, learning_rate=0.01, optimizer="adam")
    seen = train(model, train_set, 2, plan, PrivacyAccount(), seed=0)
    after, leak = evaluate(model, test_set, 2, calibration=train_set)
    assert after.dice > max(before.dice, 0.6) and seen.dice > 0.3
    assert 0 <= leak.auc <= 1 and np.isnan(after.auc)


def write_masked_pngs(folder: Path, count: int) -> Path:
    """PNG images with a bright square and its PNG mask under ``masks/``."""
    (folder / "masks").mkdir(parents=True)
    rows = ["path,mask"]
    for i in range(count):
        mask = np.zeros((20, 24), dtype=np.uint8)
        mask[4 + i : 12 + i, 6:14] = 1
        Image.fromarray((40 + 150 * mask).astype(np.uint8)).save(folder / f"img{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"img{i}.png")
        rows.append(f"img{i}.png,masks/img{i}.png")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_a_path_mask_manifest_is_segmentation_with_masks_resized_by_nearest(tmp_path):
    dataset = load_manifest(write_masked_pngs(tmp_path, 4), image_size=16)
    assert dataset.task == SEGMENTATION and dataset.num_classes == 2
    assert dataset.train.images.shape == (4, 1, 16, 16)
    assert dataset.train.labels.shape == (4, 16, 16)
    assert set(np.unique(dataset.train.labels)) == {0, 1}
    images, masks = dataset.train.images[:, 0], dataset.train.labels
    assert images[masks == 1].mean() > 0.8 > 0.2 > images[masks == 0].mean()  # on the square


def test_mask_problems_are_one_line_naming_both_files(tmp_path):
    manifest = write_masked_pngs(tmp_path, 2)
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(tmp_path / "masks" / "img1.png")
    with pytest.raises(DataError, match=r"img1\.png: mask of shape \[10, 10\].*img1\.png") as err:
        load_manifest(manifest)
    assert "\n" not in str(err.value) and "masks" in str(err.value)
    soft = np.full((24, 20), 0.5, dtype=np.float32)  # NIfTI keeps the 0.5
    nib.save(nib.Nifti1Image(soft, np.eye(4)), tmp_path / "soft.nii.gz")
    (tmp_path / "soft.csv").write_text("path,mask\nimg0.png,soft.nii.gz\n")
    with pytest.raises(DataError, match=r"soft\.nii\.gz: .*holds 0\.5, not an integer label"):
        load_manifest(tmp_path / "soft.csv")
    (tmp_path / "gone.csv").write_text("path,mask\nimg0.png,masks/none.png\n")
    with pytest.raises(DataError, match=r"none\.png: listed in gone\.csv as a mask but no such"):
        load_manifest(tmp_path / "gone.csv")
    (tmp_path / "both.csv").write_text("path,label,mask\nimg0.png,1,masks/img0.png\n")
    with pytest.raises(DataError, match=r"either label .* or mask"):
        load_manifest(tmp_path / "both.csv")


def test_a_bad_mask_manifest_stops_the_cli_in_one_line_before_anything_starts(
    tmp_path, monkeypatch, capsys
):
    manifest = write_masked_pngs(tmp_path, 2)
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(tmp_path / "masks" / "img0.png")
    code, printed = flowerbed(
        monkeypatch, capsys, "simulate", "--data", str(manifest), "--out", str(tmp_path / "run")
    )
    assert code == 1 and "does not fit image" in printed and "Traceback" not in printed
    assert not (tmp_path / "run").exists()


def test_a_dicom_slice_is_rescaled_and_monochrome1_is_inverted(tmp_path):
    pixels = np.tile(np.arange(0, 200, 10, dtype=np.uint16), (16, 1))  # a ramp left to right
    write_slice(tmp_path / "ct.dcm", pixels, "1.2.3.1", 0, slope=2.0, intercept=-1024.0)
    raw = read_file(tmp_path / "m.csv", tmp_path / "ct.dcm", "an image")
    assert raw.min() == -1024.0 and raw.max() == 190 * 2 - 1024.0  # stored * slope + intercept
    write_slice(tmp_path / "x.dcm", pixels, "1.2.3.2", 0, photometric="MONOCHROME1")
    (tmp_path / "m.csv").write_text("path,label\nct.dcm,0\nx.dcm,1\n")
    dataset = load_manifest(tmp_path / "m.csv", image_size=16)
    normal, inverted = dataset.train.images[:, 0]
    np.testing.assert_allclose(inverted, 1 - normal, atol=1e-5)


def test_a_dicom_series_folder_is_one_volume_and_a_mixed_one_is_refused(tmp_path):
    volume = np.random.default_rng(0).integers(0, 1000, size=(16, 12, 8)).astype(np.float64)
    write_series(tmp_path / "case0", volume)
    mask = np.zeros((16, 12, 8), dtype=np.float32)  # NIfTI, on the series' grid
    mask[4:10, 4:10, 2:6] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "case0_mask.nii.gz")
    (tmp_path / "m.csv").write_text("path,mask\ncase0,case0_mask.nii.gz\n")
    dataset = load_manifest(tmp_path / "m.csv", image_size=8)
    assert dataset.train.images.shape == (1, 1, 8, 8, 8) and dataset.train.labels.max() == 1
    write_series(tmp_path / "mixed", volume[:, :, :2])
    write_series(tmp_path / "other", volume[:, :, :2])
    (tmp_path / "other" / "slice000.dcm").rename(tmp_path / "mixed" / "z.dcm")
    (tmp_path / "bad.csv").write_text("path,label\nmixed,0\n")
    with pytest.raises(DataError, match=r"mixed: folder mixes 2 DICOM series"):
        load_manifest(tmp_path / "bad.csv")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.dcm").write_bytes(b"not dicom at all")
    (tmp_path / "junk.csv").write_text("path,label\njunk/a.dcm,0\n")
    with pytest.raises(DataError, match=r"a\.dcm: cannot be read as an image"):
        load_manifest(tmp_path / "junk.csv")


@pytest.mark.data
def test_the_real_hippocampus_set_reads_as_three_label_volumes():
    if not HIPPOCAMPUS.exists():
        pytest.skip("../shared/data/seg/msd_hippocampus is absent")
    dataset = load_dataset(str(HIPPOCAMPUS), 1, 0, 32)
    assert dataset.task == SEGMENTATION and dataset.num_classes == 3
    assert dataset.sample_shape == (1, 32, 32, 32) and len(dataset.train) == 195
    assert set(np.unique(dataset.train.labels)) == {0, 1, 2}


def test_segmentation_strata_split_sites_by_the_structures_their_masks_show():
    masks = np.zeros((3, 4, 4), dtype=np.int64)
    masks[1, 0, 0], masks[2, 1, 1] = 1, 2
    images = ImageSet(np.zeros((3, 1, 4, 4), dtype=np.float32), masks)
    assert images.task == SEGMENTATION and images.strata().tolist() == [0, 1, 2]


def test_augmentation_moves_each_mask_with_its_image_and_repeats_by_seed():
    masks = torch.zeros(16, 16, 16, dtype=torch.int64)
    masks[:, 2:9, 3:7] = 1  # an off-centre block: any flip or rotation moves it
    images = masks[:, None].float()
    augmented, moved = augmenter(SEGMENTATION, seed=4)(images, masks)
    again, _ = augmenter(SEGMENTATION, seed=4)(images, masks)
    torch.testing.assert_close(augmented, again)
    assert moved.dtype == torch.int64 and set(moved.unique().tolist()) <= {0, 1}
    assert not torch.equal(moved, masks)  # some images were flipped or rotated
    agreement = ((augmented[:, 0] > 0.5) == (moved == 1)).float().mean()
    assert agreement > 0.97  # the mask went where its image went
    labels = torch.arange(16) % 2
    flipped, kept = augmenter("classification", seed=4)(images, labels)
    assert torch.equal(kept, labels) and flipped.shape == images.shape


def test_the_sites_own_augment_setting_reaches_its_training(monkeypatch, task_identity):
    plans = []
    monkeypatch.setattr(local_round, "train", lambda *args: plans.append(args[3]) or _idle())
    for augment in (True, False):
        federation = load_federation(None, {"data": {"augment": augment}})
        site = federation.sites[0]
        config = train_instruction(1, 1).content["config"]
        data = site_data(federation, site)
        local_round.train_locally(
            build_model_for(data), config, site_context(), federation, site, data
        )
    assert [plan.augment for plan in plans] == [True, False]


def _idle() -> Scores:
    return Scores(1, 0.0, 0.5, 0.5)


def build_model_for(data):
    return build_model(ModelSpec.for_images("small-cnn", data.sample_shape, 2))
