"""Which hospital this ClientApp is, and what it says about itself.

* Deployment: the SuperNode's node config names the site's own config file
  (``site="SITE_DIR/site.toml"``, written by ``flowerbed site init``); the
  site is a federation of one, as far as it knows, and its privacy budget,
  residency policy and keys are its own (``hospital_client.site_folder``).
* Simulation: Flower gives each virtual SuperNode only ``partition-id`` and
  ``num-partitions``; the federation file lists the sites in the same order.

Either way the result is validated like a federation file, and parsed once
per worker process. What the site tells others is public: its name and
country on every reply, and at the roll call its sealing key and the kind of
images it holds.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flwr.app import ConfigRecord, Context, RecordDict

from flowerbed.catalogue import is_own_network
from flowerbed.config import Federation, SiteSettings, load_federation
from flowerbed.datasets.source import site_data
from flowerbed.errors import ConfigError, ModelError
from flowerbed.hospital_client.dp_plan import planned_steps
from flowerbed.hospital_client.keys import sealing_keys, site_home
from flowerbed.hospital_client.lifetime import check_affordable, this_run
from flowerbed.hospital_client.site_folder import deployed_site
from flowerbed.models.network_source import network_code
from flowerbed.protocol import records as R

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"


@lru_cache(maxsize=2)
def _federation(path: str) -> Federation:
    return load_federation(Path(path))


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


def site_record(site: SiteSettings) -> ConfigRecord:
    """The site's public identity, attached to every reply."""
    return ConfigRecord({R.SITE_NAME: site.name, R.SITE_COUNTRY: site.country})


def roll_call_answer(
    context: Context,
    federation: Federation,
    site: SiteSettings,
    query: RecordDict,
    homes: str | None = None,
) -> RecordDict:
    """The roll-call answer: name, country, public key (what the relay forwards to this
    site's neighbours) and the kind of images it holds (so one model fits every site).

    A site under DP prices the run first: ``BudgetRefused`` if the steps it plans would
    take its data set past its lifetime budget (``lifetime.check_affordable``).

    A query that names an own network (``package.module:function``) carries the
    sha256 of the coordinator's copy of its source; the site answers only if
    its own file names the same network and its copy has the same hash
    (``ModelError`` otherwise), so no site trains code the others do not.
    """
    data = site_data(federation, site)
    record = site_record(site)
    record[R.SITE_PUBLIC_KEY] = sealing_keys(context, site_home(homes, site.name)).public_bytes()
    record[R.SITE_SAMPLE_SHAPE] = [int(d) for d in data.sample_shape]
    record[R.SITE_CLASSES] = int(data.num_classes)
    record[R.SITE_TASK] = data.task
    asked = query.config_records.get(R.CONFIG, ConfigRecord())
    if federation.privacy.enabled and R.NUM_ROUNDS in asked:
        planned = planned_steps(federation, site, len(data.train), asked, this_run(context))
        check_affordable(context, federation, site, planned, asked)
    network = str(asked.get(R.NETWORK_QUERY, ""))
    if is_own_network(network):
        record[R.SITE_NETWORK_CODE] = own_network_code(
            federation, network, str(asked.get(R.SITE_NETWORK_CODE, ""))
        )
    return RecordDict({R.SITE: record})


def own_network_code(federation: Federation, network: str, expected: str) -> str:
    """This site's sha256 of ``network``'s source if it matches ``expected``; else why not."""
    if not federation.builds(network):
        raise ModelError(
            f"the run trains network {network}, which this site's own config does not name; "
            f'add network = "{network}" to [policy] in site.toml if you run that code'
        )
    own = network_code(network)
    if own != expected:
        raise ModelError(
            f"network {network}: this site's source (sha256 {own[:12]}) differs from the "
            f"coordinator's ({expected[:12]}); install the same version at every site"
        )
    return own
