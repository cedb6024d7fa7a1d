"""Honesty checks: catch a site whose reply is not the work it claims.

Each train instruction carries a fresh probe seed (``flowerbed.honesty``); a site
answers with the digest of its returned model's outputs on the probe. The
coordinator, which holds the parameters every site returns, then flags:

* a site that gave no probe answer;
* a site whose answer is the answer of the model it was sent: it returned
  that model without training (a free rider, or a stale model), or its
  training changed nothing (a site whose every example the model already
  fits exactly has zero gradients; it contributes nothing either);
* a site whose parameters share no direction with the model it was sent
  (``honesty.unrelated``): a random model;
* for a random share of the replies (``[run] probe_share``), a site whose
  answer is not what its returned parameters give: it claims to hold
  another model than the one it sent;
* a site whose update is more than ``honesty.FAR_FACTOR`` times the median site's
  (with at least three replies): a random or scaled model.

Gossip sites check their neighbours' payloads themselves (``gossip_site``).

Flagged sites are written to the coordinator's ledger and the run's
metrics, and ``[run] honesty = "exclude"`` leaves them out of that round's
aggregate.
"""

from __future__ import annotations

import math
import random
from logging import WARNING

from flwr.app import ArrayRecord, Message
from flwr.common.logger import log
from flwr.serverapp import Grid

from flowerbed import records as R
from flowerbed.arrays import to_state_dict
from flowerbed.audit.entries import flag_fields
from flowerbed.honesty import distance, far_out, probe_digest, unrelated
from flowerbed.models import ModelSpec


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
            flags[index] = "gave no probe answer"
        elif digest == stale:
            flags[index] = (
                "returned the model it was sent: it did not train, or training changed nothing"
            )
        elif index in random_models:
            flags[index] = "its model shares no direction with the one it was sent: a random model"
        elif index in audited and probe_digest(spec, state, seed) != digest:
            flags[index] = "its probe answer is not what the parameters it sent give"
        elif index in far:
            flags[index] = (
                f"its update is {far[index]:.0f}x the median site's: a random or scaled model"
            )
    return flags


def record_flag(
    grid: Grid,
    honesty: str,
    server_round: int,
    site: str,
    reason: str,
    reporter: str | None = None,
) -> None:
    """Log a flag on ``site`` and write it to the coordinator's ledger (when the grid keeps
    one), with who raised it: a gossip neighbour, or (None) the coordinator itself."""
    log(
        WARNING,
        "round %d: %s flagged %s: %s",
        server_round,
        reporter or "coordinator",
        site,
        reason,
    )
    ledger = getattr(grid, "ledger", None)
    if ledger is not None:
        excluded = honesty == "exclude"
        ledger.append(flag_fields(server_round, site, reason, excluded, reporter), sign=True)
