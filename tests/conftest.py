"""Shared fixtures: where the real datasets live, and a quiet Flower environment."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from in_process_grid import InProcessGrid

from flowerbed.audit.roster import build_roster, write_roster
from flowerbed.cli import main
from flowerbed.config import (
    DataSettings,
    Federation,
    PrivacySettings,
    SiteSettings,
    load_federation,
    save_federation,
)
from flowerbed.faults import behave
from flowerbed.hospital_client.app import make_client_app
from flowerbed.hospital_client.server_rounds import train_round
from flowerbed.hospital_client.site_folder import (
    SiteConfig,
    SiteFolder,
    SitePolicy,
    create_site_folder,
)
from flowerbed.hospital_client.site_roster import pin_roster
from flowerbed.models.factory import build_model
from flowerbed.protocol import records as R
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.run_folder import RunFolder
from flowerbed.run_layout import CHECKPOINT_FILE, METRICS_FILE, SITES_DIR
from flowerbed.server_app import coordinate
from flowerbed.simulation import enrol_sites

SMALL_CNN = ModelSpec("small-cnn", 2, 1, 2, (28, 28))
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")


def checkpointed_round(run: Path) -> int:
    """The last round a run folder's checkpoint holds; 0 before the first."""
    try:
        return int(torch.load(run / CHECKPOINT_FILE, weights_only=True)["round"])
    except (OSError, EOFError, RuntimeError, KeyError):
        return 0  # not written yet, or being replaced


def rows_by_round(run: Path) -> Counter:
    """How often each (round, site, split) has a row in the run's ``metrics.csv``."""
    with open(run / METRICS_FILE, newline="") as rows:
        return Counter((int(r["round"]), r["site"], r["split"]) for r in csv.DictReader(rows))


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def save_npz(
    path: Path,
    train: np.ndarray,
    test: np.ndarray,
    classes: int | list[int] = 2,
    train_labels: np.ndarray | None = None,
) -> Path:
    """A MedMNIST-layout ``.npz``, labels drawn from ``classes`` (a count, or the values)."""
    rng = np.random.default_rng(0)

    def labels(count: int) -> np.ndarray:
        if isinstance(classes, int):
            return rng.integers(0, classes, (count, 1)).astype(np.uint8)
        return rng.choice(classes, (count, 1)).astype(np.uint8)

    np.savez(
        path,
        train_images=train,
        train_labels=labels(len(train)) if train_labels is None else train_labels,
        val_images=test,
        val_labels=labels(len(test)),
        test_images=test,
        test_labels=labels(len(test)),
    )
    return path


@pytest.fixture(autouse=True)
def _flower_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path_factory.mktemp("flwr-home")))


@pytest.fixture(autouse=True)
def _check_tier_starts_no_process(request, monkeypatch):
    """Under ``make check`` (``FLOWERBED_CHECK=1``), a test not marked ``slow`` that starts a
    process (a subprocess, Ray, a Flower process) fails, so the edit loop stays fast."""
    if os.environ.get("FLOWERBED_CHECK") != "1" or request.node.get_closest_marker("slow"):
        return

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a process: mark it slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


def train_instruction(server_round: int, rounds: int, schedule: str = "constant") -> Message:
    """The ServerApp's train message for one site: the seeded small CNN, SGD at 0.05."""
    torch.manual_seed(0)
    model = build_model(SMALL_CNN)
    config = ConfigRecord(
        {
            R.SERVER_ROUND: server_round,
            R.NUM_ROUNDS: rounds,
            R.LOCAL_EPOCHS: 1,
            R.BATCH_SIZE: 32,
            R.LEARNING_RATE: 0.05,
            R.LR_SCHEDULE: schedule,
            R.SEED: 0,
            **SMALL_CNN.to_config(),
        }
    )
    content = RecordDict({R.ARRAYS: ArrayRecord(model.state_dict()), R.CONFIG: config})
    return Message(content=content, dst_node_id=7, message_type=MessageType.TRAIN)


