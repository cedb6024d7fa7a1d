from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import save_npz, shared_file
from PIL import Image

from flowerbed.config import load_federation
from flowerbed.datasets import synthetic
from flowerbed.datasets.manifest import load_manifest
from flowerbed.datasets.medmnist import load_medmnist
from flowerbed.datasets.partition import partition
from flowerbed.datasets.source import load_dataset, site_data
from flowerbed.datasets.synthetic import make_synthetic
from flowerbed.errors import DataError


@pytest.mark.parametrize(
    ("train_shape", "sample_shape"),
    [
        ((12, 28, 28), (1, 28, 28)),  # grey 2D
        ((12, 64, 64), (1, 64, 64)),  # grey 2D, the _64 size
        ((12, 28, 28, 3), (3, 28, 28)),  # RGB 2D
        ((12, 28, 28, 28), (1, 28, 28, 28)),  # 3D volume
    ],
)
def test_medmnist_layouts_load_channels_first(tmp_path, train_shape, sample_shape):
    images = np.random.default_rng(1).integers(0, 256, train_shape, dtype=np.uint8)
    path = save_npz(tmp_path / "set.npz", images, images[:4], classes=5)
    dataset = load_medmnist(path)
    assert dataset.sample_shape == sample_shape
    assert dataset.train.images.dtype == np.float32
    assert dataset.train.images.min() >= 0.0 and dataset.train.images.max() <= 1.0
    assert dataset.train.labels.shape == (12,)
    assert 2 <= dataset.num_classes <= 5


def test_real_pneumoniamnist_matches_its_published_counts():
    dataset = load_medmnist(shared_file("medmnist/pneumoniamnist.npz"))
    assert len(dataset.train) == 4708 and len(dataset.test) == 624
    assert dataset.sample_shape == (1, 28, 28) and dataset.num_classes == 2
    assert int(dataset.test.labels.sum()) == 390


def test_real_vesselmnist3d_is_a_volume_set():
    dataset = load_medmnist(shared_file("medmnist/vesselmnist3d.npz"))
    assert dataset.sample_shape == (1, 28, 28, 28)


def test_missing_corrupt_and_misshaped_npz_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"absent\.npz: no such file"):
        load_medmnist(tmp_path / "absent.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DataError, match=r"corrupt\.npz: cannot be read"):
        load_medmnist(corrupt)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((3, 28, 28)))
    with pytest.raises(DataError, match=r"wrong\.npz: not a MedMNIST file, it lacks train_images"):
        load_medmnist(wrong)
    flat = save_npz(
        tmp_path / "flat.npz", np.zeros((6, 784), np.uint8), np.zeros((2, 784), np.uint8)
    )
    with pytest.raises(DataError, match=r"flat\.npz: train_images has shape \(6, 784\)"):
        load_medmnist(flat)


def test_synthetic_data_is_seeded_and_comes_in_2d_and_3d():
    first, again = make_synthetic(seed=3), make_synthetic(seed=3)
    assert np.array_equal(first.train.images, again.train.images)
    assert not np.array_equal(first.train.images, make_synthetic(seed=4).train.images)
    volume = make_synthetic(spatial_dims=3, size=16, n_train=20, n_test=8)
    assert volume.sample_shape == (1, 16, 16, 16)
    assert set(np.unique(first.train.labels)) == {0, 1}


@pytest.mark.parametrize("spatial_dims, size", [(2, 28), (3, 16)])
def test_synthetic_images_do_not_depend_on_the_chunk_they_are_drawn_in(
    monkeypatch, spatial_dims, size
):
    """Drawing in bounded chunks (for memory at 1000 sites) keeps a seed's data to the bit."""
    whole = make_synthetic(spatial_dims, size, n_train=50, n_test=10, seed=2)
    monkeypatch.setattr(synthetic, "CHUNK_VOXELS", 7 * size**spatial_dims)
    chunked = make_synthetic(spatial_dims, size, n_train=50, n_test=10, seed=2)
    for split in ("train", "test"):
        assert np.array_equal(getattr(whole, split).images, getattr(chunked, split).images)
        assert np.array_equal(getattr(whole, split).labels, getattr(chunked, split).labels)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "quantity"])
