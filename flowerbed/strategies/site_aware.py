"""Per-site reporting and budget refusals, layered over Flower's own strategies.

``SiteAware`` is mixed in front of a ``flwr.serverapp.strategy`` class: it
addresses every site of the roll call, reports every site's reply (or its
absence, ``strategies.attendance``) to the observer, takes sites that refused
(their privacy budget is spent) or failed out of aggregation, runs the honesty
checks (``honesty.replies``) and reports their flags to the observer, and stops
the run loudly when no site can train any more. Averaging itself stays Flower's.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
from collections.abc import Iterable
from logging import WARNING

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid

from flowerbed.config import Federation, RunSettings
from flowerbed.errors import RunStopped
from flowerbed.honesty import reasons
from flowerbed.honesty.measures import finite
from flowerbed.honesty.replies import flag_replies
from flowerbed.protocol import records as R
from flowerbed.protocol.arrays import to_state_dict
from flowerbed.strategies.attendance import require_quorum, take_attendance
from flowerbed.strategies.observer import RoundObserver, SiteRow
from flowerbed.strategies.roll import Roll
from flowerbed.strategies.roll_call import RollGrid


class SiteAware:
    """Mixin for a Flower strategy; ``bind`` it to the run before ``start``."""

    observer: RoundObserver
    roll: Roll
    run: RunSettings

    def bind(self, federation: Federation, observer: RoundObserver, roll: Roll) -> SiteAware:
        self.observer, self.roll, self.run = observer, roll, federation.run
        self.min_sites = federation.min_sites
        self._audit_draws = random.Random(federation.run.seed)
        self._sent: ArrayRecord | None = None  # the model of this round's instructions
        self._probe_seed = 0
        self._done = 0  # rounds a resumed run played before this start
        self._aggregate: ArrayRecord | None = None  # this round's new global model
        return self

    def resume_after(self, rounds_done: int) -> None:
        """Number the rounds of ``start`` after ``rounds_done``: Flower's loop counts from 1
        each start, a resumed run goes on with round ``rounds_done + 1``."""
        self._done = rounds_done

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's instructions, each with this round's fresh probe seed."""
        self._sent, self._probe_seed = arrays, secrets.randbelow(2**31)
        config = ConfigRecord({**config, R.PROBE_SEED: self._probe_seed})
        return super().configure_train(  # type: ignore[misc]
            server_round + self._done, arrays, config, RollGrid(grid, self.roll.node_ids)
        )

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's instructions, to every site of the roll call."""
        return super().configure_evaluate(  # type: ignore[misc]
            server_round + self._done, arrays, config, RollGrid(grid, self.roll.node_ids)
        )

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self._done
        answered, rows, missing = self._collect(server_round, "train", replies)
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
        ok = [i for i, row in enumerate(rows) if row.status == "ok"]
        broken = self._non_finite(server_round, [answered[i] for i in ok], [rows[i] for i in ok])
        ok = [i for i in ok if rows[i].site not in broken]
        flags = self._honesty(server_round, [answered[i] for i in ok], [rows[i] for i in ok])
        flags.update(broken)
        rows = [dataclasses.replace(r, flag=flags.get(r.site, "")) for r in rows]
        self.observer.site_rows(rows)
        require_quorum(server_round, len(answered), missing, self.min_sites)
        excluded = set(flags) if self.run.honesty == "exclude" else set(broken)
        trained = [answered[i] for i in ok if rows[i].site not in excluded]
        if not trained:
            raise RunStopped(
                f"round {server_round}: no site could train (every privacy budget is spent, "
                "every site failed, or every site was excluded); the last global model is kept"
            )
        arrays, metrics = super().aggregate_train(server_round, trained)  # type: ignore[misc]
        self._aggregate = arrays
        return arrays, metrics

    def _non_finite(
        self, server_round: int, replies: list[Message], rows: list[SiteRow]
    ) -> dict[str, str]:
        """Site -> why, for updates holding NaN or inf: flagged and never averaged, in either
        honesty mode (one would make the average NaN for every site)."""
        reason = reasons.sentence(reasons.NON_FINITE)
        broken = {
            row.site: reason
            for reply, row in zip(replies, rows, strict=True)
            if not finite(to_state_dict(reply.content[R.ARRAYS]))
        }
        for site in broken:
            self.observer.site_flagged(server_round, site, reason, True, None)
        return broken

    def _honesty(
        self, server_round: int, replies: list[Message], rows: list[SiteRow]
    ) -> dict[str, str]:
        """Site -> why it is flagged, each also reported to the observer."""
        if self._sent is None:
            return {}  # no instruction of ours went out: nothing to check against
        flags = flag_replies(
            self.roll.spec, self._sent, self._probe_seed, replies, self.run.probe_share,
            self._audit_draws,
        )  # fmt: skip
        named = {rows[index].site: reason for index, reason in flags.items()}
        for site, reason in named.items():
            self.observer.site_flagged(
                server_round, site, reason, self.run.honesty == "exclude", None
            )
        return named

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        server_round += self._done
        answered, _ = self._report(server_round, "test", replies)
        metrics = super().aggregate_evaluate(server_round, answered)  # type: ignore[misc]
        self.observer.round_done(server_round)
        if self._aggregate is not None:
            self.observer.checkpoint(server_round, self._aggregate)
        return metrics

    def _report(
        self, server_round: int, split: str, replies: Iterable[Message]
    ) -> tuple[list[Message], list[SiteRow]]:
        """Hand every reply to the observer; return the answered ones and their rows."""
        answered, rows, _ = self._collect(server_round, split, replies)
        self.observer.site_rows(rows)
        return answered, rows

    def _collect(
        self, server_round: int, split: str, replies: Iterable[Message]
    ) -> tuple[list[Message], list[SiteRow], dict[str, str]]:
        """Report failures to the observer; the answered replies and their rows, by site name,
        and the sites that failed or went missing, with why.

        Whatever order the replies arrived in: the aggregate's float sums, and
        so a seeded run's every model, would otherwise depend on it.
        """
        attendance = take_attendance(
            server_round, split, self.roll, replies, self.run.round_timeout, self.observer
        )
        answered = attendance.answered
        rows = [SiteRow.from_reply(server_round, split, reply) for reply in answered]
        order = sorted(range(len(rows)), key=lambda index: rows[index].site)
        return (
            [answered[index] for index in order],
            [rows[index] for index in order],
            attendance.missing,
        )
