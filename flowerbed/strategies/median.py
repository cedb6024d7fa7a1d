"""Coordinate-wise median: Flower's ``FedMedian`` with per-site reporting and budget
refusals; a few hostile sites cannot move a coordinate past the honest ones.
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedMedian

from flowerbed.config import Federation
from flowerbed.strategies.observer import RoundObserver
from flowerbed.strategies.roll import Roll
from flowerbed.strategies.site_aware import SiteAware
from flowerbed.strategies.strategy_utils import every_site


class SiteAwareMedian(SiteAware, FedMedian):
    """Coordinate-wise median (Yin et al. 2018)."""


def median(federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAwareMedian:
    strategy = SiteAwareMedian(**every_site(len(federation.sites)))
    return strategy.bind(federation, observer, roll)