def test_partitions_are_disjoint_reproducible_and_nonempty(scheme):
    labels = np.random.default_rng(0).integers(0, 3, 1000)
    parts = partition(labels, 5, scheme, alpha=0.5, seed=7)
    again = partition(labels, 5, scheme, alpha=0.5, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    joined = np.concatenate(parts)
    assert len(joined) == len(np.unique(joined))
    assert min(len(part) for part in parts) >= 4
    if scheme != "quantity":
        assert len(joined) == len(labels)


def test_dirichlet_skews_labels_and_quantity_skews_sizes():
    labels = np.repeat([0, 1], 2000)
    skewed = partition(labels, 4, "dirichlet", alpha=0.1, seed=0)
    shares = [labels[part].mean() for part in skewed]
    assert max(shares) - min(shares) > 0.5
    even = partition(labels, 4, "iid", alpha=0.1, seed=0)
    assert (
        max(labels[part].mean() for part in even) - min(labels[part].mean() for part in even) < 0.1
    )
    sizes = [len(part) for part in partition(labels, 4, "quantity", alpha=0.3, seed=0)]
    assert max(sizes) > 3 * min(sizes)


def test_too_little_data_for_the_sites_is_refused():
    with pytest.raises(DataError, match="use fewer sites"):
        partition(np.zeros(10, int), 5, "iid", 0.5, 0)


def test_each_site_gets_its_own_shard_and_test_split():
    federation = load_federation(None, {"data": {"partition": "dirichlet"}})
    shards = [site_data(federation, site) for site in federation.sites]
    total = len(load_dataset("synthetic", 4, 0).train)
    assert sum(len(shard.train) for shard in shards) == total
    assert all(len(shard.test) > 0 for shard in shards)
    assert not np.array_equal(shards[0].train.images[:5], shards[1].train.images[:5])


def write_pngs(folder: Path, count: int) -> Path:
    rows = ["path,label"]
    for i in range(count):
        pixels = np.full((20, 24), 40 + 150 * (i % 2), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
        rows.append(f"img{i}.png,{i % 2}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_image_folder_manifest_reads_through_monai(tmp_path):
    dataset = load_manifest(write_pngs(tmp_path, 6), image_size=32)
    assert dataset.sample_shape == (1, 32, 32)
    assert dataset.test is None
    assert list(dataset.train.labels) == [0, 1, 0, 1, 0, 1]


def test_nifti_manifest_reads_volumes_with_a_split_column(tmp_path):
    rows = ["path,label,split"]
    for i in range(4):
        volume = np.random.default_rng(i).normal(size=(12, 10, 8)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"v{i}.nii.gz")
        rows.append(f"v{i}.nii.gz,{i % 2},{'test' if i == 3 else 'train'}")
    (tmp_path / "volumes.csv").write_text("\n".join(rows) + "\n")
    dataset = load_manifest(tmp_path / "volumes.csv", image_size=16)
    assert dataset.sample_shape == (1, 16, 16, 16)
    assert len(dataset.train) == 3 and len(dataset.test) == 1


def test_real_nifti_volumes_load(tmp_path):
    brain = shared_file("nifti/anatomical.nii")
    dwi = shared_file("nifti/aniso_vox.nii.gz")
    (tmp_path / "real.csv").write_text(f"path,label\n{brain},0\n{dwi},1\n")
    dataset = load_manifest(tmp_path / "real.csv", image_size=16)
    assert dataset.sample_shape == (1, 16, 16, 16)


def test_manifest_problems_name_the_file(tmp_path):
    manifest = write_pngs(tmp_path, 2)
    (tmp_path / "img1.png").unlink()
    with pytest.raises(DataError, match=r"img1\.png: listed in manifest\.csv as an image but no"):
        load_manifest(manifest)
    (tmp_path / "img1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"img1\.png: cannot be read as an image"):
        load_manifest(manifest)
    (tmp_path / "nolabel.csv").write_text("path\nimg0.png\n")
    with pytest.raises(DataError, match=r"nolabel\.csv: a manifest has columns path and either"):
        load_manifest(tmp_path / "nolabel.csv")
    (tmp_path / "badlabel.csv").write_text("path,label\nimg0.png,cat\n")
    with pytest.raises(DataError, match=r"badlabel\.csv: line 2: label must be"):
        load_manifest(tmp_path / "badlabel.csv")


def test_unknown_source_kind_is_refused():
    with pytest.raises(DataError, match="unknown data source"):
        load_dataset("scans.dicomdir")
