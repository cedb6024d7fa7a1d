"""A gossip site's checks on the payloads its neighbours sealed for it."""

from __future__ import annotations

import torch
from flwr.app import Message

from flowerbed.honesty import reasons
from flowerbed.honesty.measures import (
    MIN_FOR_MEDIAN,
    distance,
    far_out,
    finite,
    median_model,
    unrelated,
)
from flowerbed.honesty.probe import probe_digest
from flowerbed.honesty.sketch import same_sketch, sketch
from flowerbed.protocol import records as R
from flowerbed.protocol.model_spec import ModelSpec

State = dict[str, torch.Tensor]
Neighbours = dict[str, tuple[float, State]]  # sender -> (mixing weight, its model)


def non_finite(neighbours: Neighbours) -> set[str]:
    """Neighbours whose payload holds NaN or inf: dropped before any other check, in
    either honesty mode."""
    return {peer for peer, (_, state) in neighbours.items() if not finite(state)}


def check_neighbours(
    msg: Message, spec: ModelSpec, own: State, neighbours: Neighbours
) -> dict[str, str]:
    """Neighbour -> a ``reasons.NEIGHBOUR_CODES`` code, for payloads that fail the checks.

    A payload must be the model whose probe answer and sketch its sender gave
    the relay (a sender that seals one model and claims another, or sends
    different models to different neighbours, fails: the relay's check that
    a site trained rests on the sketch), must share a direction with the
    coordinate-wise median of this site's own model and its neighbours'
    (neighbours train from mixes of each other's models; a random model
    shares none; the median keeps one random model, the site's own included,
    from setting the reference), and must not lie far out of line with the
    other neighbours' (a random or scaled model).
    """
    claims = msg.content.config_records.get(R.PROBE_CLAIMS, {})
    sketches = msg.content.config_records.get(R.SKETCH_CLAIMS, {})
    seed = int(msg.content[R.CONFIG].get(R.PREVIOUS_PROBE_SEED, 0))
    run_seed = int(msg.content[R.CONFIG].get(R.SEED, 0))
    peers = list(neighbours)
    states = [neighbours[peer][1] for peer in peers]
    models = [own, *states]
    reference = median_model(models) if len(models) >= MIN_FOR_MEDIAN else own
    random_models = unrelated(states, reference)
    flags = {}
    for index, (peer, state) in enumerate(zip(peers, states, strict=True)):
        if (peer in claims and probe_digest(spec, state, seed) != str(claims[peer])) or (
            peer in sketches and not same_sketch(sketch(state, run_seed), sketches[peer])
        ):
            flags[peer] = reasons.MISMATCH
        elif index in random_models:
            flags[peer] = reasons.UNRELATED
    far = far_out([distance(state, own) for state in states])
    for index in far:
        flags.setdefault(peers[index], reasons.FAR)
    return flags