def replies_for(
    federation: Federation, contexts: list[Context], server_round: int
) -> list[Message]:
    """Each site's real reply to a train instruction of ``server_round`` (of a 1-round run)."""
    replies = []
    for site, context in zip(federation.sites, contexts, strict=True):
        msg = train_instruction(server_round, 1)
        replies.append(Message(train_round(msg, context, federation, site), reply_to=msg))
    return replies


def flowerbed(monkeypatch, capsys, *arguments: str) -> tuple[int, str]:
    """Run the ``flowerbed`` command in this process: (exit code, what it printed).

    The same ``main`` the console script calls, without a fresh interpreter's
    import time (seconds) per call; ``test_cli`` runs the console script itself once.
    """
    monkeypatch.setattr(sys, "argv", ["flowerbed", *arguments])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def site_context() -> Context:
    """A fresh site's Flower context, as a SuperNode hands it to the ClientApp."""
    return Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})


def deployed_site_folder(
    root: Path, name: str, country: str, data: str = "synthetic", dp: bool = False, **policy
) -> SiteFolder:
    """A real site folder (config and keys) for a hospital on synthetic data, without DP
    unless ``dp`` (then with the default budget, epsilon 8 for its lifetime); segmentation
    data (``synthetic-seg``) at 16 pixels a side."""
    config = SiteConfig(
        site=SiteSettings(name=name, country=country, data=data),
        data=DataSettings(image_size=16 if data == "synthetic-seg" else None),
        privacy=PrivacySettings(enabled=dp),
        policy=SitePolicy(**policy),
    )
    return create_site_folder(root, config)


def pin_roster_of(*folders: SiteFolder) -> str:
    """A roster of ``folders`` built and pinned in each, as the real commands do; its sha."""
    root = folders[0].root.parent
    roster = root / "roster.toml"
    sha256 = write_roster(build_roster([f.public_file for f in folders], "DE"), roster)
    for folder in folders:
        pin_roster(folder, roster, sha256)
    return sha256


def _set_task_identity(patch: pytest.MonkeyPatch) -> None:
    """Messages made outside a running app need the identity Flower's runtime would set."""
    for attribute, value in (("_run_id", 1), ("_task_id", 1), ("_node_id", 0)):
        patch.setattr(TaskIdentity, attribute, value, raising=False)


@pytest.fixture
def task_identity(monkeypatch):
    _set_task_identity(monkeypatch)


AUDIT_SITES = [
    {"name": "berlin", "country": "DE"},
    {"name": "paris", "country": "FR"},
    {"name": "lyon", "country": "FR"},
]


def make_run(path: Path, strategy: str, budget: float = 8.0) -> tuple[Path, InProcessGrid]:
    """A real run (ServerApp coordination, ClientApp, guard, ledgers) on an in-process grid."""
    federation = load_federation(
        None,
        {
            "run": {"strategy": strategy, "rounds": 2, "topology": "complete"},
            "privacy": {"enabled": True, "epsilon": budget},
            "sites": AUDIT_SITES,
        },
    )
    return run_in_process(path, federation)


def run_in_process(
    path: Path, federation: Federation, in_transit: Callable[[Message], None] | None = None
) -> tuple[Path, InProcessGrid]:
    """``federation`` run for real (ServerApp, ClientApp, guard, ledgers, the sites' keys and
    roster as the simulation makes them), grid in-process; ``in_transit`` sees (and may
    alter) each message the relay passes on."""
    folder = RunFolder.create(path / "run", federation)
    enrol_sites(federation, folder)
    federation = load_federation(folder.config_file)
    save_federation(federation, path / "federation.toml")
    app = make_client_app(
        str(path / "federation.toml"), str(folder.path / SITES_DIR), str(folder.ledgers),
        act=behave,
    )  # fmt: skip
    grid = InProcessGrid(app, len(federation.sites))
    if in_transit is not None:
        grid.in_transit = in_transit
    coordinate(grid, federation, folder)
    return folder.path, grid


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, tuple[Path, InProcessGrid]]:
    """One honest FedAvg and one honest gossip run, for the audit tests to copy and attack."""
    patch = pytest.MonkeyPatch()
    _set_task_identity(patch)
    root = tmp_path_factory.mktemp("honest")
    made = {name: make_run(root / name, name) for name in ("fedavg", "gossip")}
    patch.undo()
    return made
