"""Why a party is flagged: one code per reason, one sentence per code.

Codes travel (a gossip site names a neighbour's flag by its code, and the
relay accepts no other); sentences are what the run's metrics, the round
lines, the ledger and the report show.
"""

from __future__ import annotations

# Any checker: an update holding NaN or inf, always dropped whatever the honesty mode.
NON_FINITE = "non-finite"
# The coordinator, on a server-side reply.
NO_PROBE_ANSWER = "no-probe-answer"
RETURNED_WHAT_IT_WAS_SENT = "returned-what-it-was-sent"
RANDOM_MODEL = "random-model"
WRONG_PROBE_ANSWER = "wrong-probe-answer"
SCALED = "scaled"
# A gossip site, on a neighbour's payload.
MISMATCH = "mismatch"
FAR = "far"
UNRELATED = "unrelated"
# The gossip relay, from the sketches it relays.
ONLY_MIXED = "only-mixed"
NO_SKETCH = "no-sketch"

SENTENCES = {
    NON_FINITE: "its update holds NaN or infinite values: dropped, never averaged",
    NO_PROBE_ANSWER: "gave no probe answer",
    RETURNED_WHAT_IT_WAS_SENT: (
        "returned the model it was sent: it did not train, or training changed nothing"
    ),
    RANDOM_MODEL: "its model shares no direction with the one it was sent: a random model",
    WRONG_PROBE_ANSWER: "its probe answer is not what the parameters it sent give",
    SCALED: "its update is {times:.0f}x the median site's: a random or scaled model",
    MISMATCH: "its payload is not the model whose probe answer or sketch it gave",
    FAR: "its payload is far out of line with the other neighbours': a random or scaled model",
    UNRELATED: "its payload shares no direction with its neighbours' models: a random model",
    ONLY_MIXED: (
        "its model is only a mix of the models it held and was sent: "
        "it did not train, or training changed nothing"
    ),
    NO_SKETCH: "gave no sketch of the model it sealed",
}
# What a gossip site may say of a neighbour (the egress guard lets no other code out).
NEIGHBOUR_CODES = frozenset({NON_FINITE, MISMATCH, FAR, UNRELATED})


def sentence(code: str, **detail: float) -> str:
    """The sentence for ``code``, with its figures (``SCALED`` takes ``times``)."""
    return SENTENCES[code].format(**detail)
