"""``flowerbed audit report``: the evidence, for the data-protection officer who signs off.

Built only from verified ledgers (``verify.verify_run``) and the resolved
federation, never from what the run printed. It opens with a page in plain
language (``plain_language``): the verdict, what patient data left (none:
counted from what the egress guard let out), where each country's model
updates went against the policy, each site's privacy spend against its
budgets, honesty flags, the leak measured, every problem verify found. Then
the evidence: what the signature covers (run, times, the app bundle and who
approved it, the roster, every party's last signed ledger head), a country
flow matrix, payload kinds per site, privacy and test scores per round, and
what the run was.

``report.json`` carries its own sha256 over everything the ledgers decide
(``signed_body``); ``flowerbed audit verify RUN --report report.json``
derives the report again from the ledgers and fails if the two differ, so
an edited report is caught. The software that rendered it is noted beside,
outside the hash: another machine verifies the same report with its own.
Four forms from one ``Report`` (``report_pages``): ``report.json``,
``report.md`` (plots as PNG files beside it), ``report.html`` (one
self-contained file, plots inline, readable offline) and ``report.pdf``
(A4, printed from the HTML by headless Chromium).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections import defaultdict
from dataclasses import asdict
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from flowerbed.audit.plain_language import plain_language
from flowerbed.audit.report_data import Report
from flowerbed.audit.report_pages import write_pages
from flowerbed.audit.schema import APP, ERROR, FLAGGED, MISSING, NETWORK
from flowerbed.audit.verify import Verdict, in_runs, node_sites, runs_of, verify_run
from flowerbed.config import COORDINATOR
from flowerbed.errors import FlowerbedError
from flowerbed.protocol.records import SITE_ERROR, split_site_error

FORMATS = ("html", "md", "json", "pdf")
DEFAULT_FORMATS = ("html", "md", "json")  # a PDF needs Chromium; asked for by name
UNSIGNED = ("report_sha256", "rendered_with")  # what the report's own sha256 leaves out
# A site's leak, from its last scored reply: the ledger field -> the report's name for it.
LEAK_FIELDS = {
    "membership_auc": "attack_auc",
    "membership_tpr_at_1pct_fpr": "tpr_at_1pct_fpr",
    "membership_tpr_at_01pct_fpr": "tpr_at_01pct_fpr",
    "canary_epsilon": "canary_epsilon",
}
PACKAGES = ("flowerbed", "flwr", "torch", "monai", "opacus", "cryptography")
CATEGORIES = {
    "arrays": "parameters",
    "sealed": "sealed parameters",
    "metrics": "metrics",
    "test-metrics": "metrics",
    "site": "identity",
    "probe": "probe answer",
    "flags": "honesty flags",
}


def build_report(run_dir: Path) -> Report:
    verdict = verify_run(run_dir)
    federation = verdict.federation
    flows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kinds: dict[str, dict[str, int]] = {}
    privacy: dict[str, dict[int, float]] = {}
    lifetime: dict[str, float] = {}
    membership: dict[str, float] = {}
    test_scores: dict[str, dict[str, float]] = {}
    leak: dict[str, dict[str, float]] = {}
    scores_by_round: dict[str, dict[int, float]] = {}
    parties = []
    coordinator = verdict.ledgers.get(COORDINATOR)
    nodes = node_sites(coordinator) if coordinator is not None else {}
    runs = runs_of(coordinator)
    for name, ledger in sorted(verdict.ledgers.items()):
        sent = [e for e in ledger.entries if e.get("direction") == "out" and "bytes" in e]
        received = [e for e in ledger.entries if e.get("direction") == "in" and "bytes" in e]
        parties.append(
            {
                "party": name,
                "country": ledger.country,
                "messages_out": len(sent),
                "bytes_out": sum(e["bytes"] for e in sent),
                "messages_in": len(received),
                "bytes_in": sum(e["bytes"] for e in received),
                "peers": sorted({str(e.get("peer")) for e in sent + received if e.get("peer")}),
                "chain": "intact" if ledger.intact else "broken",
            }
        )
        for entry in sent:  # parameters anyone can read: site updates, the global model
            if "arrays" in entry.get("carries", []):
                peer = entry.get("peer") or nodes.get(entry.get("node"))
                receiver = federation.country_of(peer) if peer else None
                flows[ledger.country or "?"][str(receiver)] += entry["bytes"]
        if name == COORDINATOR:
            continue
        kinds[name] = _payload_kinds(sent)
        this_run = [e for e in ledger.entries if in_runs(e, runs)]
        privacy[name] = _privacy_by_round(this_run, federation.run.rounds)
        lifetimes = [e["epsilon_lifetime"] for e in this_run if "epsilon_lifetime" in e]
        if lifetimes:
            lifetime[name] = float(max(lifetimes))
        scored = [e for e in this_run if e.get("direction") == "out" and "membership_auc" in e]
        if scored:
            membership[name] = float(scored[-1]["membership_auc"])
            test_scores[name] = {
                score: float(scored[-1][f"test_{score}"])
                for score in ("auc", "dice")
                if f"test_{score}" in scored[-1]
            }
            leak[name] = {
                named: float(scored[-1][key]) for key, named in LEAK_FIELDS.items()
                if key in scored[-1]
            }  # fmt: skip
            scores_by_round[name] = _scores_by_round(scored, federation.run.rounds)
        for entry in sent:
            for sealed in entry.get("sealed_for", []):
                receiver = federation.country_of(sealed["peer"]) or str(sealed.get("country"))
                flows[ledger.country or "?"][receiver] += sealed["bytes"]
    countries = sorted({p["country"] for p in parties if p["country"]})
    report = Report(
        verdict="verified" if verdict.ok else "FAILED",
        problems=[str(p) for p in verdict.problems],
        run=_run_summary(verdict),
        parties=parties,
        countries=countries,
        flows={s: dict(r) for s, r in flows.items()},
        payload_kinds=kinds,
        privacy=privacy,
        budgets={s.name: federation.budget_of(s) for s in federation.sites},
        lifetime=lifetime,
        lifetime_budgets={s.name: federation.lifetime_budget_of(s) for s in federation.sites},
        membership=membership,
        test_scores=test_scores,
        flagged=[
            e for e in (coordinator.entries if coordinator else []) if e.get("kind") == FLAGGED
        ],
        failed=_failures(coordinator.entries if coordinator else [], nodes),
        leak=leak,
        scores_by_round=scores_by_round,
        signature=_signature(verdict, runs),
    )
    report.summary = plain_language(report, verdict)
    report.report_sha256 = _sha256(signed_body(report))
    report.rendered_with = _software()
    return report


def signed_body(report: Report | dict[str, Any]) -> dict[str, Any]:
    """The report as JSON data, less what its own sha256 leaves out (``UNSIGNED``)."""
    data = report if isinstance(report, dict) else json.loads(_json(report))
    return {key: value for key, value in data.items() if key not in UNSIGNED}


def _json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2, default=str)


def _sha256(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def check_report(run_dir: Path, path: Path) -> list[str]:
    """Why the report at ``path`` is not the one ``run_dir``'s ledgers give; empty if it is.

    Its sha256 must match its own content (an edit that forgot the hash), and its content
    the report derived again now (an edit that recomputed it)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise FlowerbedError(f"{path}: not a readable report.json ({err})") from None
    if not isinstance(data, dict) or "report_sha256" not in data:
        raise FlowerbedError(f"{path}: not a report.json of `flowerbed audit report`")
    problems = []
    if _sha256(signed_body(data)) != data["report_sha256"]:
        problems.append(f"{path}: its report_sha256 does not match its content: it was edited")
    derived = signed_body(build_report(run_dir))
    differing = sorted(  # as JSON: a NaN equals itself there
        k for k in derived.keys() | data.keys() - set(UNSIGNED)
        if json.dumps(data.get(k), sort_keys=True) != json.dumps(derived.get(k), sort_keys=True)
    )  # fmt: skip
    if differing:
        problems.append(
            f"{path} differs from the report its ledgers give in: {', '.join(differing)}"
        )
    return problems


