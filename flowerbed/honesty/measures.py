"""How far apart models are, and which of several are out of line: the checks' arithmetic."""

from __future__ import annotations

import math

import numpy as np
import torch

FAR_FACTOR = 5.0  # an update this many times the median one is out of line
# Cosine similarity to the model a site started from, below which it cannot have trained
# from it. Measured (PneumoniaMNIST, small CNN, the largest of 4 sites, one epoch from
# the seeded start): 0.99 at the default rates, 0.32 even at five times the default SGD
# rate; a random model with each tensor's spread: -0.04.
UNRELATED_BELOW = 0.2
MIN_FOR_MEDIAN = 3


def finite(state: dict[str, torch.Tensor]) -> bool:
    """Whether every float parameter of ``state`` is a number: one NaN or inf in an average
    makes the whole average NaN, so such an update is dropped before any other check."""
    return all(
        bool(torch.isfinite(tensor).all())
        for tensor in state.values()
        if tensor.is_floating_point()
    )


def distance(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """Euclidean distance between two models' float parameters."""
    return math.sqrt(
        sum(
            float(((state[name] - tensor) ** 2).sum())
            for name, tensor in reference.items()
            if tensor.is_floating_point()
        )
    )


def unrelated(
    states: list[dict[str, torch.Tensor]], reference: dict[str, torch.Tensor]
) -> set[int]:
    """Indices of ``states`` that share (almost) no direction with ``reference``: random models.

    Training moves a model by a fraction of its size, so its parameters stay
    aligned with where it started, however large the data or the step. A far-out
    check alone misses a random model whenever honest updates are large too.
    The reference is flattened once for all the states.
    """
    names = [name for name, tensor in reference.items() if tensor.is_floating_point()]

    def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([state[name].flatten().double() for name in names])

    theirs = flat(reference)
    return {
        index
        for index, state in enumerate(states)
        if float(torch.nn.functional.cosine_similarity(flat(state), theirs, dim=0))
        < UNRELATED_BELOW
    }


def median_model(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The coordinate-wise median of ``states``' float parameters: where most of them agree."""
    return {
        name: torch.stack([state[name] for state in states]).median(dim=0).values
        for name, tensor in states[0].items()
        if tensor.is_floating_point()
    }


def far_out(distances: list[float]) -> dict[int, float]:
    """Index -> times the median, for distances over ``FAR_FACTOR`` times the median.

    Needs ``MIN_FOR_MEDIAN`` distances: with fewer, the median is one of them.
    """
    if len(distances) < MIN_FOR_MEDIAN:
        return {}
    median = float(np.median(distances))
    if median <= 0:
        return {}
    return {i: d / median for i, d in enumerate(distances) if d > FAR_FACTOR * median}
