"""A party's tamper-evident ledger: append-only JSONL, hash-chained, heads signed.

Every message a party sends or receives is one entry: time, run, round,
kind, direction, peer and its country, byte size and SHA-256 of the
payload, epsilon spent so far, and the hash of the previous entry. The
first entry (genesis) names the party, its country and its Ed25519 public
key. An entry's ``hash`` is SHA-256 over its canonical JSON without the
``hash`` and ``signature`` fields, so changing any byte of any entry breaks
the chain from there on.

Signing every entry would cost an Ed25519 signature per message; instead
the party signs its *head* (index and hash of the latest entry) whenever a
head leaves with a message, and at the end: the signature is stored in that
entry, and through the chain a signed head vouches for every entry before
it. Receivers record the heads they are sent, so a party that later
rewrites its ledger, even as a fresh valid chain under a new key, disagrees
with its peers' records.

Appends are crash-safe: each entry is one line written, flushed and (for a
deployed party) fsynced at once. A torn last line (a crash mid-write) is detected on reading and
reported; it is never silently dropped or rewritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flowerbed.audit.schema import genesis_entry
from flowerbed.errors import FlowerbedError

GENESIS_PREVIOUS = "0" * 64
UNHASHED = ("hash", "signature")


class LedgerError(FlowerbedError):
    """A ledger cannot be read or appended to as a chain."""


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_DECODER = json.JSONDecoder()


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers: sorted-key compact JSON without hash and signature."""
    body = dict(entry)
    for key in UNHASHED:
        body.pop(key, None)
    return _CANONICAL.encode(body).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def public_key_hex(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def verify_signature(public_hex: str, signature_hex: str, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(signature_hex), message
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def head_message(party: str, index: int, head: str) -> bytes:
    """What a signed head signs: the party, the entry index and that entry's hash."""
    return f"flowerbed ledger head;party={party};index={index};hash={head}".encode()


@dataclass(frozen=True)
class SignedHead:
    """The latest entry of a party's ledger, vouched for by the party's key."""

    party: str
    index: int
    hash: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, party: str, entry: dict[str, Any]) -> SignedHead:
        """The signed head a signed ``entry`` of ``party``'s ledger makes."""
        return cls(party, int(entry["index"]), str(entry["hash"]), str(entry["signature"]))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SignedHead:
        return cls(str(raw["party"]), int(raw["index"]), str(raw["hash"]), str(raw["signature"]))

    def valid_for(self, public_hex: str) -> bool:
        return verify_signature(
            public_hex, self.signature, head_message(self.party, self.index, self.hash)
        )


@dataclass(frozen=True)
class ReadLedger:
    """A ledger as read from disk, line by line.

    ``entries`` holds one item per complete line, None where the line is not
    a JSON object (altered); ``torn`` is a last line cut off before its end.
    """

    path: Path
    entries: list[dict[str, Any] | None]
    torn: str | None


def read_ledger(path: Path) -> ReadLedger:
    """Parse every line; nothing is skipped or repaired, the verifier judges."""
    lines = Path(path).read_bytes().decode(errors="replace").split("\n")
    entries: list[dict[str, Any] | None] = []
    for line in lines[:-1]:
        try:
            entry = _DECODER.decode(line)
        except json.JSONDecodeError:
            entry = None
        entries.append(entry if isinstance(entry, dict) else None)
    torn = lines[-1] or None
    return ReadLedger(Path(path), entries, torn)


class Ledger:
    """One party's ledger file; ``append`` entries, ``sign_head`` when a head leaves."""

    def __init__(
        self, path: Path, party: str, key: Ed25519PrivateKey, durable: bool = True
    ) -> None:
        """``durable`` fsyncs every append; without it lines are flushed only (see ``open``)."""
        self.path = Path(path)
        self.party = party
        self.key = key
        self.durable = durable
        self._head: tuple[int, str] | None = None

    @classmethod
    def open(
        cls, path: Path, party: str, country: str, key: Ed25519PrivateKey, durable: bool = True
    ) -> Ledger:
        """The party's ledger, created with a genesis entry if it does not exist yet.

        A deployed party's ledger is durable. The simulated sites of one
        machine may skip the fsync: their ledgers share the disk of the run,
        which a crash ends as a whole, and a thousand sites' fsyncs would
        dominate the run's time.
        """
        ledger = cls(path, party, key, durable)
        if not ledger.path.exists():
            ledger.path.parent.mkdir(parents=True, exist_ok=True)
            ledger.append(genesis_entry(party, country, public_key_hex(key)))
        return ledger

    def head(self) -> tuple[int, str]:
        """Index and hash of the latest entry; a torn tail stops the party loudly."""
        if self._head is None:
            read = read_ledger(self.path)
            if read.torn is not None:
                raise LedgerError(
                    f"{self.path}: the last line is torn (a crash while writing?); "
                    "an auditor must see it, so nothing more is appended"
                )
            if not read.entries:
                return -1, GENESIS_PREVIOUS
            last = read.entries[-1]
            if last is None:
                raise LedgerError(f"{self.path}: the last entry is unreadable; nothing is appended")
            self._head = (int(last["index"]), str(last["hash"]))
        return self._head

    def append(self, fields: dict[str, Any], sign: bool = False) -> dict[str, Any]:
        """Add one entry after the head, durably, and return it.

        ``sign`` makes the entry a signed head: its ``signature`` field signs
        the party, index and hash (use it for every entry whose head leaves
        with a message, and for the last).
        """
        return self.append_all([fields], sign)[0]

    def append_all(self, batch: list[dict[str, Any]], sign: bool = False) -> list[dict[str, Any]]:
        """Add entries in order with one fsync for the batch (a round's messages, say).

        Nothing of the batch leaves before this returns, so a crash loses at
        most entries whose messages were never sent.
        """
        index, previous = self.head() if self.path.exists() else (-1, GENESIS_PREVIOUS)
        entries, lines = [], []
        for fields in batch:
            index += 1
            entry = {
                "index": index,
                "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                **fields,
                "prev": previous,
            }
            entry["hash"] = previous = entry_hash(entry)
            if sign:
                message = head_message(self.party, index, entry["hash"])
                entry["signature"] = self.key.sign(message).hex()
            entries.append(entry)
            lines.append(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        with open(self.path, "a", encoding="utf-8") as out:
            out.write("".join(lines))
            out.flush()
            if self.durable:
                os.fsync(out.fileno())
        if entries:
            self._head = (index, previous)
        return entries
