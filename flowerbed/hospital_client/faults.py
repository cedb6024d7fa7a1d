"""Hostile and failing sites, for simulation only: what a defence is tested against.

A site named in the federation file's ``[faults]`` misbehaves in the rounds
given there (every round by default), picked by name:

* ``label-flip``: trains honestly on its data with every label flipped;
* ``sign-flip`` / ``scale``: trains, then sends ``received - factor * update``
  / ``received + factor * update``;
* ``free-ride``: sends back what it received without training;
* ``noise``: sends random parameters without training;
* ``nan``: trains, then sends an update holding NaN (a diverged or broken site);
* ``drop``: does not answer at all;
* ``crash``: trains, then dies before it answers.

A site that does no work claims a full round on all its data, as a real
free rider would. A deployed site cannot be told to do any of this: its
federation is its own ``site.toml``, which has no ``[faults]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from flwr.app import MetricRecord

from flowerbed import records as R
from flowerbed.config import FaultSettings, Federation, SiteSettings
from flowerbed.datasets import ImageSet, SiteData
from flowerbed.errors import FlowerbedError
from flowerbed.registry import Registry

State = dict[str, torch.Tensor]


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


Behaviour = Callable[[FaultSettings, SiteTurn], tuple[State, MetricRecord]]
FAULTS: Registry[Behaviour] = Registry("fault")


class SiteDown(FlowerbedError):
    """A simulated site that does not answer this round (its message is its one-line error)."""


def behave(
    federation: Federation, site: SiteSettings, turn: SiteTurn
) -> tuple[State, MetricRecord]:
    """What ``site`` sends back this round: its honest training, unless a fault says otherwise."""
    fault = federation.faults.get(site.name)
    if fault is None or (fault.rounds is not None and turn.server_round not in fault.rounds):
        return turn.train(turn.data)
    return FAULTS.get(fault.kind)(fault, turn)


def _floats(state: State, change: Callable[[str, torch.Tensor], torch.Tensor]) -> State:
    return {
        name: change(name, tensor) if tensor.is_floating_point() else tensor
        for name, tensor in state.items()
    }


@FAULTS.register("label-flip")
def _label_flip(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    train = turn.data.train
    flipped = (turn.data.num_classes - 1 - train.labels).astype(train.labels.dtype)
    return turn.train(dataclasses.replace(turn.data, train=ImageSet(train.images, flipped)))


def _pushed(direction: float) -> Behaviour:
    def push(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
        trained, metrics = turn.train(turn.data)
        start = turn.received
        step = direction * fault.factor
        return _floats(trained, lambda n, t: start[n] + step * (t - start[n])), metrics

    return push


FAULTS.register("sign-flip")(_pushed(-1.0))
FAULTS.register("scale")(_pushed(+1.0))


@FAULTS.register("free-ride")
def _free_ride(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    return dict(turn.received), turn.claimed()


@FAULTS.register("noise")
def _noise(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    generator = torch.Generator().manual_seed(turn.server_round)

    def random_like(name: str, tensor: torch.Tensor) -> torch.Tensor:
        spread = float(tensor.std()) if tensor.numel() > 1 else 1.0
        return torch.randn(tensor.shape, generator=generator) * spread

    return _floats(turn.received, random_like), turn.claimed()


@FAULTS.register("nan")
def _nan(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    trained, metrics = turn.train(turn.data)
    return _floats(trained, lambda n, t: torch.full_like(t, float("nan"))), metrics


@FAULTS.register("drop")
def _drop(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    raise SiteDown(f"dropped out of round {turn.server_round} (simulated fault)")


@FAULTS.register("crash")
def _crash(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    turn.train(turn.data)
    raise SiteDown(f"crashed in round {turn.server_round} after training (simulated fault)")
