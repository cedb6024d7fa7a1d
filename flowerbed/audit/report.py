"""``flowerbed audit report``: the evidence, for the data-protection officer who signs off.

Built only from verified ledgers (``verify.verify_run``) and the resolved
federation, never from what the run printed. It says, per country and site,
what left and arrived and to whom (a country flow matrix, as a table and a
plot), which kinds of payload left each site (parameters, sealed
parameters, metrics, identity, ledger heads, and nothing else), the privacy
spent per site per round (table and plot), whether every chain and the
residency policy hold, and what the run was (strategy, topology, rounds,
model, DP settings, software versions).

Three forms from one ``Report``: ``report.json`` (data), ``report.md``
(with the plots as PNG files beside it) and ``report.html`` (one
self-contained file, plots inline, readable offline).
"""

from __future__ import annotations

import base64
import html
import io
import json
import platform
from collections import defaultdict
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt

from flowerbed.audit.schema import ERROR, FLAGGED, MISSING, NETWORK
from flowerbed.audit.verify import Verdict, in_runs, node_sites, runs_of, verify_run
from flowerbed.config import COORDINATOR
from flowerbed.protocol.records import SITE_ERROR, split_site_error

FORMATS = ("html", "md", "json")
LEGEND_SITES = 12
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


@dataclass
class Report:
    verdict: str
    problems: list[str]
    run: dict[str, Any]
    parties: list[dict[str, Any]]
    countries: list[str]
    flows: dict[str, dict[str, int]]  # sender country -> receiver country -> parameter bytes
    payload_kinds: dict[str, dict[str, int]]  # site -> category -> messages
    privacy: dict[str, dict[int, float]]  # site -> round -> epsilon spent after it
    budgets: dict[str, float]
    lifetime: dict[str, float]  # site -> its data set's epsilon over every run, after this one
    lifetime_budgets: dict[str, float]
    membership: dict[str, float]  # site -> attack AUC on its last scored model
    test_scores: dict[str, dict[str, float]]  # site -> "auc" or "dice" of its last scored model
    flagged: list[dict[str, Any]]  # honesty checks: round, site, reason, excluded
    failed: list[dict[str, Any]]  # sites that answered with an error, or not at all: round, why


def build_report(run_dir: Path) -> Report:
    verdict = verify_run(run_dir)
    federation = verdict.federation
    flows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kinds: dict[str, dict[str, int]] = {}
    privacy: dict[str, dict[int, float]] = {}
    lifetime: dict[str, float] = {}
    membership: dict[str, float] = {}
    test_scores: dict[str, dict[str, float]] = {}
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
        scored = [e for e in sent if "membership_auc" in e]
        if scored:
            membership[name] = float(scored[-1]["membership_auc"])
            test_scores[name] = {
                score: float(scored[-1][f"test_{score}"])
                for score in ("auc", "dice")
                if f"test_{score}" in scored[-1]
            }
        for entry in sent:
            for sealed in entry.get("sealed_for", []):
                receiver = federation.country_of(sealed["peer"]) or str(sealed.get("country"))
                flows[ledger.country or "?"][receiver] += sealed["bytes"]
    countries = sorted({p["country"] for p in parties if p["country"]})
    return Report(
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
    )


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


def _run_summary(verdict: Verdict) -> dict[str, Any]:
    federation = verdict.federation
    run, privacy = federation.run, federation.privacy
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["python"] = platform.python_version()
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
        "software": versions,
    }


def _flow_plot(report: Report) -> bytes:
    countries = report.countries
    grid = [[report.flows.get(s, {}).get(r, 0) / 1e6 for r in countries] for s in countries]
    figure, axis = plt.subplots(figsize=(1.6 + 1.1 * len(countries), 1.2 + 1.0 * len(countries)))
    image = axis.imshow(grid, cmap="Blues")
    axis.set(
        xticks=range(len(countries)), yticks=range(len(countries)),
        xticklabels=countries, yticklabels=countries,
        xlabel="received in", ylabel="sent from", title="parameter MB by country",
    )  # fmt: skip
    top = max((max(row) for row in grid), default=0.0)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ink = "white" if value > top / 2 else "black"
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", color=ink)
    figure.colorbar(image, ax=axis)
    return _png(figure)


