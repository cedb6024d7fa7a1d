"""A linear sketch of a model: what shows the gossip relay, which never sees a model,
whether a site trained or only mixed what it was sent."""

from __future__ import annotations

import math

import numpy as np
import torch

# A sketch has this many numbers; the mixing check needs well over one per model mixed.
SKETCH_SIZE = 64
# A model only mixed from others lies this close to their span, relative to its own size:
# float32 mixing leaves 3e-8 (six small CNNs); two SGD steps at rate 0.001 leave 1.4e-4.
MIXED_WITHIN = 1e-6


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
