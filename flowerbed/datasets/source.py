"""Turn a data source string into a dataset, and a federation site into its own data.

A source is ``synthetic`` (2D), ``synthetic-3d``, ``synthetic-seg`` (2D),
``synthetic-seg-3d``, a MedMNIST ``.npz`` or a CSV manifest. In simulation the
sites that name no data of their own share ``[data]``: each computes the same
seeded partition and keeps its shard, so no site ever holds another's examples.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from flowerbed.catalogue import READERS
from flowerbed.config import Federation, SiteSettings
from flowerbed.datasets.base import Dataset, ImageSet, SiteData
from flowerbed.datasets.canaries import plant_canaries
from flowerbed.datasets.content import check_content
from flowerbed.datasets.medmnist import load_medmnist
from flowerbed.datasets.partition import partition
from flowerbed.datasets.synthetic import make_synthetic
from flowerbed.datasets.synthetic_segmentation import make_synthetic_segmentation
from flowerbed.errors import DataError

# A reader takes (source, number of sites sharing it, seed, image size per axis or None
# for the source's own). A CSV manifest's is ``manifest.csv_manifest``: its image files
# are read through MONAI, which a site reading another source never imports.
Reader = Callable[[str, int, int, int | None], Dataset]
SYNTHETIC_PER_SITE = 64


def synthetic_2d(source: str, sites: int, seed: int, image_size: int | None) -> Dataset:
    n_train = max(1600, SYNTHETIC_PER_SITE * sites)
    return make_synthetic(2, image_size or 28, n_train=n_train, n_test=n_train // 4, seed=seed)


def synthetic_3d(source: str, sites: int, seed: int, image_size: int | None) -> Dataset:
    n_train = max(400, SYNTHETIC_PER_SITE * sites)
    return make_synthetic(3, image_size or 16, n_train=n_train, n_test=n_train // 4, seed=seed)


def synthetic_seg_2d(source: str, sites: int, seed: int, image_size: int | None) -> Dataset:
    n_train = max(1600, SYNTHETIC_PER_SITE * sites)
    return make_synthetic_segmentation(2, image_size or 32, n_train, n_train // 4, seed)


def synthetic_seg_3d(source: str, sites: int, seed: int, image_size: int | None) -> Dataset:
    n_train = max(400, SYNTHETIC_PER_SITE * sites)
    return make_synthetic_segmentation(3, image_size or 16, n_train, n_train // 4, seed)


def npz_file(source: str, sites: int, seed: int, image_size: int | None) -> Dataset:
    dataset = load_medmnist(Path(source))
    native = dataset.sample_shape[1]
    if image_size is not None and image_size != native:
        raise DataError(
            f"{source}: MedMNIST files come at one size ({native} px), not {image_size}; "
            f"drop --image-size or use the release file of size {image_size} (e.g. _{image_size}"
            ".npz)"
        )
    return dataset


def source_kind(source: str) -> str:
    """The reader name for ``source``; ``DataError`` if none reads it."""
    if source in READERS:
        return source
    suffix = Path(source).suffix.lower()
    if suffix in READERS:
        return suffix
    raise DataError(
        f"{source}: unknown data source; use synthetic, synthetic-3d, synthetic-seg, "
        "synthetic-seg-3d, a MedMNIST .npz or a CSV manifest (path,label or path,mask)"
    )


@lru_cache(maxsize=4)
def read_dataset(
    source: str, sites: int = 1, seed: int = 0, image_size: int | None = None
) -> Dataset:
    """Read ``source`` once per process (sites of one simulation share a worker), unchecked."""
    reader: Reader = READERS.get(source_kind(source))
    return reader(source, sites, seed, image_size)


@lru_cache(maxsize=4)
def load_dataset(
    source: str, sites: int = 1, seed: int = 0, image_size: int | None = None
) -> Dataset:
    """Read ``source`` once per process, and check its content once.

    Every entry point (simulate, site init and launch, the roll call) reads through
    here, so data that cannot be trained on is refused before anything starts.
    A round's own handlers read through ``read_dataset``: the roll call checked
    the data already, and a deployed site's every message is a fresh process,
    where checking again would read a set kept on disk whole once more.
    """
    dataset = read_dataset(source, sites, seed, image_size)
    check_content(dataset, source)
    return dataset


@lru_cache(maxsize=4)
def _shares(
    source: str, sites: int, scheme: str, alpha: float, seed: int, image_size: int | None
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    dataset = read_dataset(source, sites, seed, image_size)
    train_parts = partition(dataset.train.strata(), sites, scheme, alpha, seed)
    test_parts = None
    if dataset.test is not None:
        test_parts = partition(dataset.test.strata(), sites, "iid", alpha, seed + 1)
    return train_parts, test_parts


def forget_loaded_data() -> None:
    """Drop every dataset this process has cached.

    For a process that only checked the data: the simulation's coordinator
    loads every site's share to refuse bad input before Ray starts, then
    trains nothing, and the whole synthetic set for 1000 sites is 250 MB it
    would otherwise hold for the run beside each Ray worker's own copy.
    """
    read_dataset.cache_clear()
    load_dataset.cache_clear()
    _shares.cache_clear()


def site_data(federation: Federation, site: SiteSettings, checked: bool = True) -> SiteData:
    """The data ``site`` trains and evaluates on, with its own held-out test split.

    ``checked`` False skips the content checks (``load_dataset``): for a round's
    handlers, after the roll call checked the same data.
    """
    load = load_dataset if checked else read_dataset
    seed = federation.run.seed
    spec = federation.data
    if site.data is not None:
        dataset = load(site.data, 1, seed, spec.image_size)
        train, test = dataset.train, dataset.test
    else:
        shared = federation.shared_sites()
        position = [s.name for s in shared].index(site.name)
        dataset = load(spec.source, len(shared), seed, spec.image_size)
        train_parts, test_parts = _shares(
            spec.source, len(shared), spec.partition, spec.alpha, seed, spec.image_size
        )
        train = dataset.train.subset(train_parts[position])
        test = None if test_parts is None else dataset.test.subset(test_parts[position])
    if test is None:
        train, test = hold_out(train, federation.data.test_fraction, seed)
    own = SiteData(train=train, test=test, num_classes=dataset.num_classes)
    return plant_canaries(own, federation.privacy.canaries, seed, site.name)


def hold_out(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split off a seeded ``fraction`` as the test split, leaving at least one of each."""
    if len(images) < 2:
        raise DataError(f"a site with {len(images)} example cannot hold out a test split")
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = min(max(1, round(fraction * len(images))), len(images) - 1)
    return images.subset(np.sort(order[n_test:])), images.subset(np.sort(order[:n_test]))
