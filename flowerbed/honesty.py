"""What honesty checks share, at the coordinator, the gossip relay and gossip sites.

A model's answer to a public probe, the size of an update, which updates
are far out of line with the rest, whether a model is related at all
to the one it should have been trained from, and a linear sketch of a
model that shows whether it was only mixed from others.

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

import numpy as np
import torch
from flwr.app import ConfigRecord

from flowerbed import records as R
from flowerbed.models.factory import ModelSpec, reading_network

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
# A sketch has this many numbers; the mixing check needs well over one per model mixed.
SKETCH_SIZE = 64
# A model only mixed from others lies this close to their span, relative to its own size:
# float32 mixing leaves 3e-8 (six small CNNs); two SGD steps at rate 0.001 leave 1.4e-4.
MIXED_WITHIN = 1e-6


def probe_batch(spec: ModelSpec, seed: int) -> torch.Tensor:
    """``PROBE_SIZE`` public inputs for ``spec``'s network, from ``seed`` alone."""
    generator = torch.Generator().manual_seed(seed)
    shape = (PROBE_SIZE, spec.in_channels, *[PROBE_SIDE] * spec.spatial_dims)
    return torch.rand(shape, generator=generator)


@torch.no_grad()
def probe_digest(spec: ModelSpec, state: dict[str, torch.Tensor], seed: int) -> str:
    """The answer a model with parameters ``state`` gives to the probe of ``seed``."""
    model = reading_network(spec)
    model.load_state_dict(state)
    outputs = model(probe_batch(spec, seed)).numpy()
    rounded = np.round(outputs.astype(np.float64), DECIMALS) + 0.0  # -0.0 and 0.0 alike
    return hashlib.sha256(rounded.tobytes()).hexdigest()


def probe_answer(spec: ModelSpec, state: dict[str, torch.Tensor], seed: int) -> ConfigRecord:
    """The record a reply carries: the digest of ``state``'s answer to the probe of ``seed``."""
    return ConfigRecord({R.PROBE_DIGEST: probe_digest(spec, state, seed)})


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


def sketch(state: dict[str, torch.Tensor], seed: int) -> list[float]:
    """A count sketch of ``state``'s float parameters: ``SKETCH_SIZE`` signed sums of them.

    Each parameter goes, with a random sign, into one of the sums, both drawn
    from ``seed`` (the run's, so every round sketches alike). The sketch is
    linear in the parameters: the sketch of a mix of models is the same mix
    of their sketches. That lets the gossip relay, which sees sketches and
    never a model, tell a model that was trained from one that was only mixed
    (``only_mixed``). What it reveals is ``SKETCH_SIZE`` sums over
    thousands of parameters each, of a model every neighbour receives anyway.
    """
    generator = torch.Generator().manual_seed(seed)
    sums = torch.zeros(SKETCH_SIZE, dtype=torch.float64)
    for name in sorted(name for name, tensor in state.items() if tensor.is_floating_point()):
        values = state[name].flatten().double()
        buckets = torch.randint(SKETCH_SIZE, values.shape, generator=generator)
        signs = torch.randint(2, values.shape, generator=generator, dtype=torch.float64) * 2 - 1
        sums.index_add_(0, buckets, values * signs)
    return sums.tolist()


def valid_sketch(value: object) -> list[float] | None:
    """``value`` if it is a sketch (``SKETCH_SIZE`` finite numbers), else None: a claim from
    another party is checked before anything computes with it."""
    if (
        isinstance(value, list)
        and len(value) == SKETCH_SIZE
        and all(isinstance(x, float) and math.isfinite(x) for x in value)
    ):
        return value
    return None


def same_sketch(mine: list[float], claimed: object) -> bool:
    """Whether a sketch recomputed from a payload is the one its sender claimed (to float error)."""
    numbers = valid_sketch(claimed)
    return numbers is not None and bool(np.allclose(mine, numbers, rtol=1e-9, atol=1e-9))


def only_mixed(sent: list[float], held: list[float], received: list[list[float]]) -> bool:
    """Whether the model sketched as ``sent`` is only a mix of ``held`` and ``received``.

    A mix (any weights summing to one, clipped or not, some neighbours left
    out) lies in the affine span of the sketches of the site's own model and
    its neighbours'; training takes it out of that span. With too many
    models for the sketch to tell apart, the answer is no: no honest site is
    ever flagged for a large neighbourhood.
    """
    if len(received) + 1 > SKETCH_SIZE // 2:
        return False
    start = np.asarray(held)
    target = np.asarray(sent) - start
    if received:
        directions = np.stack([np.asarray(r) - start for r in received], axis=1)
        weights, *_ = np.linalg.lstsq(directions, target, rcond=None)
        target = target - directions @ weights
    return float(np.linalg.norm(target)) <= MIXED_WITHIN * float(np.linalg.norm(sent))
