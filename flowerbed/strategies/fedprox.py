"""FedProx: Flower's ``FedProx`` with per-site reporting and budget refusals.

The server sends ``proximal-mu``; each site applies the proximal step in
``hospital_client.training`` (which keeps it correct under DP-SGD).
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedProx

from flowerbed.config import Federation
from flowerbed.strategies.observer import RoundObserver
from flowerbed.strategies.roll import Roll
from flowerbed.strategies.site_aware import SiteAware
from flowerbed.strategies.strategy_utils import every_site


class SiteAwareFedProx(SiteAware, FedProx):
    """FedProx (Li et al. 2020), every site every round."""


def fedprox(federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAwareFedProx:
    strategy = SiteAwareFedProx(
        **every_site(len(federation.sites)), proximal_mu=federation.run.proximal_mu
    )
    return strategy.bind(federation, observer, roll)
