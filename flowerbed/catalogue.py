"""Every built-in by name: strategies, networks, mixing rules, topologies, partitions,
data sources and simulated faults.

One table per kind, each entry naming where its implementation lives, so that
the federation file (``flowerbed.config``) checks names without importing what
they name, and a reader finds every choice in one place. Adding one is a
function in its module and a line here; ``tests/test_layout.py`` imports every
entry.
"""

from __future__ import annotations

import re
from typing import Any

from flowerbed.registry import Registry

# The tasks a site's data can be for: a class per image, or a label per voxel.
CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"
TASKS = (CLASSIFICATION, SEGMENTATION)

STRATEGIES: Registry[Any] = Registry(
    "strategy",
    {
        "fedavg": "flowerbed.strategies.fedavg:fedavg",
        "fedprox": "flowerbed.strategies.fedprox:fedprox",
        "krum": "flowerbed.strategies.krum:krum",
        "multi-krum": "flowerbed.strategies.multi_krum:multi_krum",
        "median": "flowerbed.strategies.median:median",
        "trimmed-mean": "flowerbed.strategies.trimmed_mean:trimmed_mean",
        "gossip": "flowerbed.strategies.gossip:gossip",
    },
)
MODELS: Registry[Any] = Registry(
    "model",
    {
        "small-cnn": "flowerbed.models.factory:small_cnn",
        "small-cnn-tanh": "flowerbed.models.factory:small_cnn_tanh",
        "small-cnn-dp": "flowerbed.models.factory:small_cnn_dp",
        "densenet121": "flowerbed.models.factory:densenet121",
        "resnet10": "flowerbed.models.factory:resnet10",
        "resnet18": "flowerbed.models.factory:resnet18",
        "unet": "flowerbed.models.factory:unet",
        "segresnet": "flowerbed.models.factory:segresnet",
    },
)
# A hospital's own network beside the built-ins: an importable ``package.module:function``.
OWN_NETWORK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_own_network(name: str) -> bool:
    """Whether ``name`` names a hospital's own ``module:function`` rather than a built-in."""
    return name not in MODELS and bool(OWN_NETWORK.match(name))


def check_network(name: str) -> str:
    """``name`` if it is a built-in or an own ``module:function``; ValueError saying so if not."""
    if name in MODELS or is_own_network(name):
        return name
    raise ValueError(
        f"unknown model {name!r}; choose one of: {', '.join(MODELS.names())}, or name your "
        "own network as package.module:function"
    )


MIXING: Registry[Any] = Registry(
    "mixing rule",
    {
        "average": "flowerbed.hospital_client.mixing:average",
        "clipped": "flowerbed.hospital_client.mixing:clipped",
    },
)
TOPOLOGIES: Registry[Any] = Registry(
    "topology",
    {
        "ring": "flowerbed.strategies.topology:ring",
        "torus": "flowerbed.strategies.topology:torus",
        "exponential": "flowerbed.strategies.topology:exponential",
        "one-peer-exponential": "flowerbed.strategies.topology:one_peer_exponential",
        "random-regular": "flowerbed.strategies.topology:random_regular",
        "complete": "flowerbed.strategies.topology:complete",
    },
)
PARTITIONERS: Registry[Any] = Registry(
    "partition",
    {
        "iid": "flowerbed.datasets.partition:iid",
        "dirichlet": "flowerbed.datasets.partition:dirichlet",
        "quantity": "flowerbed.datasets.partition:quantity",
    },
)
READERS: Registry[Any] = Registry(
    "data source",
    {
        "synthetic": "flowerbed.datasets.source:synthetic_2d",
        "synthetic-3d": "flowerbed.datasets.source:synthetic_3d",
        "synthetic-seg": "flowerbed.datasets.source:synthetic_seg_2d",
        "synthetic-seg-3d": "flowerbed.datasets.source:synthetic_seg_3d",
        ".npz": "flowerbed.datasets.source:npz_file",
        ".csv": "flowerbed.datasets.manifest:csv_manifest",
    },
)
FAULTS: Registry[Any] = Registry(
    "fault",
    {
        "label-flip": "flowerbed.faults:label_flip",
        "sign-flip": "flowerbed.faults:sign_flip",
        "scale": "flowerbed.faults:scale",
        "free-ride": "flowerbed.faults:free_ride",
        "noise": "flowerbed.faults:noise",
        "nan": "flowerbed.faults:nan",
        "drop": "flowerbed.faults:drop",
        "crash": "flowerbed.faults:crash",
    },
)