def _privacy_plot(report: Report) -> bytes:
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for site, spent in report.privacy.items():
        axis.plot(list(spent), list(spent.values()), marker="o", label=site)
    for budget in sorted(set(report.budgets.values())):
        axis.axhline(budget, linestyle="--", color="grey")
    axis.set(xlabel="round", ylabel="epsilon spent", title="privacy spent per site")
    if len(report.privacy) <= LEGEND_SITES:  # beyond that a legend hides the plot
        axis.legend(fontsize="small")
    return _png(figure)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _tables(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table, shared by Markdown and HTML."""
    countries = report.countries
    flow_rows = [
        [s, *[f"{report.flows.get(s, {}).get(r, 0):,}" for r in countries]] for s in countries
    ]
    party_rows = [
        [p["party"], str(p["country"]), str(p["messages_out"]), f"{p['bytes_out']:,}",
         str(p["messages_in"]), f"{p['bytes_in']:,}", ", ".join(p["peers"]), p["chain"]]
        for p in report.parties
    ]  # fmt: skip
    categories = sorted({c for kinds in report.payload_kinds.values() for c in kinds})
    kind_rows = [
        [site, *[str(kinds.get(c, 0)) for c in categories]]
        for site, kinds in report.payload_kinds.items()
    ]
    rounds = sorted({r for spent in report.privacy.values() for r in spent})
    privacy_rows = [
        [site, f"{report.budgets.get(site, 0):g}",
         *[f"{spent[r]:.3f}" if r in spent else "-" for r in rounds],
         f"{report.lifetime[site]:.3f} of {report.lifetime_budgets.get(site, 0):g}"
         if site in report.lifetime else "-",
         f"{report.membership[site]:.3f}" if site in report.membership else "-",
         _test_score(report.test_scores.get(site, {}))]
        for site, spent in report.privacy.items()
    ]  # fmt: skip
    return [
        ("Country flow matrix: bytes of parameters (site updates, sealed or not, and the "
         "coordinator's global model), sender (row) to receiver (column)",
         ["from \\ to", *countries], flow_rows),
        ("Messages and bytes per party", ["party", "country", "messages out", "bytes out",
         "messages in", "bytes in", "with", "chain"], party_rows),
        ("Kinds of payload that left each site (messages)", ["site", *categories], kind_rows),
        ("Sites flagged by honesty checks (probe answers, updates' size and direction, "
         "gossip sketches)",
         ["round", "site", "why", "excluded from the aggregate"],
         [[str(f["round"]), f["site"], f["reason"], "yes" if f["excluded"] else "no"]
          for f in report.flagged]),
        ("Sites that failed a round or did not answer it (round 0: the roll call)",
         ["round", "site", "what", "why"],
         [[str(f["round"]), f["site"], f["what"], f["reason"]] for f in report.failed]),
        ("Privacy: the run's budget and epsilon spent after each round; the site's data "
         "set's lifetime spend over every run so far, of its lifetime budget (recomputed by "
         "verify from the ledgered DP steps); and the privacy measured in fact: a "
         "membership-inference attack's AUC on the site's last model (0.5: no leak), and "
         "that model's test score (AUC; Dice for segmentation)",
         ["site", "run budget", *[f"round {r}" for r in rounds], "lifetime",
          "attack AUC", "test score"],
         privacy_rows),
    ]  # fmt: skip


def _test_score(scores: dict[str, float]) -> str:
    """A site's last test score as the task measures it: Dice for masks, else AUC."""
    if "dice" in scores:
        return f"Dice {scores['dice']:.3f}"
    return f"AUC {scores['auc']:.3f}" if "auc" in scores else "-"


def _summary_lines(report: Report) -> list[tuple[str, str]]:
    run = report.run
    return [
        ("verdict", report.verdict),
        ("strategy", f"{run['strategy']} ({run['topology']})"),
        ("rounds", f"{run['rounds']} x {run['local_epochs']} local epochs"),
        ("model", run["model"]),
        ("sites", str(run["sites"])),
        ("coordinator country", run["coordinator_country"]),
        ("differential privacy", run["dp"]),
        ("residency policy", json.dumps(run["residency"])),
        ("software", ", ".join(f"{k} {v}" for k, v in run["software"].items())),
    ]


def write_markdown(report: Report, out: Path, plots: dict[str, bytes]) -> Path:
    lines = ["# Data-residency audit report", ""]
    lines += [f"- **{key}**: {value}" for key, value in _summary_lines(report)]
    lines += ["", "## Problems", ""]
    lines += [f"- {p}" for p in report.problems] or ["None: every check passed."]
    for title, header, rows in _tables(report):
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |"]
        lines += ["|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    for name in plots:
        (out / f"report_{name}.png").write_bytes(plots[name])
        lines += ["", f"![{name}](report_{name}.png)"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_html(report: Report, out: Path, plots: dict[str, bytes]) -> Path:
    esc = html.escape
    verdict_class = "ok" if report.verdict == "verified" else "bad"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>flowerbed audit report</title><style>",
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}",
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;",
        "padding:.3em .6em;text-align:right}th:first-child,td:first-child{text-align:left}",
        ".ok{color:#1a7f37}.bad{color:#b42318}</style></head><body>",
        "<h1>Data-residency audit report</h1>",
        f"<p id='verdict' class='{verdict_class}'><strong>Verdict: {esc(report.verdict)}</strong>",
        "</p><table id='summary'>",
        *[f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _summary_lines(report)],
        "</table><h2>Problems</h2><ul id='problems'>",
        *([f"<li>{esc(p)}</li>" for p in report.problems] or ["<li>None: all checks pass.</li>"]),
        "</ul>",
    ]
    ids = ["flow-matrix", "parties", "payload-kinds", "flagged", "failed", "budgets"]
    for table_id, (title, header, rows) in zip(ids, _tables(report), strict=True):
        parts += [f"<h2>{esc(title)}</h2><table id='{table_id}'><tr>"]
        parts += [f"<th>{esc(h)}</th>" for h in header] + ["</tr>"]
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts += ["</table>"]
    for name, png in plots.items():
        data = base64.b64encode(png).decode()
        parts += [f"<p><img alt='{name}' src='data:image/png;base64,{data}'></p>"]
    parts += ["</body></html>"]
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def write_reports(run_dir: Path, formats: tuple[str, ...] = FORMATS) -> tuple[Report, list[Path]]:
    """Verify ``run_dir`` and write the chosen report files into it."""
    report = build_report(run_dir)
    plots = (
        {"flows": _flow_plot(report), "privacy": _privacy_plot(report)}
        if {"html", "md"} & set(formats)
        else {}
    )
    written = []
    if "json" in formats:
        path = Path(run_dir) / "report.json"
        path.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
        written.append(path)
    if "md" in formats:
        written.append(write_markdown(report, Path(run_dir), plots))
    if "html" in formats:
        written.append(write_html(report, Path(run_dir), plots))
    return report, written
