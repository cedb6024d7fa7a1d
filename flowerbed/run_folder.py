"""The run folder: resolved config, per-round per-site metrics, the model, the outcome.

What goes where is ``flowerbed.run_layout``. Rows are appended and flushed as
each round's replies arrive, so a run that fails part-way keeps every round
it finished. The folder also holds the coordinator's ledger, and so writes
the honesty flags the strategies report into it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from collections.abc import Callable
from logging import WARNING
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.common.logger import log

from flowerbed.audit.ledger import Ledger
from flowerbed.audit.schema import flag_entry
from flowerbed.config import COORDINATOR, Federation, save_federation
from flowerbed.errors import FlowerbedError
from flowerbed.models.model_file import MODEL_FILE, save_model
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.run_layout import (
    CONFIG_FILE,
    LEDGERS_DIR,
    LOG_FILE,
    METRICS_FILE,
    ROSTER_FILE,
    STATUS_FILE,
)
from flowerbed.strategies.observer import SiteRow

METRIC_COLUMNS = [field.name for field in dataclasses.fields(SiteRow)]


def check_new_run_folder(path: Path) -> None:
    """``FlowerbedError`` unless ``path`` can become a new run folder (nothing is overwritten)."""
    if path.exists() and not path.is_dir():
        raise FlowerbedError(f"--out {path}: is a file, not a folder; pass a new folder")
    if (path / METRICS_FILE).exists():
        raise FlowerbedError(f"{path} already holds a run; pass a new --out or remove it")
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise FlowerbedError(f"--out {path}: {existing} is a file, not a folder; pass another")


def _with_roster_copy(federation: Federation, path: Path) -> Federation:
    """The federation naming its roster's copy in the run folder, which the auditor reads."""
    source = Path(str(federation.coordinator.roster))
    try:
        shutil.copyfile(source, path / ROSTER_FILE)
    except OSError as err:
        raise FlowerbedError(f"{source}: cannot copy the roster ({err.strerror})") from None
    return with_roster(federation, path / ROSTER_FILE)


def with_roster(federation: Federation, roster: Path) -> Federation:
    coordinator = federation.coordinator.model_copy(update={"roster": str(roster)})
    return federation.model_copy(update={"coordinator": coordinator})


class RunFolder:
    """Writes one run's folder; implements the strategies' ``RoundObserver``."""

    def __init__(
        self,
        path: Path,
        countries: dict[str, str],
        on_round: Callable[[int, list[SiteRow]], None] | None = None,
    ) -> None:
        """``on_round(round, rows)`` is called after each round with that round's rows, the
        failed sites' among them; ``countries`` maps each site to its country."""
        self.path = Path(path)
        self.countries = countries
        self.on_round = on_round
        self.failures: list[str] = []
        self.failed_rows: list[SiteRow] = []
        self.latest: dict[tuple[str, str], SiteRow] = {}
        self._this_round: list[SiteRow] = []
        self.rounds_completed = 0
        self.ledger: Ledger | None = None

    @classmethod
    def create(cls, path: Path, federation: Federation, **kwargs) -> RunFolder:
        """A fresh run folder; refuses one that already holds a run, so nothing is overwritten."""
        path = Path(path).resolve()
        check_new_run_folder(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FlowerbedError(
                f"--out {path}: cannot create the run folder ({err.strerror}); pass a writable one"
            ) from None
        if federation.coordinator.roster is not None:
            federation = _with_roster_copy(federation, path)
        save_federation(federation, path / CONFIG_FILE)
        with open(path / METRICS_FILE, "w", newline="") as out:
            csv.writer(out).writerow(METRIC_COLUMNS)
        return cls(path, {site.name: site.country for site in federation.sites}, **kwargs)

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    @property
    def ledgers(self) -> Path:
        return self.path / LEDGERS_DIR

    def open_ledger(self, country: str) -> Ledger:
        """The coordinator's ledger (``ledgers/coordinator.jsonl``), under a key of this run."""
        self.ledger = Ledger.open(
            self.ledgers / f"{COORDINATOR}.jsonl", COORDINATOR, country,
            Ed25519PrivateKey.generate(),
        )  # fmt: skip
        return self.ledger

    def site_flagged(
        self, server_round: int, site: str, reason: str, excluded: bool, reporter: str | None
    ) -> None:
        """Logged, and signed into the coordinator's ledger once it is open."""
        log(
            WARNING, "round %d: %s flagged %s: %s",
            server_round, reporter or "coordinator", site, reason,
        )  # fmt: skip
        if self.ledger is not None:
            self.ledger.append(
                flag_entry(server_round, site, reason, excluded, reporter), sign=True
            )

    def site_rows(self, rows: list[SiteRow]) -> None:
        with open(self.path / METRICS_FILE, "a", newline="") as out:
            writer = csv.writer(out)
            for row in rows:
                writer.writerow(dataclasses.astuple(row))
                self.latest[row.site, row.split] = row
        self._this_round.extend(rows)

    def site_failed(self, server_round: int, split: str, site: str, reason: str) -> None:
        """A row of its own in ``metrics.csv``, and a line in ``status.json``."""
        self.failures.append(f"round {server_round} {split}: {site}: {reason}")
        row = SiteRow.failed(server_round, split, site, self.countries.get(site, ""), reason)
        self.failed_rows.append(row)
        self.site_rows([row])

    def round_done(self, server_round: int) -> None:
        self.rounds_completed = server_round
        rows, self._this_round = self._this_round, []
        if self.on_round is not None:
            self.on_round(server_round, rows)

    def save_model(self, state_dict: dict[str, torch.Tensor], spec: ModelSpec) -> None:
        save_model(self.path / MODEL_FILE, state_dict, spec)

    def save_status(self, completed: bool, reason: str = "") -> None:
        status = {
            "status": "completed" if completed else "stopped",
            "rounds_completed": self.rounds_completed,
            "reason": reason,
            "failures": self.failures,
        }
        (self.path / STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n")
