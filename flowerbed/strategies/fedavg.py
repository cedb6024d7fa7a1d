"""FedAvg: Flower's ``FedAvg`` with per-site reporting and budget refusals."""

from __future__ import annotations

from flwr.serverapp.strategy import FedAvg

from flowerbed.config import Federation
from flowerbed.strategies.observer import RoundObserver
from flowerbed.strategies.roll import Roll
from flowerbed.strategies.site_aware import SiteAware
from flowerbed.strategies.strategy_utils import every_site


class SiteAwareFedAvg(SiteAware, FedAvg):
    """Federated averaging (McMahan et al. 2017), every site every round."""


def fedavg(federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAwareFedAvg:
    strategy = SiteAwareFedAvg(**every_site(len(federation.sites)))
    return strategy.bind(federation, observer, roll)
