"""One fingerprint for a message's content, the same at the sender and the receiver.

Both ends hash the content's canonical protobuf form (records sorted by
name, config and metric keys sorted; deterministic serialisation), leaving
out the ledger head that travels beside it. Equal digests on both sides of a
transfer are what ``audit verify`` matches.
"""

from __future__ import annotations

import hashlib

from flwr.app import ConfigRecord, MetricRecord, RecordDict
from flwr.common.serde import recorddict_to_proto

from flowerbed.protocol import records as R


def content_digest(content: RecordDict) -> tuple[str, int]:
    """SHA-256 (hex) and byte size of ``content`` without its ledger head."""
    canonical = RecordDict()
    for name in sorted(content.keys()):
        if name == R.LEDGER_HEAD:
            continue
        record = content[name]
        if isinstance(record, ConfigRecord | MetricRecord):
            record = type(record)(dict(sorted(record.items())))
        canonical[name] = record
    raw = recorddict_to_proto(canonical).SerializeToString(deterministic=True)
    return hashlib.sha256(raw).hexdigest(), len(raw)


def blob_digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()
