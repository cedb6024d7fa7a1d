"""A site's two key pairs: X25519 seals payloads for its peers, Ed25519 signs its ledger.

A deployed site's keys are in its site folder (``site init`` made them, mode
0600); a simulated site's are made on first use and kept in ``context.state``,
which outlives a round as the folder does.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Context

from flowerbed.hospital_client.site_folder import deployed_site
from flowerbed.privacy.sealing import SiteKeys

SEALING_STATE = "gossip-keys"
SEALING_PRIVATE_KEY = "x25519-private-key"
LEDGER_STATE = "ledger-key"
LEDGER_PRIVATE_KEY = "ed25519-private-key"


def sealing_keys(context: Context) -> SiteKeys:
    """This site's X25519 key pair, which opens what its neighbours seal for it."""
    folder = deployed_site(context)
    if folder is not None:
        return folder.sealing_keys
    private = _kept(
        context, SEALING_STATE, SEALING_PRIVATE_KEY, lambda: SiteKeys.generate().private_bytes()
    )
    return SiteKeys.from_bytes(private)


def ledger_key(context: Context) -> Ed25519PrivateKey:
    """This site's Ed25519 key, which signs the ledger heads that leave it."""
    folder = deployed_site(context)
    if folder is not None:
        return folder.ledger_key
    private = _kept(
        context, LEDGER_STATE, LEDGER_PRIVATE_KEY,
        lambda: Ed25519PrivateKey.generate().private_bytes_raw(),
    )  # fmt: skip
    return Ed25519PrivateKey.from_private_bytes(private)


def _kept(context: Context, state: str, field: str, make: Callable[[], bytes]) -> bytes:
    """A simulated site's private key bytes from ``context.state``; made and kept there on
    first use."""
    record = context.state.get(state)
    if record is None:
        record = context.state[state] = ConfigRecord({field: make()})
    return bytes(record[field])
