"""Which hospital this ClientApp is: its entry in the federation, found by partition-id.

In simulation Flower gives each virtual SuperNode only ``partition-id`` and
``num-partitions``; the federation file lists the sites in the same order.
The file is parsed once per worker process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flwr.app import Context

from flowerbed.config import Federation, SiteSettings, load_federation
from flowerbed.errors import ConfigError

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"


@lru_cache(maxsize=2)
def _federation(path: str) -> Federation:
    return load_federation(Path(path))


def resolve_site(context: Context, federation_file: str) -> tuple[Federation, SiteSettings]:
    """The federation and this node's site; ``ConfigError`` if they do not line up."""
    federation = _federation(federation_file)
    if PARTITION_ID not in context.node_config:
        raise ConfigError("node config has no partition-id; this ClientApp runs in simulation")
    index = int(context.node_config[PARTITION_ID])
    expected = int(context.node_config.get(NUM_PARTITIONS, len(federation.sites)))
    if expected != len(federation.sites):
        raise ConfigError(
            f"{federation_file}: lists {len(federation.sites)} sites but the simulation "
            f"started {expected} nodes; start one node per site"
        )
    return federation, federation.sites[index]
