"""The coordinator's checks on the replies it aggregates.

Each train instruction carries a fresh probe seed (``honesty.probe``); a site
answers with the digest of its returned model's outputs on the probe. The
coordinator, which holds the parameters every site returns, then flags:

* a site that gave no probe answer;
* a site whose answer is the answer of the model it was sent: it returned
  that model without training (a free rider, or a stale model), or its
  training changed nothing (a site whose every example the model already
  fits exactly has zero gradients; it contributes nothing either);
* a site whose parameters share no direction with the model it was sent
  (``measures.unrelated``): a random model;
* for a random share of the replies (``[run] probe_share``), a site whose
  answer is not what its returned parameters give: it claims to hold
  another model than the one it sent;
* a site whose update is more than ``measures.FAR_FACTOR`` times the median
  site's (with at least three replies): a random or scaled model.

The strategy hands the flags to its observer, which logs them and writes
them to the coordinator's ledger; ``[run] honesty = "exclude"`` leaves
flagged sites out of that round's aggregate.
"""

from __future__ import annotations

import math
import random

from flwr.app import ArrayRecord, Message

from flowerbed.honesty import reasons
from flowerbed.honesty.measures import distance, far_out, unrelated
from flowerbed.honesty.probe import probe_digest
from flowerbed.protocol import records as R
from flowerbed.protocol.arrays import to_state_dict
from flowerbed.protocol.model_spec import ModelSpec


def flag_replies(
    spec: ModelSpec,
    sent: ArrayRecord,
    seed: int,
    replies: list[Message],
    share: float,
    rng: random.Random,
) -> dict[int, str]:
    """Index into ``replies`` -> why that reply is flagged (replies not listed pass)."""
    given = to_state_dict(sent)
    stale = probe_digest(spec, given, seed)
    states = [to_state_dict(reply.content[R.ARRAYS]) for reply in replies]
    far = far_out([distance(state, given) for state in states])
    random_models = unrelated(states, given)
    audited = set(rng.sample(range(len(replies)), math.ceil(share * len(replies))))
    flags = {}
    for index, (reply, state) in enumerate(zip(replies, states, strict=True)):
        answer = reply.content.config_records.get(R.PROBE)
        digest = None if answer is None else answer.get(R.PROBE_DIGEST)
        if digest is None:
            flags[index] = reasons.sentence(reasons.NO_PROBE_ANSWER)
        elif digest == stale:
            flags[index] = reasons.sentence(reasons.RETURNED_WHAT_IT_WAS_SENT)
        elif index in random_models:
            flags[index] = reasons.sentence(reasons.RANDOM_MODEL)
        elif index in audited and probe_digest(spec, state, seed) != digest:
            flags[index] = reasons.sentence(reasons.WRONG_PROBE_ANSWER)
        elif index in far:
            flags[index] = reasons.sentence(reasons.SCALED, times=far[index])
    return flags
