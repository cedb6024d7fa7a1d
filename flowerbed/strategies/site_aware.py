"""Per-site reporting and budget refusals, layered over Flower's own strategies.

``SiteAware`` is mixed in front of a ``flwr.serverapp.strategy`` class: it
reports every site's reply to the observer, takes sites that refused (their
privacy budget is spent) or failed out of aggregation, and stops the run
loudly when no site can train any more. Averaging itself stays Flower's.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import WARNING

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.common.logger import log

from flowerbed.errors import RunStopped
from flowerbed.strategies.observer import RoundObserver, SiteRow
from flowerbed.strategies.roll_call import Roll


class SiteAware:
    """Mixin for a Flower strategy; set ``observer`` and ``roll`` before ``start``."""

    observer: RoundObserver
    roll: Roll

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        answered, rows = self._report(server_round, "train", replies)
        trained = [reply for reply, row in zip(answered, rows, strict=True) if row.status == "ok"]
        for row in rows:
            if row.status == "refused":
                log(
                    WARNING,
                    "site %s refused round %d: epsilon spent %.3f, budget %.3f",
                    row.site,
                    server_round,
                    row.epsilon,
                    row.epsilon_budget,
                )
        if not trained:
            raise RunStopped(
                f"round {server_round}: no site could train (every privacy budget is spent "
                "or every site failed); the last global model is kept"
            )
        return super().aggregate_train(server_round, trained)  # type: ignore[misc]

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        answered, _ = self._report(server_round, "test", replies)
        metrics = super().aggregate_evaluate(server_round, answered)  # type: ignore[misc]
        self.observer.round_done(server_round)
        return metrics

    def _report(
        self, server_round: int, split: str, replies: Iterable[Message]
    ) -> tuple[list[Message], list[SiteRow]]:
        """Hand every reply to the observer; return the answered ones and their rows."""
        answered = []
        for reply in replies:
            if reply.has_error():
                self.observer.site_failed(
                    server_round, split, self.roll.name_of(reply.metadata.src_node_id),
                    reply.error.reason,
                )  # fmt: skip
            else:
                answered.append(reply)
        rows = [SiteRow.from_reply(server_round, split, reply) for reply in answered]
        self.observer.site_rows(rows)
        return answered, rows
