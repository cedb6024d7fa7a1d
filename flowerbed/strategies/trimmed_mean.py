"""Coordinate-wise trimmed mean: Flower's ``FedTrimmedAvg`` with per-site reporting and
budget refusals; ``[run] trim_fraction`` is the share cut from each end.
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedTrimmedAvg

from flowerbed.config import Federation
from flowerbed.strategies.observer import RoundObserver
from flowerbed.strategies.roll import Roll
from flowerbed.strategies.site_aware import SiteAware
from flowerbed.strategies.strategy_utils import every_site


class SiteAwareTrimmedMean(SiteAware, FedTrimmedAvg):
    """Coordinate-wise trimmed mean (Yin et al. 2018)."""


def trimmed_mean(
    federation: Federation, observer: RoundObserver, roll: Roll
) -> SiteAwareTrimmedMean:
    strategy = SiteAwareTrimmedMean(
        **every_site(len(federation.sites)), beta=federation.run.trim_fraction
    )
    return strategy.bind(federation, observer, roll)
