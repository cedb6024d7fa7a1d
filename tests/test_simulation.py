"""Real runs on Flower's simulation engine (Ray): tiny model, few sites, few rounds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import shared_file

from flowerbed.config import load_federation
from flowerbed.models.factory import build_model
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.simulation import simulate

pytestmark = pytest.mark.slow
COLUMNS = [
    "round",
    "site",
    "country",
    "split",
    "num_examples",
    "loss",
    "auc",
    "accuracy",
    "dice",
    "epsilon",
]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from flowerbed.cli import main; main()", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=os.environ.copy())


def test_cli_runs_a_dp_fedavg_federation_and_writes_the_run_folder(tmp_path):
    result = run_cli("simulate", "--sites", "3", "--rounds", "2", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "round 2: mean test AUC" in result.stdout
    assert "hospital-03" in result.stdout and "epsilon spent" in result.stdout
    run = tmp_path / "run"
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.columns[: len(COLUMNS)]) == COLUMNS
    assert len(metrics) == 2 * 3 * 2
    assert set(metrics.split) == {"train", "test"}
    assert set(metrics.country) == {"DE", "FR"}
    tests = metrics[metrics.split == "test"]
    assert tests.auc.min() > 0.5
    per_site = tests.pivot(index="round", columns="site", values="epsilon")
    assert (per_site.loc[2] > per_site.loc[1]).all()
    assert (per_site.loc[2] <= 8.0).all()
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert load_federation(run / "config.toml").run.rounds == 2
    saved = torch.load(run / "model.pt")
    model = build_model(ModelSpec(**saved["spec"]))
    model.load_state_dict(saved["state_dict"])
    # The audit trail comes with every run: one ledger per party, verified, and reported.
    assert sorted(p.stem for p in (run / "ledgers").iterdir()) == [
        "coordinator", "hospital-01", "hospital-02", "hospital-03",
    ]  # fmt: skip
    assert json.loads((run / "report.json").read_text())["verdict"] == "verified"
    assert "ledgers verified" in " ".join(result.stdout.split())
    verify = run_cli("audit", "verify", "run", cwd=tmp_path)
    assert verify.returncode == 0 and "verified" in verify.stdout


def test_fedprox_without_dp_learns_the_synthetic_task(tmp_path):
    federation = load_federation(
        None,
        {
            "run": {"strategy": "fedprox", "rounds": 2},
            "privacy": {"enabled": False},
            "data": {"partition": "dirichlet", "alpha": 1.0},
        },
    )
    seen = []
    folder = simulate(federation, tmp_path / "run", on_round=lambda r, rows: seen.append(r))
    assert seen == [1, 2]
    finals = [folder.latest[site.name, "test"] for site in federation.sites]
    assert min(row.auc for row in finals) > 0.8
    assert all(row.epsilon == 0.0 for row in finals)


def test_cli_runs_dp_gossip_segmentation_with_no_global_model_and_each_site_keeping_its_own(
    tmp_path,
):
    result = run_cli(
        "simulate", "--strategy", "gossip", "--topology", "ring", "--sites", "4",
        "--data", "synthetic-seg", "--image-size", "16", "--rounds", "2", "--out", "run",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    said = " ".join(result.stdout.split())
    assert "segmentation of 16x16 2D images · unet" in said and "disagreement" in said
    assert "mean test Dice" in said
    run = tmp_path / "run"
    metrics = pd.read_csv(run / "metrics.csv")
    assert len(metrics) == 2 * 4 * 2
    trained = metrics[metrics.split == "train"]
    assert (trained.bytes_sent > 0).all() and (trained.status == "ok").all()
    tested = metrics[metrics.split == "test"]
    assert tested.disagreement.notna().all() and tested.auc.isna().all()
    by_round = tested.groupby("round").dice.mean()
    assert by_round[2] > max(by_round[1], 0.4), by_round
    assert (tested.epsilon > 0).all() and (tested.epsilon <= 8.0).all()
    assert not (run / "model.pt").exists()
    sites = sorted(p.name for p in (run / "sites").iterdir())
    assert sites == [f"hospital-0{i}" for i in range(1, 5)]
    consensus = pd.read_csv(run / "consensus.csv")
    assert list(consensus["round"]) == [1, 2]


@pytest.mark.data
def test_pneumoniamnist_federation_learns(tmp_path):
    data = shared_file("medmnist/pneumoniamnist.npz")
    federation = load_federation(
        None,
        {
            "run": {"rounds": 3},
            "data": {"source": str(data), "partition": "iid"},
            "privacy": {"enabled": False},
        },
    )
    folder = simulate(federation, tmp_path / "run")
    aucs = [folder.latest[site.name, "test"].auc for site in federation.sites]
    assert sum(aucs) / len(aucs) > 0.8


def test_segmentation_fedavg_learns_the_synthetic_masks_with_dice_in_every_record(tmp_path):
    federation = load_federation(
        None,
        {
            "run": {"rounds": 2},
            "privacy": {"enabled": False},
            "data": {"source": "synthetic-seg", "image_size": 16},
            "sites": [{"name": "berlin", "country": "DE"}, {"name": "paris", "country": "FR"}],
        },
    )
    dice = []
    folder = simulate(
        federation,
        tmp_path / "run",
        on_round=lambda r, rows: dice.append(min(x.dice for x in rows if x.split == "test")),
    )
    assert dice[-1] > dice[0] and dice[-1] > 0.5, dice
    metrics = pd.read_csv(folder.path / "metrics.csv")
    assert metrics.dice.notna().all() and metrics.auc.isna().all()
    report = json.loads((folder.path / "report.json").read_text())
    assert report["verdict"] == "verified" and report["run"]["model"].startswith("unet (seg")
    assert {site["dice"] for site in report["test_scores"].values()} == {
        row.dice for row in (folder.latest[s.name, "test"] for s in federation.sites)
    }
