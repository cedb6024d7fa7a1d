"""How a gossip site mixes its neighbours' models into its own, picked by name.

* ``average``: x + sum_j w_j (x_j - x), the Metropolis-Hastings average.
* ``clipped``: self-centred clipping (He, Karimireddy and Jaggi 2022): each
  neighbour's difference x_j - x is first clipped to the median length of
  the differences this site received. An honest neighbour's difference is
  left as it is; a hostile one (a scaled, sign-flipped or random model)
  moves the site no further than a typical honest neighbour would. With no
  outlier it equals ``average``.

Both keep the site's non-float entries (counters) and report the mean
squared distance to the neighbours, measured before mixing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from flowerbed.catalogue import MIXING
from flowerbed.honesty.neighbours import Neighbours

State = dict[str, torch.Tensor]
Mixer = Callable[[State, Neighbours], tuple[State, float]]


def _differences(own: State, neighbours: Neighbours) -> list[tuple[float, State]]:
    floats = [name for name, tensor in own.items() if tensor.is_floating_point()]
    return [
        (weight, {n: state[n].to(own[n].dtype) - own[n] for n in floats})
        for weight, state in neighbours.values()
    ]


def _apply(own: State, steps: list[tuple[float, State]]) -> State:
    mixed = {}
    for name, tensor in own.items():
        total = tensor.clone()
        if tensor.is_floating_point():
            for weight, difference in steps:
                total = total + weight * difference[name]
        mixed[name] = total
    return mixed


def _disagreement(own: State, differences: list[tuple[float, State]]) -> float:
    size = sum(tensor.numel() for tensor in own.values() if tensor.is_floating_point())
    distances = [_squared_norm(d) / size for _, d in differences]
    return float(np.mean(distances)) if distances else float("nan")


def _squared_norm(difference: State) -> float:
    return sum(float((tensor**2).sum()) for tensor in difference.values())


def average(own: State, neighbours: Neighbours) -> tuple[State, float]:
    """``own`` mixed with its weighted neighbours; and the mean squared distance to them."""
    differences = _differences(own, neighbours)
    return _apply(own, differences), _disagreement(own, differences)


def clipped(own: State, neighbours: Neighbours) -> tuple[State, float]:
    """As ``average``, each difference clipped to the median difference's length."""
    differences = _differences(own, neighbours)
    if not differences:
        return _apply(own, differences), float("nan")
    lengths = [_squared_norm(d) ** 0.5 for _, d in differences]
    radius = float(np.median(lengths))
    steps = [
        (weight * min(1.0, radius / length) if length > 0 else weight, difference)
        for (weight, difference), length in zip(differences, lengths, strict=True)
    ]
    return _apply(own, steps), _disagreement(own, differences)


def mix(rule: str, own: State, neighbours: Neighbours) -> tuple[State, float]:
    """``own`` mixed with ``neighbours`` by the rule called ``rule``."""
    mixer: Mixer = MIXING.get(rule)
    return mixer(own, neighbours)
