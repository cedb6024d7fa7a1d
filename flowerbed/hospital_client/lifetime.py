"""A site's privacy spend across runs: its own ledger is the record.

Each DP round's outgoing ledger entry holds the steps the round took (noise
multiplier, sample rate, steps, delta). A deployed site's ledger lives in its
site folder and outlives every run, so the steps of every earlier run are
there; composed with this run's (RDP composes over runs as over rounds)
they give the spend of the data set's lifetime, which ``site.toml``'s
``epsilon`` bounds. A simulated site's ledger is its run's: it has no
earlier runs. A run the rest of the budget cannot pay for is refused at the
roll call, before anything is trained.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context

from flowerbed.audit.ledger import read_ledger
from flowerbed.audit.schema import dp_history
from flowerbed.config import Federation, SiteSettings
from flowerbed.errors import SiteRefused
from flowerbed.hospital_client.site_folder import deployed_site
from flowerbed.privacy import rdp
from flowerbed.privacy.rdp import History

EPSILON_SLACK = 1e-9


class BudgetRefused(SiteRefused):
    """The run would take the site's data set past its lifetime budget."""


def ledger_history(ledger: Path, leave_out_run: int | None = None) -> dict[int, History]:
    """Every run's DP steps in the site ledger ``ledger``, by Flower run id, in order."""
    runs: dict[int, History] = {}
    if not ledger.is_file():
        return runs
    for entry in read_ledger(ledger).entries:
        rows = dp_history(entry)
        if rows and entry.get("run") != leave_out_run:
            runs.setdefault(int(entry["run"]), []).extend(rows)
    return runs


def earlier_runs(context: Context) -> History:
    """The DP steps this site's data set took in runs before this one."""
    folder = deployed_site(context)
    if folder is None:
        return []
    runs = ledger_history(folder.ledger_path, leave_out_run=context.run_id)
    return [row for history in runs.values() for row in history]


def check_affordable(
    context: Context, federation: Federation, site: SiteSettings, planned: History
) -> None:
    """``BudgetRefused`` if the steps this run plans, after every earlier run's, would pass
    the lifetime budget: one line with spent, planned and budget."""
    delta = federation.privacy.delta
    before = earlier_runs(context)
    spent = rdp.epsilon(before, delta)
    after = rdp.epsilon([*before, *planned], delta)
    budget = federation.lifetime_budget_of(site)
    if after > budget + EPSILON_SLACK:
        raise BudgetRefused(
            f"site {site.name} refuses this run: its data set has spent epsilon {spent:.2f} "
            f"of its lifetime budget {budget:g}, and this run plans "
            f"{rdp.epsilon(planned, delta):.2f} more ({after:.2f} composed); refused (lower "
            "the run's epsilon with run_epsilon, or retire the data set)"
        )
