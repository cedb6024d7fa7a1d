"""The audit report's figures, as ``report.build_report`` derives them from the ledgers.

Apart from the derivation, so the pages (``report_pages``) and the first
page's sentences (``plain_language``) read the same figures it writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    leak: dict[str, dict[str, float]]  # site -> LEAK_FIELDS' names, of its last scored model
    scores_by_round: dict[str, dict[int, float]]  # site -> round -> test AUC, or Dice
    signature: dict[str, Any]  # what a signature on this report covers (``_signature``)
    summary: dict[str, list[str]] = field(default_factory=dict)  # the plain-language page
    report_sha256: str = ""  # of ``signed_body``: everything above
    rendered_with: dict[str, str] = field(default_factory=dict)  # software; not signed
