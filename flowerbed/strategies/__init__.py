"""How rounds are coordinated, picked by name from ``STRATEGIES``."""

from flowerbed.strategies import fedavg, fedprox  # noqa: F401  (register the strategies)
from flowerbed.strategies.observer import RoundObserver, SiteRow
from flowerbed.strategies.registry import STRATEGIES

__all__ = ["STRATEGIES", "RoundObserver", "SiteRow"]
