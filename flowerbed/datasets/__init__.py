"""Reading a site's images, splitting one dataset into sites, the synthetic default."""

from flowerbed.datasets.base import Dataset, ImageSet, SiteData
from flowerbed.datasets.partition import PARTITIONERS, partition
from flowerbed.datasets.source import (
    forget_loaded_data,
    load_dataset,
    site_data,
    source_kind,
)

__all__ = [
    "PARTITIONERS",
    "Dataset",
    "ImageSet",
    "SiteData",
    "forget_loaded_data",
    "load_dataset",
    "partition",
    "site_data",
    "source_kind",
]
