"""Which hospital this ClientApp is, in simulation or in deployment.

* Deployment: the SuperNode was started with the site's own node config
  (``name``, ``country``, ``data``, optional ``epsilon``, ``delta``,
  ``max-grad-norm``, ``dp``); the site is a federation of one, as far as it
  knows, and its privacy settings are its own.
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
from flowerbed.errors import ConfigError

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"
SITE_KEYS = ("name", "country", "data", "epsilon")
PRIVACY_KEYS = {
    "dp": "enabled",
    "epsilon": "epsilon",
    "delta": "delta",
    "max-grad-norm": "max_grad_norm",
}


@lru_cache(maxsize=2)
def _federation(path: str) -> Federation:
    return load_federation(Path(path))


@lru_cache(maxsize=2)
def _site_from_node_config(items: tuple[tuple[str, object], ...]) -> Federation:
    config = dict(items)
    site = {key: config[key] for key in SITE_KEYS if key in config}
    privacy = {field: config[key] for key, field in PRIVACY_KEYS.items() if key in config}
    try:
        return load_federation(None, {"sites": [site], "privacy": privacy})
    except ConfigError as err:
        raise ConfigError(f"node config: {str(err).split(': ', 1)[1]}") from None


def resolve_site(context: Context, federation_file: str | None) -> tuple[Federation, SiteSettings]:
    """The federation this node sees and its own site; ``ConfigError`` if they do not line up."""
    if "name" in context.node_config:
        federation = _site_from_node_config(tuple(sorted(context.node_config.items())))
        return federation, federation.sites[0]
    if PARTITION_ID not in context.node_config or federation_file is None:
        raise ConfigError(
            "node config names no site; start the SuperNode with --node-config "
            "\"name='...' country='..' data='...'\""
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
