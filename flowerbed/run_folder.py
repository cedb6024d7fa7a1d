"""The run folder: resolved config, per-round per-site metrics, the model, the outcome.

What goes where is ``flowerbed.run_layout``. Rows are appended and flushed as
each round's replies arrive, so a run that fails part-way keeps every round
it finished. The folder also holds the coordinator's ledger, and so writes
the honesty flags the strategies report into it.

A server-side run checkpoints its global model after every round
(``checkpoint.pt``); ``RunFolder.resume`` reopens a run whose coordinator
died, to go on from there in the same folder and ledger chain.
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
from flwr.app import ArrayRecord
from flwr.common.logger import log

from flowerbed.audit.ledger import Ledger, read_ledger
from flowerbed.audit.schema import flag_entry
from flowerbed.config import COORDINATOR, Federation, load_federation, save_federation
from flowerbed.errors import FlowerbedError
from flowerbed.models.model_file import MODEL_FILE, save_model
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.run_layout import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    COORDINATOR_KEY_FILE,
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

    @classmethod
    def resume(cls, path: Path, **kwargs) -> tuple[RunFolder, Federation, ArrayRecord]:
        """A run folder whose coordinator stopped, to go on from its last completed round:
        the folder, its federation as it was resolved (``config.toml``), and the global model
        of that round. Rows of the round it did not complete are dropped from
        ``metrics.csv`` (that round is played again; the ledgers keep every message of it).
        """
        path = Path(path).resolve()
        federation, checkpoint = resumable(path)
        folder = cls(path, {site.name: site.country for site in federation.sites}, **kwargs)
        folder.rounds_completed = int(checkpoint["round"])
        folder.failures = list(_read_status(path).get("failures", []))
        folder._keep_rows_up_to(folder.rounds_completed)
        return folder, federation, ArrayRecord(checkpoint["state_dict"])

    def _keep_rows_up_to(self, last_round: int) -> None:
        with open(self.path / METRICS_FILE, newline="") as rows:
            kept = [r for r in csv.reader(rows) if r[0] == "round" or int(r[0]) <= last_round]
        partial = self.path / (METRICS_FILE + ".tmp")
        with open(partial, "w", newline="") as out:
            csv.writer(out).writerows(kept)
        partial.replace(self.path / METRICS_FILE)

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
        """The coordinator's ledger (``ledgers/coordinator.jsonl``), under a key of this run,
        kept in the run folder (``coordinator.key``) for a resumed run to sign on with."""
        key_file = self.path / COORDINATOR_KEY_FILE
        if key_file.is_file():
            key = Ed25519PrivateKey.from_private_bytes(key_file.read_bytes())
        else:
            key = Ed25519PrivateKey.generate()
            key_file.touch(mode=0o600)  # created owner-only before the key is in it
            key_file.write_bytes(key.private_bytes_raw())
        self.ledger = Ledger.open(self.ledgers / f"{COORDINATOR}.jsonl", COORDINATOR, country, key)
        return self.ledger

    def earlier_runs(self) -> list[int]:
        """The Flower run ids of this run's earlier parts, which a resumed run continues."""
        if self.ledger is None:
            return []
        runs = {e.get("run") for e in read_ledger(self.ledger.path).entries if e is not None}
        return sorted(int(run) for run in runs if run is not None)

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

    def checkpoint(self, server_round: int, arrays: ArrayRecord) -> None:
        """The global model after ``server_round``, atomically: ``--resume`` goes on from it."""
        partial = self.path / (CHECKPOINT_FILE + ".tmp")
        torch.save({"round": server_round, "state_dict": arrays.to_torch_state_dict()}, partial)
        partial.replace(self.path / CHECKPOINT_FILE)

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


def resumable(path: Path) -> tuple[Federation, dict]:
    """The federation of the run in ``path`` and its checkpoint (``round``, ``state_dict``),
    if the run can be resumed; ``FlowerbedError`` (one line: why not) if not."""
    if not (path / CONFIG_FILE).is_file() or not (path / METRICS_FILE).is_file():
        raise FlowerbedError(
            f"--resume {path}: holds no run (no {CONFIG_FILE} and {METRICS_FILE}); pass "
            "the run folder of the run to go on with"
        )
    federation = load_federation(path / CONFIG_FILE)
    if federation.run.strategy == "gossip":
        raise FlowerbedError(
            f"--resume {path}: a gossip run cannot be resumed yet (the relay does not "
            "checkpoint the sealed payloads in flight); start a new run"
        )
    if _read_status(path).get("status") == "completed":
        raise FlowerbedError(
            f"--resume {path}: the run completed all its {federation.run.rounds} rounds; "
            "there is nothing to resume"
        )
    if not (path / CHECKPOINT_FILE).is_file():
        raise FlowerbedError(
            f"--resume {path}: the run stopped before its first round completed, so "
            "there is nothing to go on from; start it again with a new --out"
        )
    return federation, torch.load(path / CHECKPOINT_FILE, weights_only=True)


def _read_status(path: Path) -> dict:
    status = path / STATUS_FILE
    return json.loads(status.read_text()) if status.is_file() else {}
