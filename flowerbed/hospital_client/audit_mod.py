"""The Flower mod in front of the hospital's ClientApp: ledger and egress guard.

Every inbound message is written to the site's ledger, checked by the guard
and only then handed to the ClientApp; every reply is checked by the guard,
written to the ledger as a signed head and sent with that head attached. A
reply the guard refuses is not sent: the refusal is written (signed) and the
site fails loudly with the reason.

A deployed site's ledger and Ed25519 key are in its site folder (the ledger
fsynced entry by entry); a simulated site's ledger is
``<ledgers>/<site>.jsonl`` (flushed; see ``Ledger.open``) and its key lives
in ``context.state``. With neither the guard still runs and nothing is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, RecordDict

from flowerbed.audit.entries import attach_head, message_fields, sealed_list, server_round
from flowerbed.audit.ledger import Ledger
from flowerbed.audit.roster import PinnedRoster
from flowerbed.audit.schema import DP, dp_field, refused_entry
from flowerbed.config import COORDINATOR, Federation, SiteSettings
from flowerbed.errors import SiteRefused
from flowerbed.hospital_client.dp_plan import spent
from flowerbed.hospital_client.egress_guard import check_inbound, check_outbound
from flowerbed.hospital_client.keys import ledger_key, site_home
from flowerbed.hospital_client.lifetime import carry_over
from flowerbed.hospital_client.site_folder import deployed_site
from flowerbed.hospital_client.site_roster import RosterRefused, check_roster, site_roster
from flowerbed.protocol import records as R

SiteOf = Callable[[Context], tuple[Federation, SiteSettings]]
CallNext = Callable[[Message, Context], Message]


def _ledger(
    context: Context, site: SiteSettings, ledgers: str | None, homes: str | None
) -> Ledger | None:
    """A deployed site's own ledger, durable; or its simulated one."""
    folder = deployed_site(context)
    if folder is not None:
        path, durable = folder.ledger_path, True
    elif ledgers:
        path, durable = Path(ledgers) / f"{site.name}.jsonl", False
    else:
        return None
    key = ledger_key(context, site_home(homes, site.name))
    return Ledger.open(path, site.name, site.country, key, durable=durable)


# What a reply's test scores put in the ledger entry (and so in the report): the leak
# measured, and the model's test AUC (classification) or Dice (segmentation).
LEDGERED_TEST_SCORES = {
    R.MEMBERSHIP_AUC: "membership_auc",
    R.MEMBERSHIP_TPR_1PCT: "membership_tpr_at_1pct_fpr",
    R.MEMBERSHIP_TPR_01PCT: "membership_tpr_at_01pct_fpr",
    R.CANARY_EPSILON: "canary_epsilon",
    R.AUC: "test_auc",
    R.DICE: "test_dice",
}


def _test_scores(content: RecordDict) -> dict[str, float]:
    """The finite test scores a reply declares, from the record that scored the test split
    (the one holding the membership attack's AUC)."""
    for metrics in content.metric_records.values():
        if R.MEMBERSHIP_AUC not in metrics:
            continue
        return {
            field: float(metrics[key])
            for key, field in LEDGERED_TEST_SCORES.items()
            if key in metrics and not math.isnan(float(metrics[key]))
        }
    return {}


def _network_code(content: RecordDict) -> dict[str, str]:
    """The own network's source hash a roll-call answer declares, for the ledger (and so
    for ``audit verify``, which holds it against the coordinator's)."""
    site = content.config_records.get(R.SITE)
    if site is None or R.SITE_NETWORK_CODE not in site:
        return {}
    return {"network_sha256": str(site[R.SITE_NETWORK_CODE])}


def _dp_steps(content: RecordDict) -> dict:
    """A DP round's steps and the lifetime spend after them, which a train reply declares:
    the ledger is the site's record across runs, and what ``audit verify`` recomputes from."""
    metrics = content.metric_records.get(R.METRICS)
    if metrics is None or R.DP_STEPS not in metrics:
        return {}
    steps = dp_field(
        [float(n) for n in metrics[R.DP_NOISE]],
        [float(q) for q in metrics[R.DP_SAMPLE_RATE]],
        [int(s) for s in metrics[R.DP_STEPS]],
        float(metrics[R.DP_DELTA]),
    )
    return {DP: steps, "epsilon_lifetime": float(metrics[R.EPSILON_LIFETIME])}


def _terms(context: Context, pinned: PinnedRoster | None, kind: str) -> dict[str, Any]:
    """What a roll-call answer puts in the site's own ledger of the terms it joined on: the
    roster it pinned, and (deployed) the app bundles its operator approved; for the report."""
    if kind != f"query.{R.IDENTITY_QUERY}":
        return {}
    terms: dict[str, Any] = {} if pinned is None else {"roster_sha256": pinned.sha256}
    folder = deployed_site(context)
    if folder is not None:
        terms["approved_apps"] = sorted(folder.config.policy.approved_apps)
    return terms


def make_audit_mod(site_of: SiteOf, ledgers: str | None, homes: str | None = None) -> Callable:
    """The mod for ``ClientApp(mods=[...])``; ``site_of`` resolves the site from the context,
    ``homes`` holds simulated sites' keys (``keys.site_home``)."""

    def audit_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
        federation, site = site_of(context)
        ledger = _ledger(context, site, ledgers, homes)
        if ledger is not None:
            carry_over(context, ledger, msg.content)  # a resumed run's spend so far
        kind, round_ = msg.metadata.message_type, server_round(msg.content)
        coordinator = federation.coordinator_country

        def record(content, direction: str, sign: bool, **extra) -> dict | None:
            if ledger is None:
                return None
            fields = message_fields(
                msg, content, direction, COORDINATOR, coordinator,
                spent(context, federation), kind, round_,
            )  # fmt: skip
            return ledger.append({**fields, **extra}, sign=sign)

        record(
            msg.content, "in", False,
            sealed_from=sealed_list(msg.content.config_records.get(R.INBOX)),
        )  # fmt: skip
        try:
            pinned = site_roster(context, federation)
            if pinned is not None:
                check_roster(msg, pinned)
            check_inbound(msg, federation)
            reply = call_next(msg, context)
            if reply.has_error():
                return reply
            check_outbound(reply.content, msg, federation, site)
        except SiteRefused as refusal:
            if ledger is not None:
                entry = refused_entry(
                    msg.metadata.run_id, round_, COORDINATOR, coordinator, str(refusal)
                )
                if isinstance(refusal, RosterRefused):
                    entry["against_roster"] = True
                ledger.append(entry, sign=True)
            raise
        countries = {s.name: s.country for s in federation.sites}
        declared = msg.content.config_records.get(R.PEER_COUNTRIES)
        if declared is not None:
            countries = {**{k: str(v) for k, v in declared.items()}, **countries}
        entry = record(
            reply.content, "out", True,
            sealed_for=sealed_list(reply.content.config_records.get(R.SEALED), countries),
            **_test_scores(reply.content),
            **_network_code(reply.content),
            **_terms(context, pinned, kind),
            **_dp_steps(reply.content),
        )  # fmt: skip
        if entry is not None:
            attach_head(reply.content, ledger, entry)
        return reply

    return audit_mod
