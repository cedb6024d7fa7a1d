"""What a strategy tells the outside world each round: one row per site and split.

Strategies stay free of files and screens; the run folder and the progress
display implement ``RoundObserver``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flwr.app import ArrayRecord, Message

from flowerbed.protocol import records as R

NAN = float("nan")


@dataclass(frozen=True)
class SiteRow:
    """One site's declared metrics for one round and split (train or test)."""

    round: int
    site: str
    country: str
    split: str
    num_examples: int
    loss: float
    auc: float
    accuracy: float
    dice: float  # segmentation: mean Dice over foreground classes (NaN for classification)
    epsilon: float
    epsilon_budget: float
    status: str  # "ok"; "refused": its budget could not pay; "failed": no usable answer
    bytes_sent: int  # payload bytes of the reply: parameters or sealed payloads
    disagreement: float  # gossip: mean squared parameter distance to the neighbours heard
    membership_auc: float  # test rows: membership-inference attack AUC on the site's model
    flag: str = ""  # train rows: why an honesty check flagged the reply, if it did
    error: str = ""  # failed rows: the site's own one-line error, or why it is missing

    @classmethod
    def from_reply(
        cls, server_round: int, split: str, reply: Message, metrics_key: str = R.METRICS
    ) -> SiteRow:
        metrics = reply.content[metrics_key]
        site = reply.content[R.SITE]
        refused = bool(metrics.get(R.BUDGET_EXHAUSTED, 0))
        return cls(
            round=server_round,
            site=str(site[R.SITE_NAME]),
            country=str(site[R.SITE_COUNTRY]),
            split=split,
            num_examples=int(metrics[R.NUM_EXAMPLES]),
            loss=float(metrics.get(R.LOSS, NAN)),
            auc=float(metrics.get(R.AUC, NAN)),
            accuracy=float(metrics.get(R.ACCURACY, NAN)),
            dice=float(metrics.get(R.DICE, NAN)),
            epsilon=float(metrics[R.EPSILON]),
            epsilon_budget=float(metrics[R.EPSILON_BUDGET]),
            status="refused" if refused else "ok",
            bytes_sent=payload_bytes(reply) if split == "train" else 0,
            disagreement=float(metrics.get(R.DISAGREEMENT, NAN)),
            membership_auc=float(metrics.get(R.MEMBERSHIP_AUC, NAN)),
        )

    @classmethod
    def failed(cls, server_round: int, split: str, site: str, country: str, error: str) -> SiteRow:
        """The row of a site that failed or did not answer: no scores, its error."""
        return cls(
            round=server_round, site=site, country=country, split=split, num_examples=0,
            loss=NAN, auc=NAN, accuracy=NAN, dice=NAN, epsilon=NAN, epsilon_budget=NAN,
            status="failed", bytes_sent=0, disagreement=NAN, membership_auc=NAN, error=error,
        )  # fmt: skip


def payload_bytes(reply: Message) -> int:
    """Bytes of model content in a reply: its parameters, or its sealed payloads."""
    arrays = reply.content.array_records.get(R.ARRAYS)
    sealed = reply.content.config_records.get(R.SEALED)
    total = sum(len(array.data) for array in arrays.values()) if arrays else 0
    return total + (sum(len(blob) for blob in sealed.values()) if sealed else 0)


class RoundObserver(Protocol):
    def site_rows(self, rows: list[SiteRow]) -> None:
        """Rows of one round and split, as soon as the replies are in."""

    def site_failed(self, server_round: int, split: str, site: str, reason: str) -> None:
        """A site answered with an error, or not at all before the round's deadline."""

    def site_flagged(
        self, server_round: int, site: str, reason: str, excluded: bool, reporter: str | None
    ) -> None:
        """An honesty check flagged ``site`` (``reporter``: the gossip neighbour that did, or
        None for the coordinator's own checks); ``excluded``: left out of the round's
        aggregate. The observer that owns the coordinator's ledger records it there."""

    def round_done(self, server_round: int) -> None:
        """Training and evaluation of ``server_round`` are complete."""

    def checkpoint(self, server_round: int, arrays: ArrayRecord) -> None:
        """The global model after ``server_round`` (server-side strategies), to resume from."""
