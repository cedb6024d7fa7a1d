"""The report's first page: what a data-protection officer signs, in sentences.

Every sentence is derived from the report's figures, which come from the
verified ledgers; none is written by hand or taken from what the run
printed. A heading maps to its sentences, in the order the page shows them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from flowerbed.audit.report_data import Report
from flowerbed.audit.residency import ResidencyPolicy
from flowerbed.audit.verify import Verdict

# What the egress guard lets a site send: the payload kinds the report counts as declared.
DECLARED = {
    "parameters": "model parameters",
    "sealed parameters": "model parameters sealed for one other site",
    "metrics": "declared metrics (scores, example counts, privacy spend)",
    "identity": "its name, country and public key",
    "probe answer": "a digest and a sketch of its model",
    "honesty flags": "honesty flags",
    "ledger heads": "signed ledger heads",
}


def plain_language(report: Report, verdict: Verdict) -> dict[str, list[str]]:
    """Heading -> sentences of the first page."""
    return {
        "Verdict": [_verdict(report)],
        "Patient data that left any site": _patient_data(report),
        "Where each country's model updates went": _countries(report, verdict),
        "Privacy spent": _privacy(report),
        "Honesty checks": _honesty(report),
        "Leak measured": _leak(report),
        "Problems verify found": list(report.problems)
        or ["None: every ledger's chain is intact, every message has its counterpart, and "
            "the residency policy and privacy budgets were kept."],
    }  # fmt: skip


def _verdict(report: Report) -> str:
    signature = report.signature
    what = (
        f"Run {', '.join(map(str, signature['runs'])) or '(simulated)'} "
        f"({report.run['strategy']}, {report.run['sites']} sites, {report.run['rounds']} rounds"
    )
    when = ")"
    if signature["started"]:
        when = (
            f", {_moment(signature['started'])} to {_moment(signature['ended'])}, "
            f"{signature['duration_s']} s)"
        )
    if report.verdict == "verified":
        return f"{what}{when}: VERIFIED. Every check on its ledgers passed."
    return f"{what}{when}: FAILED. {len(report.problems)} problem(s) below; do not sign."


def _moment(iso: str) -> str:
    """A ledger's ISO time as a person reads it, to the second, in UTC."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _patient_data(report: Report) -> list[str]:
    kinds = {kind for site in report.payload_kinds.values() for kind in site}
    undeclared = sorted(kind for kind in kinds if kind not in DECLARED)
    messages = sum(sum(site.values()) for site in report.payload_kinds.values())
    if undeclared:
        return [
            f"UNDECLARED payloads left a site: {', '.join(undeclared)}. Patient data may have "
            "left; do not sign until each is explained."
        ]
    admitted = "; ".join(DECLARED[kind] for kind in DECLARED if kind in kinds)
    return [
        "Patient images, labels and identifiers that left any site: none. The egress guard "
        f"admitted only {admitted or 'nothing'} (counted over the {messages} payload items "
        "the sites' ledgers record)."
    ]


def _countries(report: Report, verdict: Verdict) -> list[str]:
    policy = ResidencyPolicy(verdict.federation.residency)
    allowed = verdict.federation.residency or {}
    lines = []
    for sender in report.countries:
        receivers = sorted(r for r, size in report.flows.get(sender, {}).items() if size > 0)
        barred = [r for r in receivers if not policy.permits(sender, r)]
        rule = (
            f"the policy allows {', '.join(allowed[sender]) or 'no other country'}"
            if sender in allowed
            else "the policy does not restrict it"
        )
        went = ", ".join(receivers) if receivers else "no country"
        verdict_text = f"AGAINST the policy: {', '.join(barred)}" if barred else "within the policy"
        lines.append(f"{sender}: model updates went to {went}; {rule}; {verdict_text}.")
    return lines or ["No model updates left any site."]


def _privacy(report: Report) -> list[str]:
    lines = []
    for site, spent in report.privacy.items():
        budget = report.budgets.get(site, math.inf)
        used = max(spent.values(), default=0.0)
        line = f"{site}: epsilon {used:.2f} of its run budget {budget:g}"
        if site in report.lifetime:
            lifetime_budget = report.lifetime_budgets.get(site, math.inf)
            line += (
                f"; over its data set's lifetime {report.lifetime[site]:.2f} of {lifetime_budget:g}"
            )
        over = (
            used > budget + 1e-6
            or report.lifetime.get(site, 0.0) > report.lifetime_budgets.get(site, math.inf) + 1e-6
        )
        lines.append(line + (": OVER BUDGET." if over else ": within budget."))
    return lines or ["No site trained with differential privacy: no privacy was accounted."]


def _honesty(report: Report) -> list[str]:
    lines = [
        f"{f['site']} was flagged in round {f['round']} ({f['reason']}); "
        f"{'excluded from' if f['excluded'] else 'kept in'} the aggregate."
        for f in report.flagged
    ]
    lines += [
        f"{f['site']} {'did not answer' if f['what'] == 'no answer' else 'failed'} in "
        f"{'the roll call' if not f['round'] else 'round ' + str(f['round'])}: {f['reason']}."
        for f in report.failed
    ]
    return lines or ["No site was flagged by the honesty checks, and every site answered."]


def _leak(report: Report) -> list[str]:
    lines = []
    for site, leak in report.leak.items():
        if "attack_auc" not in leak:
            continue
        line = (
            f"{site}: a membership attack on its last model scores AUC {leak['attack_auc']:.2f} "
            "(0.50: it learns nothing)"
        )
        if "tpr_at_1pct_fpr" in leak:
            line += (
                f", finds {100 * leak['tpr_at_1pct_fpr']:.1f} % of members at 1 % false "
                f"positives and {100 * leak.get('tpr_at_01pct_fpr', math.nan):.1f} % at 0.1 %"
            )
        spent = max(report.privacy.get(site, {}).values(), default=None)
        if "canary_epsilon" in leak:
            line += f"; its canaries show epsilon of at least {leak['canary_epsilon']:.2f}" + (
                f", against the accountant's {spent:.2f}" if spent is not None else ""
            )
        lines.append(line + ".")
    if lines and report.run.get("canaries", 0) == 0:
        lines.append("No canaries were planted: set [privacy] canaries for an empirical bound.")
    return lines or ["No site scored a model: no leak was measured."]
