"""The Flower mod in front of the hospital's ClientApp: ledger and egress guard.

Every inbound message is written to the site's ledger, checked by the guard
and only then handed to the ClientApp; every reply is checked by the guard,
written to the ledger as a signed head and sent with that head attached. A
reply the guard refuses is not sent: the refusal is written (signed) and the
site fails loudly with the reason.

The site's Ed25519 ledger key lives in ``context.state``; its ledger file is
the node config's ``ledger`` path in deployment (fsynced entry by entry),
or ``<ledgers>/<site>.jsonl`` in simulation (flushed; see ``Ledger.open``).
With neither the guard still runs and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Context, Message

from flowerbed import records as R
from flowerbed.audit.entries import attach_head, message_fields, sealed_list, server_round
from flowerbed.audit.ledger import Ledger
from flowerbed.config import COORDINATOR, Federation, SiteSettings
from flowerbed.hospital_client.egress_guard import EgressRefused, check_inbound, check_outbound
from flowerbed.privacy import PrivacyAccount
from flowerbed.privacy.accounting import STATE_KEY

KEY_STATE = "ledger-key"
PRIVATE_KEY = "ed25519-private-key"
LEDGER_NODE_KEY = "ledger"

SiteOf = Callable[[Context], tuple[Federation, SiteSettings]]
CallNext = Callable[[Message, Context], Message]


def ledger_key(context: Context) -> Ed25519PrivateKey:
    """This site's Ed25519 ledger key, made on first use and kept in ``context.state``."""
    record = context.state.get(KEY_STATE)
    if record is not None:
        return Ed25519PrivateKey.from_private_bytes(bytes(record[PRIVATE_KEY]))
    key = Ed25519PrivateKey.generate()
    context.state[KEY_STATE] = ConfigRecord({PRIVATE_KEY: key.private_bytes_raw()})
    return key


def _ledger(context: Context, site: SiteSettings, ledgers: str | None) -> Ledger | None:
    """A deployed site's own ledger (node config), durable; or its simulated one."""
    own = context.node_config.get(LEDGER_NODE_KEY)
    path = own or (ledgers and Path(ledgers) / f"{site.name}.jsonl")
    if not path:
        return None
    key = ledger_key(context)
    return Ledger.open(Path(str(path)), site.name, site.country, key, durable=bool(own))


def _epsilon(context: Context, federation: Federation) -> float:
    account = PrivacyAccount.from_record(context.state.get(STATE_KEY))
    return account.epsilon(federation.privacy.delta)


def make_audit_mod(site_of: SiteOf, ledgers: str | None) -> Callable:
    """The mod for ``ClientApp(mods=[...])``; ``site_of`` resolves the site from the context."""

    def audit_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
        federation, site = site_of(context)
        ledger = _ledger(context, site, ledgers)
        kind, round_ = msg.metadata.message_type, server_round(msg.content)
        coordinator = federation.coordinator_country

        def record(content, direction: str, sign: bool, **extra) -> dict | None:
            if ledger is None:
                return None
            fields = message_fields(
                msg, content, direction, COORDINATOR, coordinator,
                _epsilon(context, federation), kind, round_,
            )  # fmt: skip
            return ledger.append({**fields, **extra}, sign=sign)

        record(
            msg.content, "in", False,
            sealed_from=sealed_list(msg.content.config_records.get(R.INBOX)),
        )  # fmt: skip
        try:
            check_inbound(msg)
            reply = call_next(msg, context)
            if reply.has_error():
                return reply
            check_outbound(reply.content, msg, federation, site)
        except EgressRefused as refusal:
            if ledger is not None:
                ledger.append(
                    {"direction": "out", "kind": "refused", "round": round_,
                     "peer": COORDINATOR, "peer_country": coordinator, "reason": str(refusal)},
                    sign=True,
                )  # fmt: skip
            raise
        countries = {s.name: s.country for s in federation.sites}
        declared = msg.content.config_records.get(R.PEER_COUNTRIES)
        if declared is not None:
            countries = {**{k: str(v) for k, v in declared.items()}, **countries}
        entry = record(
            reply.content, "out", True,
            sealed_for=sealed_list(reply.content.config_records.get(R.SEALED), countries),
        )  # fmt: skip
        if entry is not None:
            attach_head(reply.content, ledger, entry)
        return reply

    return audit_mod
