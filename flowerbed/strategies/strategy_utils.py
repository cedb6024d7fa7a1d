"""What every strategy factory shares: its signature, what it returns, whom it samples.

``catalogue.STRATEGIES`` maps a name to a factory ``(federation, observer, roll)``
returning a ``RoundDriver``: Flower's ``Strategy.start`` is the one verb the
ServerApp calls. Server-side strategies are Flower strategies (with
``configure_train``, ``aggregate_train`` and the rest); the gossip relay
drives its rounds itself, for no aggregate exists to configure or aggregate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result


class RoundDriver(Protocol):
    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int,
        timeout: float,
        train_config: ConfigRecord,
        evaluate_config: ConfigRecord,
    ) -> Result:
        """Run ``num_rounds`` rounds from ``initial_arrays``; Flower's ``Strategy.start``."""


StrategyFactory = Callable[..., RoundDriver]


def every_site(sites: int) -> dict[str, Any]:
    """Sampling arguments that put every site in every round, waiting for all to connect."""
    return {"min_train_nodes": sites, "min_evaluate_nodes": sites, "min_available_nodes": sites}