def _signature(verdict: Verdict, runs: set[int] | None) -> dict[str, Any]:
    """What a signature on the report covers: the Flower runs, when the run started and
    ended, its strategy, the app bundle it was submitted as and which sites approved it,
    the roster every site held it to, and every party's last signed ledger head (through
    the chain, each vouches for every entry before it)."""
    coordinator = verdict.ledgers.get(COORDINATOR)
    own = coordinator.entries if coordinator else []  # the run folder's: this run's alone
    times = sorted(str(e["time"]) for e in own if "time" in e)
    app = next((str(e["sha256"]) for e in reversed(own) if e.get("kind") == APP), None)
    approved, rosters = {}, set()
    for name, ledger in verdict.ledgers.items():
        for entry in ledger.entries:
            if name != COORDINATOR and in_runs(entry, runs) and entry.get("direction") == "out":
                if "approved_apps" in entry:
                    approved[name] = list(entry["approved_apps"])
                if "roster_sha256" in entry:
                    rosters.add(str(entry["roster_sha256"]))
    heads = {}
    for name, ledger in sorted(verdict.ledgers.items()):
        signed = [e for e in ledger.entries if "signature" in e]
        if signed:
            last = signed[-1]
            heads[name] = {"index": last["index"], "hash": last["hash"],
                           "signature": last["signature"]}  # fmt: skip
    started, ended = (times[0], times[-1]) if times else (None, None)
    return {
        "runs": sorted(runs or []),
        "started": started,
        "ended": ended,
        "duration_s": (
            round((datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds())
            if started and ended
            else None
        ),
        "strategy": verdict.federation.run.strategy,
        "app_sha256": app,
        "app_approved_by": sorted(site for site, apps in approved.items() if app in apps),
        "app_not_approved_by": sorted(s for s, apps in approved.items() if app not in apps),
        "roster_sha256": sorted(rosters),
        "ledger_heads": heads,
    }


def _scores_by_round(scored: list[dict[str, Any]], rounds: int) -> dict[int, float]:
    """A site's test score (Dice for masks, else AUC) after each round it was scored in."""
    by_round: dict[int, float] = {}
    for entry in scored:
        round_ = int(entry.get("round", 0))
        score = entry.get("test_dice", entry.get("test_auc"))
        if score is not None and 0 < round_ <= rounds:
            by_round[round_] = float(score)
    return dict(sorted(by_round.items()))


def _failures(entries: list[dict[str, Any]], nodes: dict[int, str]) -> list[dict[str, Any]]:
    """Each instruction of the coordinator's that an error or silence answered, and why."""
    failed = []
    for entry in entries:
        if entry.get("kind") not in (ERROR, MISSING):
            continue
        reason = str(entry.get("reason", ""))
        site = entry.get("peer") or nodes.get(entry.get("node"))
        if entry.get("code") == SITE_ERROR:
            site, reason = split_site_error(reason)
        failed.append(
            {"round": entry.get("round", 0), "site": site or f"node {entry.get('node')}",
             "what": "no answer" if entry["kind"] == MISSING else "error", "reason": reason}
        )  # fmt: skip
    return failed


def _payload_kinds(sent: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for entry in sent:
        counts["ledger heads"] += 1 if "signature" in entry else 0
        for carried in entry.get("carries", []):
            counts[CATEGORIES.get(carried, f"other: {carried}")] += 1
    return dict(counts)


def _privacy_by_round(entries: list[dict[str, Any]], rounds: int) -> dict[int, float]:
    """Epsilon spent by the end of each training round, from the site's own replies."""
    spent: dict[int, float] = {}
    for entry in entries:
        round_ = int(entry.get("round", 0))
        if entry.get("direction") == "out" and entry.get("epsilon") is not None and round_:
            if round_ > rounds:
                continue
            spent[round_] = max(spent.get(round_, 0.0), float(entry["epsilon"]))
    return dict(sorted(spent.items()))


def _network(verdict: Verdict) -> str:
    """The network the coordinator signed at the roll call, with its source's sha256."""
    coordinator = verdict.ledgers.get(COORDINATOR)
    entries = coordinator.entries if coordinator is not None else []
    signed = next((e for e in entries if e.get("kind") == NETWORK), None)
    if signed is None:
        return verdict.federation.run.model or "not recorded (the roll call did not complete)"
    size = "x".join(str(side) for side in signed["input_shape"])
    return (
        f"{signed['network']} ({signed['task']}, {size} images, {signed['classes']} classes; "
        f"source sha256 {signed['source_sha256']})"
    )


def _software() -> dict[str, str]:
    """The versions of what rendered the report (not signed: a verifier's may differ)."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["python"] = platform.python_version()
    return versions


def _run_summary(verdict: Verdict) -> dict[str, Any]:
    federation = verdict.federation
    run, privacy = federation.run, federation.privacy
    return {
        "strategy": run.strategy,
        "topology": run.topology if run.strategy == "gossip" else "server-side",
        "rounds": run.rounds,
        "local_epochs": run.local_epochs,
        "model": _network(verdict),
        "sites": len(federation.sites),
        "coordinator_country": federation.coordinator_country,
        "dp": (
            f"DP-SGD, epsilon {privacy.epsilon:g} per site (default), delta {privacy.delta:g}, "
            f"max grad norm {privacy.max_grad_norm:g}"
            if privacy.enabled
            else "off"
        ),
        "residency": federation.residency or "no restriction",
        "canaries": privacy.canaries,
    }


def write_reports(
    run_dir: Path, formats: tuple[str, ...] = DEFAULT_FORMATS
) -> tuple[Report, list[Path]]:
    """Verify ``run_dir`` and write the chosen report files into it."""
    report = build_report(run_dir)
    written = []
    if "json" in formats:
        path = Path(run_dir) / "report.json"
        path.write_text(_json(report) + "\n")
        written.append(path)
    return report, written + write_pages(report, Path(run_dir), formats)
