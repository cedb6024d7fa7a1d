"""The ledger-entry schema: every kind of entry a party writes, and its fields.

The functions here are the only ones that make an entry other than a
message's (``audit.entries`` describes messages); ``audit verify`` and the
report read entries by these names. The ledger adds its own chain fields to
each (``Ledger.append``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypedDict

GENESIS = "genesis"  # the first entry: whose ledger, where, and its public key
CLOSE = "close"  # the coordinator's last entry: its signed head vouches for the run
FLAGGED = "flagged"  # an honesty check flagged a site
REFUSED = "refused"  # the egress guard stopped a reply
APP_REFUSED = "app-refused"  # a site refused to run an app it has not approved
NETWORK = "network"  # the coordinator's: the network the roll call settled on
APP = "app"  # the coordinator's: the sha256 of the app bundle `flowerbed run` submitted
RESUMED = "resumed"  # the coordinator's: this Flower run goes on with earlier ones' rounds
ERROR = "error"  # a site answered with an error
MISSING = "missing"  # a site did not answer before the deadline
# Message entries are of the message's own kind: Flower's "train", "evaluate", "query".


class SealedItem(TypedDict, total=False):
    """One sealed payload a message carried: the other site, its digest, size and country."""

    peer: str
    sha256: str
    bytes: int
    country: str | None


class MessageEntry(TypedDict, total=False):
    """One message in or out, described alike by sender and receiver so they can be matched."""

    direction: str  # "in" or "out"
    kind: str
    run: int
    round: int
    peer: str | None
    peer_country: str | None
    bytes: int
    sha256: str
    carries: list[str]  # the records the message holds
    epsilon: float | None  # a site's spend when it wrote the entry
    peer_head: dict[str, Any]  # the signed head the message came with
    node: int  # the coordinator's: the SuperNode it went to or came from
    sealed_for: list[SealedItem]
    sealed_from: list[SealedItem]
    membership_auc: float
    membership_tpr_at_1pct_fpr: float  # the attack's true positives at 1 % false positives
    membership_tpr_at_01pct_fpr: float  # and at 0.1 %
    canary_epsilon: float  # the canaries' lower bound on epsilon (one-run audit)
    test_auc: float  # the site's model on its own test split, classification
    test_dice: float  # the same, segmentation
    network_sha256: str  # a roll-call answer's: the source hash of the own network it runs
    roster_sha256: str  # a roll-call answer's: the roster the site pinned and holds the run to
    approved_apps: list[str]  # a deployed site's roll-call answer: the bundles it runs


def genesis_entry(party: str, country: str, public_key: str) -> dict[str, Any]:
    return {"kind": GENESIS, "party": party, "country": country, "public_key": public_key}


def network_entry(
    name: str, source_sha256: str, task: str, input_shape: list[int], classes: int
) -> dict[str, Any]:
    """The network every site trains, with the sha256 of the source file that defines it."""
    return {
        "kind": NETWORK, "network": name, "source_sha256": source_sha256, "task": task,
        "input_shape": input_shape, "classes": classes,
    }  # fmt: skip


def app_entry(sha256: str) -> dict[str, Any]:
    """The app bundle a deployed run was submitted as; each site's SuperNode runs it only if
    its operator approved that hash, and says which it approved in its identity answer."""
    return {"kind": APP, "sha256": sha256}


def resumed_entry(run: int, continues: list[int], after_round: int) -> dict[str, Any]:
    """A resumed run: Flower run ``run`` plays the rounds after ``after_round`` of the run
    whose earlier parts are the Flower runs ``continues``; one run to the auditor."""
    return {"kind": RESUMED, "run": run, "continues": continues, "round": after_round}


def run_parts(entries: Iterable[dict[str, Any] | None]) -> dict[int, int]:
    """Flower run id -> one id for every part of the resumed run it belongs to, from a
    ledger's ``resumed`` entries (a later one lists every part before it, so it decides)."""
    parts: dict[int, int] = {}
    for entry in entries:
        if entry is not None and entry.get("kind") == RESUMED:
            first = min(int(run) for run in entry["continues"])
            for run in (*entry["continues"], entry["run"]):
                parts[int(run)] = first
    return parts


def close_entry() -> dict[str, Any]:
    return {"direction": "none", "kind": CLOSE}


def flag_entry(
    server_round: int, site: str, reason: str, excluded: bool, reported_by: str | None = None
) -> dict[str, Any]:
    """What the coordinator records when an honesty check flags ``site``'s update.

    ``reported_by`` names the gossip neighbour that raised the flag; server-side
    flags are the coordinator's own.
    """
    fields: dict[str, Any] = {
        "kind": FLAGGED, "round": server_round, "site": site, "reason": reason,
        "excluded": excluded,
    }  # fmt: skip
    if reported_by is not None:
        fields["reported_by"] = reported_by
    return fields


def refused_entry(
    run: int, server_round: int, peer: str, peer_country: str, reason: str
) -> dict[str, Any]:
    """An instruction the site refused (its guard, its roster, its budget): nothing was sent."""
    return {
        "direction": "out", "kind": REFUSED, "run": run, "round": server_round, "peer": peer,
        "peer_country": peer_country, "reason": reason,
    }  # fmt: skip


def app_refused_entry(app: str, run: int, reason: str) -> dict[str, Any]:
    """An app bundle the site has not approved: it ran nothing of it."""
    return {"kind": APP_REFUSED, "app": app, "run": run, "reason": reason}


def failure_entry(
    kind: str, node: int, peer: str | None, server_round: int, reason: str,
    undelivered: str | None, code: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The coordinator's entry for a site that answered with an error (``ERROR``, with its
    code) or not at all (``MISSING``); ``undelivered`` is the digest of its instruction."""
    entry: dict[str, Any] = {
        "direction": "in", "kind": kind, "node": node, "peer": peer, "round": server_round,
    }  # fmt: skip
    if code is not None:
        entry["code"] = code
    return {**entry, "reason": reason, "undelivered": undelivered}


DP = "dp"  # a DP round's outgoing entry: the steps it took, what its epsilon depends on


def dp_field(
    noise: list[float], sample_rate: list[float], steps: list[int], delta: float
) -> dict[str, Any]:
    return {"noise": noise, "sample_rate": sample_rate, "steps": steps, "delta": delta}


def dp_history(entry: dict[str, Any]) -> list[tuple[float, float, int]]:
    """The (noise multiplier, sample rate, steps) an entry records; empty if none."""
    dp = entry.get(DP)
    if not isinstance(dp, dict):
        return []
    rows = zip(dp.get("noise", []), dp.get("sample_rate", []), dp.get("steps", []), strict=False)
    return [(float(n), float(q), int(s)) for n, q, s in rows]
