"""Honesty checks: catch a site whose reply is not the work it claims.

Each train instruction carries a fresh probe seed (``models.probe``); a site
answers with the digest of its returned model's outputs on the probe. The
coordinator, which holds the parameters every site returns, then flags:

* a site that gave no probe answer;
* a site whose answer is the answer of the model it was sent: it returned
  that model without training (a free rider, or a stale model);
* for a random share of the replies (``[run] probe_share``), a site whose
  answer is not what its returned parameters give: it claims to hold
  another model than the one it sent;
* a site whose update is more than ``FAR_FACTOR`` times the median site's
  (with at least three replies): a random or scaled model.

Flagged sites are written to the coordinator's ledger and the run's
metrics, and ``[run] honesty = "exclude"`` leaves them out of that round's
aggregate. Gossip has no coordinator that holds parameters; these checks
are for server-side strategies.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from flwr.app import ArrayRecord, Message

from flowerbed import records as R
from flowerbed.models import ModelSpec
from flowerbed.models.probe import probe_digest

FAR_FACTOR = 5.0
MIN_FOR_MEDIAN = 3

State = dict[str, torch.Tensor]


def flag_replies(
    spec: ModelSpec,
    sent: ArrayRecord,
    seed: int,
    replies: list[Message],
    share: float,
    rng: random.Random,
) -> dict[int, str]:
    """Index into ``replies`` -> why that reply is flagged (replies not listed pass)."""
    given = sent.to_torch_state_dict()
    stale = probe_digest(spec, given, seed)
    states = [reply.content[R.ARRAYS].to_torch_state_dict() for reply in replies]
    distances = [_distance(state, given) for state in states]
    median = float(np.median(distances)) if len(distances) >= MIN_FOR_MEDIAN else 0.0
    audited = set(rng.sample(range(len(replies)), math.ceil(share * len(replies))))
    flags = {}
    for index, (reply, state) in enumerate(zip(replies, states, strict=True)):
        answer = reply.content.config_records.get(R.PROBE)
        digest = None if answer is None else answer.get(R.PROBE_DIGEST)
        if digest is None:
            flags[index] = "gave no probe answer"
        elif digest == stale:
            flags[index] = "returned the model it was sent: it did not train"
        elif index in audited and probe_digest(spec, state, seed) != digest:
            flags[index] = "its probe answer is not what the parameters it sent give"
        elif median > 0 and distances[index] > FAR_FACTOR * median:
            times = distances[index] / median
            flags[index] = f"its update is {times:.0f}x the median site's: a random or scaled model"
    return flags


def _distance(state: State, given: State) -> float:
    return math.sqrt(
        sum(
            float(((state[name] - tensor) ** 2).sum())
            for name, tensor in given.items()
            if tensor.is_floating_point()
        )
    )
