"""A site's privacy spend across runs: its own ledger is the record.

Each DP round's outgoing ledger entry holds the steps the round took (noise
multiplier, sample rate, steps, delta). A deployed site's ledger lives in its
site folder and outlives every run, so the steps of every earlier run are
there; composed with this run's (RDP composes over runs as over rounds)
they give the spend of the data set's lifetime, which ``site.toml``'s
``epsilon`` bounds. A simulated site's ledger is its run's: it has no
earlier runs. A run the rest of the budget cannot pay for is refused at the
roll call, before anything is trained.

A resumed run is a new Flower run that names the Flower runs it continues
(``R.CONTINUES``): their steps are this run's, so the site's account for the
run starts from them, read from its ledger (``carry_over``), and they are no
"earlier run".
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flwr.app import ConfigRecord, Context, RecordDict

from flowerbed.audit.ledger import Ledger, read_ledger
from flowerbed.audit.schema import dp_history, resumed_entry, run_parts
from flowerbed.config import Federation, SiteSettings
from flowerbed.errors import SiteRefused
from flowerbed.hospital_client.site_folder import deployed_site
from flowerbed.privacy import rdp
from flowerbed.privacy.accounting import STATE_KEY, PrivacyAccount
from flowerbed.privacy.rdp import History
from flowerbed.protocol import records as R

EPSILON_SLACK = 1e-9


class BudgetRefused(SiteRefused):
    """The run would take the site's data set past its lifetime budget."""


def ledger_history(ledger: Path, leave_out: Iterable[int] = ()) -> dict[int, History]:
    """Every run's DP steps in the site ledger ``ledger``, in order, by the Flower run id
    it began as (a resumed run's parts are one run: the site noted each resume there)."""
    runs: dict[int, History] = {}
    if not ledger.is_file():
        return runs
    left_out, entries = set(leave_out), read_ledger(ledger).entries
    parts = run_parts(entries)
    for entry in entries:
        if entry is None:
            continue  # unreadable: audit verify names it
        rows = dp_history(entry)
        if rows and entry.get("run") not in left_out:
            run = int(entry["run"])
            runs.setdefault(parts.get(run, run), []).extend(rows)
    return runs


def continued_runs(config: ConfigRecord) -> list[int]:
    """The Flower runs a resumed run continues; none for a fresh run."""
    return [int(run) for run in config.get(R.CONTINUES, [])]


def earlier_runs(context: Context, config: ConfigRecord) -> History:
    """The DP steps this site's data set took in runs before this one (a resumed run's
    earlier parts are this run, not earlier ones)."""
    folder = deployed_site(context)
    if folder is None:
        return []
    this_run = [context.run_id, *continued_runs(config)]
    runs = ledger_history(folder.ledger_path, leave_out=this_run)
    return [row for history in runs.values() for row in history]


def carry_over(context: Context, ledger: Ledger, content: RecordDict) -> None:
    """Start a resumed run's privacy account from the steps its earlier parts took, as the
    site's ``ledger`` records them, and note there that this Flower run continues them; the
    run's first message does it, once."""
    config = content.config_records.get(R.CONFIG, ConfigRecord())
    continues = continued_runs(config)
    if not continues or STATE_KEY in context.state:
        return
    account = PrivacyAccount()
    for entry in read_ledger(ledger.path).entries:
        if entry is not None and entry.get("run") in continues:
            for noise, rate, steps in dp_history(entry):
                account.record(noise, rate, steps)
    context.state[STATE_KEY] = account.to_record()
    ledger.append(resumed_entry(context.run_id, continues, int(config.get(R.ROUNDS_DONE, 0))))


def this_run(context: Context) -> History:
    """The DP steps this run has taken so far (a resumed run's earlier parts included)."""
    return PrivacyAccount.from_record(context.state.get(STATE_KEY)).history


def check_affordable(
    context: Context,
    federation: Federation,
    site: SiteSettings,
    planned: History,
    asked: ConfigRecord,
) -> None:
    """``BudgetRefused`` if the steps this run plans, after every earlier run's, would pass
    the lifetime budget: one line with spent, planned and budget. A resumed run plans the
    rounds still to play, after the steps its earlier parts took (this run's account)."""
    delta = federation.privacy.delta
    before = [*earlier_runs(context, asked), *this_run(context)]
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
