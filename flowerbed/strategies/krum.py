"""Krum: Flower's ``Krum`` with per-site reporting and budget refusals.

It bounds what a few hostile sites can do to the global model by keeping the
one update nearest its neighbours; ``[run] assumed_hostile`` is how many
hostile sites it guards against.
"""

from __future__ import annotations

from flwr.serverapp.strategy import Krum

from flowerbed.config import Federation
from flowerbed.strategies.observer import RoundObserver
from flowerbed.strategies.roll import Roll
from flowerbed.strategies.site_aware import SiteAware
from flowerbed.strategies.strategy_utils import every_site


class SiteAwareKrum(SiteAware, Krum):
    """Krum (Blanchard et al. 2017): the one update nearest its n - f - 2 neighbours."""


def krum(federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAwareKrum:
    strategy = SiteAwareKrum(
        **every_site(len(federation.sites)), num_malicious_nodes=federation.run.assumed_hostile
    )
    return strategy.bind(federation, observer, roll)
