"""Multi-Krum: Flower's ``MultiKrum`` with per-site reporting and budget refusals.

The mean of the n - f updates with the best Krum scores, f being
``[run] assumed_hostile``.
"""

from __future__ import annotations

from flwr.serverapp.strategy import MultiKrum

from flowerbed.config import Federation
from flowerbed.strategies.observer import RoundObserver
from flowerbed.strategies.roll import Roll
from flowerbed.strategies.site_aware import SiteAware
from flowerbed.strategies.strategy_utils import every_site


class SiteAwareMultiKrum(SiteAware, MultiKrum):
    """Multi-Krum (Blanchard et al. 2017): the mean of the n - f updates with the best
    Krum scores."""


def multi_krum(federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAwareMultiKrum:
    sites = len(federation.sites)
    hostile = federation.run.assumed_hostile
    strategy = SiteAwareMultiKrum(
        **every_site(sites),
        num_malicious_nodes=hostile,
        num_nodes_to_select=max(1, sites - hostile),
    )
    return strategy.bind(federation, observer, roll)
