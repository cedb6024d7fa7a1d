"""One round's turn at a site, and what a site does with it (an ``Act``).

A deployed site acts ``honest``-ly; the simulation installs its hostile and
failing sites (``flowerbed.faults``) in its place, so no fault code is on a
deployed site's path. Kept apart from the training code: the ClientApp names
its ``Act`` when it loads, and a deployed ClientApp loads once per message,
roll calls and queries included, which should not pay for the training stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flwr.app import MetricRecord

from flowerbed.config import Federation, SiteSettings
from flowerbed.protocol import records as R

if TYPE_CHECKING:
    import torch

    from flowerbed.datasets.base import SiteData

State = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class SiteTurn:
    """One round at one site: what it received, its data, and how it trains honestly."""

    server_round: int
    received: State
    data: SiteData
    train: Callable[[SiteData], tuple[State, MetricRecord]]
    # its metrics had it done nothing (epsilon spent so far, budget); only a site that
    # does no work needs them, so they are computed on demand
    idle: Callable[[], MetricRecord]

    def claimed(self) -> MetricRecord:
        """What a site that did no work reports: a full round on all its data."""
        return MetricRecord({**dict(self.idle()), R.NUM_EXAMPLES: len(self.data.train)})


# What a site sends back for its turn: the parameters and the metrics.
Act = Callable[[Federation, SiteSettings, SiteTurn], tuple[State, MetricRecord]]


def honest(
    federation: Federation, site: SiteSettings, turn: SiteTurn
) -> tuple[State, MetricRecord]:
    """A real site's turn: it trains on its own data."""
    return turn.train(turn.data)
