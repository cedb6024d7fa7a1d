"""A site's two key pairs: X25519 seals payloads for its peers, Ed25519 signs its ledger.

A deployed site's keys are in its site folder (``site init`` made them, mode
0600); a simulated site's are made on first use and kept in ``context.state``,
which outlives a round as the folder does.
"""

from __future__ import annotations

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
    record = context.state.get(SEALING_STATE)
    if record is not None:
        return SiteKeys.from_bytes(bytes(record[SEALING_PRIVATE_KEY]))
    keys = SiteKeys.generate()
    context.state[SEALING_STATE] = ConfigRecord({SEALING_PRIVATE_KEY: keys.private_bytes()})
    return keys


def ledger_key(context: Context) -> Ed25519PrivateKey:
    """This site's Ed25519 key, which signs the ledger heads that leave it."""
    folder = deployed_site(context)
    if folder is not None:
        return folder.ledger_key
    record = context.state.get(LEDGER_STATE)
    if record is not None:
        return Ed25519PrivateKey.from_private_bytes(bytes(record[LEDGER_PRIVATE_KEY]))
    key = Ed25519PrivateKey.generate()
    context.state[LEDGER_STATE] = ConfigRecord({LEDGER_PRIVATE_KEY: key.private_bytes_raw()})
    return key
