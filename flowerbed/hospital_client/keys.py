"""A site's two key pairs: X25519 seals payloads for its peers, Ed25519 signs its ledger.

A deployed site's keys are in its site folder (``site init`` made them, mode
0600). A simulated site's are in its home in the run folder
(``RUN/sites/<site>/keys``, made before the run so that the roster can name
them); a ClientApp run without a home (a unit test) makes them on first use
and keeps them in ``context.state``, which outlives a round as a folder does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Context

from flowerbed.hospital_client.site_folder import (
    KEYS_DIR,
    LEDGER_KEY,
    deployed_site,
    ledger_key_in,
    sealing_keys_in,
)
from flowerbed.privacy.sealing import SiteKeys

SEALING_STATE = "gossip-keys"
SEALING_PRIVATE_KEY = "x25519-private-key"
LEDGER_STATE = "ledger-key"
LEDGER_PRIVATE_KEY = "ed25519-private-key"


def sealing_keys(context: Context, home: Path | None = None) -> SiteKeys:
    """This site's X25519 key pair, which opens what its neighbours seal for it."""
    folder = deployed_site(context)
    if folder is not None:
        return folder.sealing_keys
    keys = _keys_in(home)
    if keys is not None:
        return sealing_keys_in(keys)
    private = _kept(
        context, SEALING_STATE, SEALING_PRIVATE_KEY, lambda: SiteKeys.generate().private_bytes()
    )
    return SiteKeys.from_bytes(private)


def ledger_key(context: Context, home: Path | None = None) -> Ed25519PrivateKey:
    """This site's Ed25519 key, which signs the ledger heads that leave it."""
    folder = deployed_site(context)
    if folder is not None:
        return folder.ledger_key
    keys = _keys_in(home)
    if keys is not None:
        return ledger_key_in(keys)
    private = _kept(
        context, LEDGER_STATE, LEDGER_PRIVATE_KEY,
        lambda: Ed25519PrivateKey.generate().private_bytes_raw(),
    )  # fmt: skip
    return Ed25519PrivateKey.from_private_bytes(private)


def site_home(homes: str | None, name: str) -> Path | None:
    """A simulated site's home in the run folder, where its keys and model are kept."""
    return None if homes is None else Path(homes) / name


def _keys_in(home: Path | None) -> Path | None:
    keys = None if home is None else home / KEYS_DIR
    return keys if keys is not None and (keys / LEDGER_KEY).is_file() else None


def _kept(context: Context, state: str, field: str, make: Callable[[], bytes]) -> bytes:
    """A simulated site's private key bytes from ``context.state``; made and kept there on
    first use."""
    record = context.state.get(state)
    if record is None:
        record = context.state[state] = ConfigRecord({field: make()})
    return bytes(record[field])
