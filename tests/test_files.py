"""Data beyond memory: a large manifest stays on disk and is read batch by batch, and trains
exactly as the same images held in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_segmentation import write_masked_pngs

from flowerbed.catalogue import SEGMENTATION
from flowerbed.config import load_federation
from flowerbed.datasets import source
from flowerbed.datasets.base import ImageSet
from flowerbed.datasets.content import check_content
from flowerbed.datasets.files import FileImageSet
from flowerbed.datasets.manifest import load_manifest
from flowerbed.errors import DataError
from flowerbed.hospital_client.training import DPPlan, TrainPlan, train
from flowerbed.models.factory import build_model
from flowerbed.privacy.accounting import PrivacyAccount
from flowerbed.protocol.model_spec import ModelSpec


def write_noisy_pngs(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for i in range(count):
        pixels = rng.integers(0, 120, size=(16, 16)) + 100 * (i % 2)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"img{i}.png")
        rows.append(f"img{i}.png,{i % 2}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def test_a_manifest_beyond_the_memory_limit_stays_on_disk_and_reads_the_same_images(tmp_path):
    manifest = write_noisy_pngs(tmp_path, 12)
    whole, lazy = load_manifest(manifest, 16), load_manifest(manifest, 16, in_memory=0)
    assert isinstance(whole.train, ImageSet) and isinstance(lazy.train, FileImageSet)
    assert lazy.sample_shape == whole.sample_shape and lazy.num_classes == 2
    chosen = np.array([7, 2, 5])
    images, labels = lazy.train.batch(chosen)
    np.testing.assert_array_equal(images.numpy(), whole.train.images[chosen])
    assert labels.tolist() == whole.train.labels[chosen].tolist()
    assert lazy.train.strata().tolist() == whole.train.strata().tolist()
    part = lazy.train.subset(np.array([1, 3]))
    assert len(part) == 2 and part.batch(np.array([1]))[1].tolist() == [1]
    assert len(lazy.train.as_torch()) == 12


def test_masks_on_disk_read_as_masks(tmp_path):
    lazy = load_manifest(write_masked_pngs(tmp_path, 3), 16, in_memory=0).train
    assert lazy.task == SEGMENTATION and lazy.strata().tolist() == [1, 1, 1]
    assert lazy.batch(np.arange(3))[1].shape == (3, 16, 16)


@pytest.mark.parametrize("dp", [False, True])
def test_a_set_on_disk_trains_exactly_as_the_same_set_in_memory(tmp_path, dp):
    """Same seed, same draws: plain batches and DP-SGD's Poisson batches of indices select
    the same examples whether they are read from files or sliced from arrays."""
    manifest = write_noisy_pngs(tmp_path, 24)
    finals, accounts = [], []
    for limit in (2**30, 0):
        data = load_manifest(manifest, 16, in_memory=limit).train
        torch.manual_seed(0)
        model = build_model(ModelSpec.for_images("small-cnn", data.sample_shape, 2))
        plan = TrainPlan(2, 8, 0.05, dp=DPPlan(1.0, 1.0) if dp else None)
        account = PrivacyAccount()
        train(model, data, 2, plan, account, seed=3)
        finals.append(model.state_dict())
        accounts.append(account.history)
    for name, tensor in finals[0].items():
        torch.testing.assert_close(finals[1][name], tensor, msg=name)
    assert accounts[0] == accounts[1] and (not dp or accounts[0])


def test_dp_training_reads_only_the_poisson_sampled_examples(tmp_path, monkeypatch):
    data = load_manifest(write_noisy_pngs(tmp_path, 40), 16, in_memory=0).train
    reads = []
    original = FileImageSet.example
    monkeypatch.setattr(
        FileImageSet, "example", lambda self, i: reads.append(i) or original(self, i)
    )
    model = build_model(ModelSpec.for_images("small-cnn", data.sample_shape, 2))
    plan = TrainPlan(1, 8, 0.05, dp=DPPlan(1.0, 1.0))
    seen = train(model, data, 2, plan, PrivacyAccount(), seed=0)
    assert seen.num_examples == 40  # the site's size, as FedAvg weights it
    assert 0 < len(reads) < 3 * 40  # Poisson batches of about 8, 5 steps: never the set thrice


def test_a_blank_image_deep_in_a_set_on_disk_is_found_before_training(tmp_path):
    manifest = write_noisy_pngs(tmp_path, 10)
    Image.fromarray(np.full((16, 16), 7, dtype=np.uint8)).save(tmp_path / "img8.png")
    lazy = load_manifest(manifest, 16, in_memory=0)
    with pytest.raises(DataError, match=r"training image 8 is blank"):
        check_content(lazy, str(manifest))


def test_a_rounds_handlers_do_not_check_the_data_again_after_the_roll_call(monkeypatch):
    """A deployed site's every message is a fresh process: checking a set on disk in each
    would read it whole once more. The roll call checks; the rounds only read."""
    checks = []
    monkeypatch.setattr(source, "check_content", lambda *args: checks.append(args[1]))
    source.forget_loaded_data()
    federation = load_federation(None, {"data": {"source": "synthetic-seg", "image_size": 8}})
    site = federation.sites[0]
    source.site_data(federation, site, checked=False)
    assert checks == []
    source.site_data(federation, site)
    source.site_data(federation, site)
    assert checks == ["synthetic-seg"]  # once per process
    source.forget_loaded_data()
