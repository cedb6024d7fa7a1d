"""What honesty checks share, at the coordinator and at gossip sites.

A model's answer to a public probe, the size of an update, which updates
are far out of line with the rest, and whether a model is related at all
to the one it should have been trained from.

Every train instruction carries a probe seed. The probe batch is derived
from it alone (uniform noise in the model's input shape: public, no
patient in it), and a site answers with the SHA-256 of its returned
model's outputs on the batch, rounded to ``DECIMALS`` so that the same
parameters give the same digest on another machine's floating point. Anyone
who holds the parameters can recompute the answer.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import numpy as np
import torch
from flwr.app import ConfigRecord
from torch import nn

from flowerbed import records as R
from flowerbed.models.factory import ModelSpec, build_model

FAR_FACTOR = 5.0  # an update this many times the median one is out of line
# Cosine similarity to the model a site started from, below which it cannot have trained
# from it. Measured (PneumoniaMNIST, small CNN, the largest of 4 sites, one epoch from
# the seeded start): 0.99 at the default rates, 0.32 even at five times the default SGD
# rate; a random model with each tensor's spread: -0.04.
UNRELATED_BELOW = 0.2
MIN_FOR_MEDIAN = 3
PROBE_SIZE = 8
PROBE_SIDE = 32  # every factory network takes 32 per axis (DenseNet121 needs at least that)
DECIMALS = 2


def probe_batch(spec: ModelSpec, seed: int) -> torch.Tensor:
    """``PROBE_SIZE`` public inputs for ``spec``'s network, from ``seed`` alone."""
    generator = torch.Generator().manual_seed(seed)
    shape = (PROBE_SIZE, spec.in_channels, *[PROBE_SIDE] * spec.spatial_dims)
    return torch.rand(shape, generator=generator)


@lru_cache(maxsize=4)
def _probe_network(spec: ModelSpec) -> nn.Module:
    """One network per spec and process, loaded with each state in turn.

    Building a network costs about as much as answering the probe, and a
    site answers one every round (the coordinator checks a share of them).
    """
    return build_model(spec).eval()


@torch.no_grad()
def probe_digest(spec: ModelSpec, state: dict[str, torch.Tensor], seed: int) -> str:
    """The answer a model with parameters ``state`` gives to the probe of ``seed``."""
    model = _probe_network(spec)
    model.load_state_dict(state)
    outputs = model(probe_batch(spec, seed)).numpy()
    rounded = np.round(outputs.astype(np.float64), DECIMALS) + 0.0  # -0.0 and 0.0 alike
    return hashlib.sha256(rounded.tobytes()).hexdigest()


def probe_answer(spec: ModelSpec, state: dict[str, torch.Tensor], seed: int) -> ConfigRecord:
    """The record a reply carries: the digest of ``state``'s answer to the probe of ``seed``."""
    return ConfigRecord({R.PROBE_DIGEST: probe_digest(spec, state, seed)})


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
