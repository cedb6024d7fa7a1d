"""Who answered a round, who did not and why, and whether enough did to go on.

Every strategy addresses every site of the roll call each round and waits
at most ``[run] round_timeout`` seconds (Flower's ``send_and_receive``
returns early when every site has answered, or when the SuperLink reports
a node gone: its SuperNode missed its heartbeats). A site that answered
with an error, or not at all, is named with why, to the observer (the
round line, ``metrics.csv``, ``status.json``); the coordinator's ledger
records the same (``audit.ledgered_grid``). The run goes on while at
least ``[run] min_sites`` sites answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr.app import Message
from flwr.common.constant import ErrorCode

from flowerbed.errors import RunStopped
from flowerbed.protocol import records as R
from flowerbed.strategies.observer import RoundObserver
from flowerbed.strategies.roll import Roll


@dataclass
class Attendance:
    """One phase of a round: the replies that came back, and the sites that failed, with why."""

    answered: list[Message] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def why_failed(reply: Message) -> str:
    """An error reply as one line: the site's own error, or what Flower says happened."""
    if reply.error.code == R.SITE_ERROR:
        return R.split_site_error(reply.error.reason)[1]
    if reply.error.code == ErrorCode.NODE_UNAVAILABLE:
        return "its SuperNode stopped reporting to the SuperLink (down, or cut off)"
    return " ".join(reply.error.reason.split())


def take_attendance(
    server_round: int,
    split: str,
    roll: Roll,
    replies: Iterable[Message],
    timeout: float,
    observer: RoundObserver,
) -> Attendance:
    """Sort the replies of one phase; report each failed or silent site to ``observer``."""
    attendance, replied = Attendance(), set()
    for reply in replies:
        node = reply.metadata.src_node_id
        replied.add(node)
        if reply.has_error():
            attendance.missing[roll.name_of(node)] = why_failed(reply)
        else:
            attendance.answered.append(reply)
    for name, node in zip(roll.names, roll.node_ids, strict=True):
        if node not in replied:
            attendance.missing[name] = f"no answer within {timeout:g} s ([run] round_timeout)"
    for site, why in sorted(attendance.missing.items()):
        observer.site_failed(server_round, split, site, why)
    return attendance


def require_quorum(server_round: int, answered: int, missing: dict[str, str], least: int) -> None:
    """``RunStopped`` naming the missing sites when fewer than ``least`` answered."""
    if answered >= least:
        return
    named = "; ".join(f"{site}: {why}" for site, why in sorted(missing.items()))
    raise RunStopped(
        f"round {server_round}: {answered} site(s) answered, fewer than [run] min_sites = "
        f"{least}; missing: {named}"
    )
