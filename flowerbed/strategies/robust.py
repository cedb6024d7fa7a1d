"""Robust aggregation: Flower's Krum, multi-Krum, coordinate median and trimmed mean.

Each is Flower's own strategy with flowerbed's per-site reporting and budget
refusals in front (``SiteAware``). They bound what a few hostile sites can
do to the global model: Krum keeps the update closest to its neighbours,
multi-Krum averages the several closest, the median and the trimmed mean
work coordinate by coordinate. ``[run] assumed_hostile`` is the number of
hostile sites Krum guards against; ``[run] trim_fraction`` is the share
trimmed from each end by the trimmed mean.
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedMedian, FedTrimmedAvg, Krum, MultiKrum

from flowerbed.config import Federation
from flowerbed.strategies.observer import RoundObserver
from flowerbed.strategies.registry import STRATEGIES, every_site
from flowerbed.strategies.roll_call import Roll
from flowerbed.strategies.site_aware import SiteAware


class SiteAwareKrum(SiteAware, Krum):
    """Krum (Blanchard et al. 2017): the one update nearest its n - f - 2 neighbours."""


class SiteAwareMultiKrum(SiteAware, MultiKrum):
    """Multi-Krum: the mean of the n - f updates with the best Krum scores."""


class SiteAwareMedian(SiteAware, FedMedian):
    """Coordinate-wise median (Yin et al. 2018)."""


class SiteAwareTrimmedMean(SiteAware, FedTrimmedAvg):
    """Coordinate-wise trimmed mean (Yin et al. 2018)."""


@STRATEGIES.register("krum")
def krum(federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAware:
    sites = len(federation.sites)
    hostile = federation.run.assumed_hostile
    strategy = SiteAwareKrum(**every_site(sites), num_malicious_nodes=hostile)
    return strategy.bind(federation, observer, roll)


@STRATEGIES.register("multi-krum")
def multi_krum(federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAware:
    sites = len(federation.sites)
    hostile = federation.run.assumed_hostile
    strategy = SiteAwareMultiKrum(
        **every_site(sites),
        num_malicious_nodes=hostile,
        num_nodes_to_select=max(1, sites - hostile),
    )
    return strategy.bind(federation, observer, roll)


@STRATEGIES.register("median")
def median(federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAware:
    strategy = SiteAwareMedian(**every_site(len(federation.sites)))
    return strategy.bind(federation, observer, roll)


@STRATEGIES.register("trimmed-mean")
def trimmed_mean(federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAware:
    strategy = SiteAwareTrimmedMean(
        **every_site(len(federation.sites)), beta=federation.run.trim_fraction
    )
    return strategy.bind(federation, observer, roll)
