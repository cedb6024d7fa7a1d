"""Which hospital this ClientApp is, in simulation or in deployment.

* Deployment: the SuperNode's node config names the site's own config file
  (``site="SITE_DIR/site.toml"``, written by ``flowerbed site init``); the
  site is a federation of one, as far as it knows, and its privacy budget,
  residency policy and keys are its own (``flowerbed.deployment.site_folder``).
* Simulation: Flower gives each virtual SuperNode only ``partition-id`` and
  ``num-partitions``; the federation file lists the sites in the same order.

Either way the result is validated like a federation file, and parsed once
per worker process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flwr.app import Context

from flowerbed.config import Federation, SiteSettings, load_federation
from flowerbed.deployment.site_folder import SiteFolder
from flowerbed.errors import ConfigError

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"
SITE_NODE_KEY = "site"


@lru_cache(maxsize=2)
def _federation(path: str) -> Federation:
    return load_federation(Path(path))


@lru_cache(maxsize=2)
def _site_folder(path: str) -> SiteFolder:
    return SiteFolder.load(Path(path))


def deployed_site(context: Context) -> SiteFolder | None:
    """The site folder a deployed SuperNode's node config names; None in simulation."""
    path = context.node_config.get(SITE_NODE_KEY)
    return None if path is None else _site_folder(str(path))


def resolve_site(context: Context, federation_file: str | None) -> tuple[Federation, SiteSettings]:
    """The federation this node sees and its own site; ``ConfigError`` if they do not line up."""
    folder = deployed_site(context)
    if folder is not None:
        federation = folder.federation
        return federation, federation.sites[0]
    if PARTITION_ID not in context.node_config or federation_file is None:
        raise ConfigError(
            "node config names no site; start the SuperNode with `flowerbed site launch "
            'SITE_DIR/site.toml` (node config site="SITE_DIR/site.toml")'
        )
    federation = _federation(federation_file)
    index = int(context.node_config[PARTITION_ID])
    expected = int(context.node_config.get(NUM_PARTITIONS, len(federation.sites)))
    if expected != len(federation.sites):
        raise ConfigError(
            f"{federation_file}: lists {len(federation.sites)} sites but the simulation "
            f"started {expected} nodes; start one node per site"
        )
    return federation, federation.sites[index]
