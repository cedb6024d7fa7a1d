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

import torch
from flwr.app import MetricRecord

from flowerbed.catalogue import FAULTS
from flowerbed.config import FaultSettings, Federation, SiteSettings
from flowerbed.errors import FlowerbedError
from flowerbed.hospital_client.turn import SiteTurn, State

Behaviour = Callable[[FaultSettings, SiteTurn], tuple[State, MetricRecord]]


class SiteDown(FlowerbedError):
    """A simulated site that does not answer this round (its message is its one-line error)."""


def behave(
    federation: Federation, site: SiteSettings, turn: SiteTurn
) -> tuple[State, MetricRecord]:
    """What ``site`` sends back this round: its honest training, unless a fault says otherwise.

    The simulation hands this to the ClientApp in place of ``turn.honest``.
    """
    fault = federation.faults.get(site.name)
    if fault is None or (fault.rounds is not None and turn.server_round not in fault.rounds):
        return turn.train(turn.data)
    behaviour: Behaviour = FAULTS.get(fault.kind)
    return behaviour(fault, turn)


def _floats(state: State, change: Callable[[str, torch.Tensor], torch.Tensor]) -> State:
    return {
        name: change(name, tensor) if tensor.is_floating_point() else tensor
        for name, tensor in state.items()
    }


def label_flip(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    highest = turn.data.num_classes - 1
    flipped = turn.data.train.relabelled(lambda labels: highest - labels)
    return turn.train(dataclasses.replace(turn.data, train=flipped))


def _pushed(direction: float) -> Behaviour:
    def push(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
        trained, metrics = turn.train(turn.data)
        start = turn.received
        step = direction * fault.factor
        return _floats(trained, lambda n, t: start[n] + step * (t - start[n])), metrics

    return push


sign_flip = _pushed(-1.0)
scale = _pushed(+1.0)


def free_ride(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    return dict(turn.received), turn.claimed()


def noise(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    generator = torch.Generator().manual_seed(turn.server_round)

    def random_like(name: str, tensor: torch.Tensor) -> torch.Tensor:
        spread = float(tensor.std()) if tensor.numel() > 1 else 1.0
        return torch.randn(tensor.shape, generator=generator) * spread

    return _floats(turn.received, random_like), turn.claimed()


def nan(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    trained, metrics = turn.train(turn.data)
    return _floats(trained, lambda n, t: torch.full_like(t, float("nan"))), metrics


def drop(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    raise SiteDown(f"dropped out of round {turn.server_round} (simulated fault)")


def crash(fault: FaultSettings, turn: SiteTurn) -> tuple[State, MetricRecord]:
    turn.train(turn.data)
    raise SiteDown(f"crashed in round {turn.server_round} after training (simulated fault)")
