"""The run folder: resolved config, per-round per-site metrics, the model, the outcome.

Layout::

    RUN_DIR/config.toml     the federation as resolved (file + flags)
    RUN_DIR/metrics.csv     round,site,country,split,num_examples,loss,auc,accuracy,epsilon,...
                            (a site that failed a round has a row with status "failed"
                            and its error)
    RUN_DIR/model.pt        final global model: state dict and the spec to rebuild it
    RUN_DIR/status.json     completed, or stopped and why; each site's failures
    RUN_DIR/flower.log      simulation: Flower's log and the sites' tracebacks
    RUN_DIR/ledgers/        one ledger per party: <site>.jsonl and coordinator.jsonl

Rows are appended and flushed as each round's replies arrive, so a run that
fails part-way keeps every round it finished.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch

from flowerbed.config import Federation, save_federation
from flowerbed.errors import FlowerbedError
from flowerbed.models import ModelSpec
from flowerbed.strategies import SiteRow

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.csv"
MODEL_FILE = "model.pt"
STATUS_FILE = "status.json"
LOG_FILE = "flower.log"
LEDGERS_DIR = "ledgers"
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
        torch.save(
            {"spec": dataclasses.asdict(spec), "state_dict": state_dict}, self.path / MODEL_FILE
        )

    def save_status(self, completed: bool, reason: str = "") -> None:
        status = {
            "status": "completed" if completed else "stopped",
            "rounds_completed": self.rounds_completed,
            "reason": reason,
            "failures": self.failures,
        }
        (self.path / STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n")
