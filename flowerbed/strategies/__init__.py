"""How rounds are coordinated, picked by name from ``STRATEGIES``."""

from flowerbed.strategies import fedavg, fedprox, gossip, robust  # noqa: F401  (register them)
from flowerbed.strategies.observer import RoundObserver, SiteRow
from flowerbed.strategies.registry import STRATEGIES

__all__ = ["STRATEGIES", "RoundObserver", "SiteRow"]
