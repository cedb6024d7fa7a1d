"""The coordinator's ledger: a Flower ``Grid`` that writes every message it relays.

The coordinator is a party like any site (it has a country, and in
server-side mode every site's update travels to it). Wrapping the Grid
means no strategy can send or receive around the ledger. Each instruction
is written and signed before it leaves, with the signed head attached;
each reply is written with the head its site attached; an error reply
(a site down, a refusal), or no reply by the deadline (``missing``), is
written too, naming the instruction that may never have arrived. A reply names its
site, so the sites of node ids are learnt as replies arrive; instructions
record the node id and, once known, the site.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid

from flowerbed.audit.digest import content_digest
from flowerbed.audit.entries import attach_head, message_fields, sealed_list, server_round
from flowerbed.audit.ledger import Ledger
from flowerbed.audit.schema import ERROR, MISSING, close_entry, failure_entry
from flowerbed.config import Federation
from flowerbed.protocol import records as R

PULL_INTERVAL_S = 0.2  # Flower's deployed grid waits 3 s between pulls; its in-memory one 0.1


def exchange(grid: Grid, messages: list[Message], timeout: float | None) -> list[Message]:
    """``grid.send_and_receive``, pulling replies every ``PULL_INTERVAL_S``.

    Flower's deployed grid (``HttpGrid``) sleeps 3 s between pulls, so every
    message round of a deployed run waited 1.5 s on average after its last
    reply came in: a roll call and two exchanges a round. Its push and pull
    are Flower's own; only the wait between pulls is shorter.
    """
    waiting = set(grid.push_messages(messages))
    deadline = None if timeout is None else time.monotonic() + timeout
    replies: list[Message] = []
    while waiting:
        pulled = list(grid.pull_messages(waiting))
        replies.extend(pulled)
        waiting -= {reply.metadata.reply_to_message_id for reply in pulled}
        if not waiting or (deadline is not None and time.monotonic() >= deadline):
            break
        time.sleep(PULL_INTERVAL_S)
    return replies


def as_from_addressees(replies: list[Message], sent: list[Message]) -> list[Message]:
    """``replies``, each from the node it answers for.

    When a SuperNode stops reporting, the SuperLink answers its instructions itself,
    in its own name (node ``SUPERLINK_NODE_ID``). Made again as a reply to the
    instruction it answers, the error names the addressee, so the ledger, the
    strategies and the round line name the site that went missing, not "node 1".
    The instruction is found by the id the reply names; failing that (the id does
    not always survive the SuperLink's answer), the SuperLink's answers go to the
    addressees that did not answer themselves, in order: they all say the same thing.
    """
    by_id = {m.metadata.message_id: m for m in sent if m.metadata.message_id}
    answered = {r.metadata.src_node_id for r in replies}
    unclaimed = [m for m in sent if m.metadata.dst_node_id not in answered]
    mine = []
    for reply in replies:
        if reply.has_error() and reply.metadata.src_node_id == SUPERLINK_NODE_ID:
            instruction = by_id.get(reply.metadata.reply_to_message_id)
            if instruction is None and unclaimed:
                instruction = unclaimed[0]
            if instruction is not None:
                unclaimed = [m for m in unclaimed if m is not instruction]
                reply = Message(reply.error, reply_to=instruction)
        mine.append(reply)
    return mine


class LedgeredGrid:
    """Delegates to ``grid``; every message in or out is one entry of ``ledger``."""

    def __init__(self, grid: Grid, ledger: Ledger, federation: Federation) -> None:
        self.grid = grid
        self.ledger = ledger
        self.federation = federation
        self.site_of_node: dict[int, str] = {}

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str
    ) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        sent = list(messages)
        by_content: dict[int, tuple[str, int]] = {}  # digests by content: one per broadcast
        outbound = [self._outbound(m, by_content) for m in sent]
        entries = self.ledger.append_all(outbound, sign=True)
        for message, entry in zip(sent, entries, strict=True):
            # Flower's strategies give every message of a round one shared content;
            # each gets its own copy, so that it carries the head of its own entry.
            message.content = RecordDict(dict(message.content))
            attach_head(message.content, self.ledger, entry)
        digests = {m.metadata.dst_node_id: e["sha256"] for m, e in zip(sent, entries, strict=True)}
        rounds = {m.metadata.dst_node_id: server_round(m.content) for m in sent}
        replies = as_from_addressees(exchange(self.grid, sent, timeout), sent)
        received = []
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                received.append(
                    failure_entry(
                        ERROR, node, self.site_of_node.get(node), rounds.get(node, 0),
                        reply.error.reason, digests.get(node), code=reply.error.code,
                    )
                )  # fmt: skip
                continue
            site_record = reply.content.config_records.get(R.SITE)
            if site_record is not None:
                self.site_of_node[node] = str(site_record[R.SITE_NAME])
            received.append(
                {
                    **self._fields(reply, reply.content, "in", self.site_of_node.get(node)),
                    "node": node,
                    "sealed_from": sealed_list(reply.content.config_records.get(R.SEALED)),
                }
            )
        answered = {reply.metadata.src_node_id for reply in replies}
        unanswered = [m for m in sent if m.metadata.dst_node_id not in answered]
        self.ledger.append_all(received + [self._missing(m, digests, timeout) for m in unanswered])
        return replies

    def _missing(self, message: Message, digests: dict[int, str], timeout: float | None) -> dict:
        """The entry for an instruction no reply answered before the deadline."""
        node = message.metadata.dst_node_id
        waited = "the deadline" if timeout is None else f"{timeout:g} s"
        return failure_entry(
            MISSING, node, self.site_of_node.get(node), server_round(message.content),
            f"no reply within {waited}", digests.get(node),
        )  # fmt: skip

    def _outbound(self, message: Message, by_content: dict[int, tuple[str, int]]) -> dict:
        """The entry for an instruction; ``by_content`` keeps the batch's digests by content."""
        node = message.metadata.dst_node_id
        content = message.content
        if id(content) not in by_content:
            by_content[id(content)] = content_digest(content)
        return {
            **self._fields(
                message, content, "out", self.site_of_node.get(node), by_content[id(content)]
            ),
            "node": node,
            "sealed_for": sealed_list(content.config_records.get(R.INBOX)),
        }

    def _fields(
        self,
        message: Message,
        content: RecordDict,
        direction: str,
        site: str | None,
        digest: tuple[str, int] | None = None,
    ) -> dict:
        country = self.federation.country_of(site) if site else None
        group = message.metadata.group_id
        round_ = server_round(content) or (int(group) if group.isdigit() else 0)
        return message_fields(
            message, content, direction, site, country, None,
            message.metadata.message_type, round_, digest,
        )  # fmt: skip

    def close(self) -> None:
        """The final signed head: it vouches for every entry of the run."""
        self.ledger.append(close_entry(), sign=True)
