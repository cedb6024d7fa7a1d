"""The ledger entry each side writes for a message, and the head it attaches.

Sites and the coordinator describe a transfer the same way, so ``audit
verify`` can match the sender's entry to the receiver's: the content digest
and size, the message kind and round, and for gossip each sealed payload's
digest (``sealed_for`` at the sender, ``sealed_from`` at the receiver).
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Message, RecordDict

from flowerbed.audit.digest import blob_digest, content_digest
from flowerbed.audit.ledger import Ledger, SignedHead
from flowerbed.audit.schema import MessageEntry, SealedItem
from flowerbed.protocol import records as R


def server_round(content: RecordDict) -> int:
    config = content.config_records.get(R.CONFIG)
    return int(config.get(R.SERVER_ROUND, 0)) if config is not None else 0


def message_fields(
    message: Message,
    content: RecordDict,
    direction: str,
    peer: str,
    peer_country: str,
    epsilon: float | None,
    kind: str,
    round_: int,
    digest: tuple[str, int] | None = None,
) -> MessageEntry:
    """What one entry records about one message, inbound or outbound.

    ``digest`` is ``content_digest(content)`` when the caller has it already.
    """
    sha256, size = digest or content_digest(content)
    fields: MessageEntry = {
        "direction": direction,
        "kind": kind,
        "run": message.metadata.run_id,
        "round": round_,
        "peer": peer,
        "peer_country": peer_country,
        "bytes": size,
        "sha256": sha256,
        "carries": sorted(name for name in content if name != R.LEDGER_HEAD),
        "epsilon": epsilon,
    }
    head = content.config_records.get(R.LEDGER_HEAD)
    if head is not None:
        fields["peer_head"] = dict(head)
    return fields


def sealed_list(
    record: ConfigRecord | None, countries: dict[str, str] | None = None
) -> list[SealedItem]:
    """Per sealed payload: the other site, its digest and size (and country, when known)."""
    if record is None:
        return []
    listed: list[SealedItem] = []
    for peer, blob in sorted(record.items()):
        item: SealedItem = {"peer": peer, "sha256": blob_digest(bytes(blob)), "bytes": len(blob)}
        if countries is not None:
            item["country"] = countries.get(peer)
        listed.append(item)
    return listed


def attach_head(content: RecordDict, ledger: Ledger, entry: dict) -> None:
    """Send the signed head of ``entry`` along with the message it describes."""
    content[R.LEDGER_HEAD] = ConfigRecord(SignedHead.of(ledger.party, entry).to_dict())
