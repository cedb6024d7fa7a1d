"""The strategy registry: a name -> factory(federation, observer, roll).

Each factory returns an object with Flower's ``Strategy.start`` signature;
server-side ones are Flower strategies, the gossip relay mimics the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowerbed.registry import Registry

StrategyFactory = Callable[..., Any]
STRATEGIES: Registry[StrategyFactory] = Registry("strategy")


def every_site(sites: int) -> dict[str, int]:
    """Sampling arguments that put every site in every round, waiting for all to connect."""
    return {"min_train_nodes": sites, "min_evaluate_nodes": sites, "min_available_nodes": sites}
