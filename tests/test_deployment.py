"""A real federation on loopback: one SuperLink, a SuperNode per hospital, TLS and auth.

Every process is the real ``flowerbed`` command (and through it Flower's own
``flower-superlink`` / ``flower-supernode``), started in its own process
group and stopped by it, even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import deployed_site_folder
from loopback import Processes, free_port, wait_for

from flowerbed.audit.verify import verify_run
from flowerbed.deployment.app_bundle import app_hash
from flowerbed.deployment.certificates import make_certificates

pytestmark = pytest.mark.slow

FLOWERBED = str(Path(sys.executable).parent / "flowerbed")
SITES = {"berlin": "DE", "paris": "FR", "lyon": "FR"}
UNAPPROVING = ("nantes", "FR")  # registered, but its operator approved no app


def write_federation(path: Path, sites: dict[str, str], folders: Path, strategy: str) -> Path:
    lines = [f'[run]\nstrategy = "{strategy}"\nrounds = 2\ntopology = "complete"\n']
    lines.append("[privacy]\nenabled = false\n")
    for name, country in sites.items():
        key = folders / name / "keys" / "supernode.pub"
        lines.append(
            f'[[sites]]\nname = "{name}"\ncountry = "{country}"\nsupernode_key = "{key}"\n'
        )
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """A SuperLink with four registered hospitals; three approved this flowerbed's app."""
    root = tmp_path_factory.mktemp("deployment")
    certificates = make_certificates(root / "certs", ["127.0.0.1", "localhost"])
    folders = root / "sites"
    for name, country in SITES.items():
        deployed_site_folder(folders / name, name, country, approved_apps=[app_hash()])
    deployed_site_folder(folders / UNAPPROVING[0], *UNAPPROVING)
    everyone = {**SITES, UNAPPROVING[0]: UNAPPROVING[1]}
    registered = write_federation(root / "registered.toml", everyone, folders, "fedavg")
    address = f"127.0.0.1:{free_port()}"
    processes = Processes(root)
    try:
        coordinator, log = processes.start(
            "coordinator", FLOWERBED, "coordinator", "launch", str(registered),
            "--certificates", str(certificates.folder), "--address", address,
            "--state", str(root / "state"), home=root / "flwr-coordinator",
        )  # fmt: skip
        wait_for(log, "SuperLink up", coordinator)
        for name in everyone:
            processes.start(
                name, FLOWERBED, "site", "launch", str(folders / name / "site.toml"),
                "--superlink", address, "--root-certificates", str(certificates.ca),
                "--port", str(free_port()), home=root / f"flwr-{name}",
            )  # fmt: skip
        yield {
            "root": root, "address": address, "ca": certificates.ca, "folders": folders,
            "processes": processes, "coordinator_log": log,
        }  # fmt: skip
    finally:
        processes.stop_all()


def flowerbed_run(
    federation: dict, federation_file: Path, out: Path
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FLOWERBED, "run", str(federation_file), "--superlink", federation["address"],
         "--root-certificates", str(federation["ca"]), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "FLWR_HOME": str(federation["root"] / "flwr-run")},
    )  # fmt: skip


def collect_ledgers(federation: dict, run: Path, sites: list[str]) -> None:
    """What an auditor does: gather each site's own ledger beside the coordinator's."""
    for name in sites:
        shutil.copy(
            federation["folders"] / name / "ledger.jsonl", run / "ledgers" / f"{name}.jsonl"
        )


@pytest.mark.parametrize("strategy", ["fedavg", "gossip"])
def test_three_hospitals_train_on_real_supernodes_and_their_ledgers_verify(federation, strategy):
    root = federation["root"]
    spec = write_federation(root / f"{strategy}.toml", SITES, federation["folders"], strategy)
    run = root / f"run-{strategy}"
    result = flowerbed_run(federation, spec, run)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "round 2: mean test AUC" in " ".join(result.stdout.split())
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["rounds_completed"] == 2
    rows = (run / "metrics.csv").read_text().splitlines()
    # Each site's node config (site="SITE_DIR/site.toml") reached its ClientApp: it
    # answered as itself, from its own country, and kept its ledger in its own folder.
    for name, country in SITES.items():
        assert any(f",{name},{country},test," in row for row in rows)
    assert "nantes" not in "".join(rows)  # registered and connected, but not in this federation
    collect_ledgers(federation, run, list(SITES))
    verdict = verify_run(run)
    assert verdict.problems == []
    assert set(verdict.ledgers) == {"coordinator", *SITES}


def test_a_site_refuses_an_app_its_operator_did_not_approve(federation):
    root = federation["root"]
    sites = {"berlin": "DE", UNAPPROVING[0]: UNAPPROVING[1]}
    spec = write_federation(root / "unapproved.toml", sites, federation["folders"], "fedavg")
    result = flowerbed_run(federation, spec, root / "run-unapproved")
    said = " ".join(result.stdout.split())
    assert result.returncode == 1
    assert "nantes did not answer the roll call" in said
    assert "The FAB could not be verified" in said
    refusals = [
        json.loads(line)
        for line in (federation["folders"] / "nantes" / "ledger.jsonl").read_text().splitlines()
        if '"app-refused"' in line
    ]
    assert refusals and refusals[0]["app"] == app_hash() and "signature" in refusals[-1]


def test_an_unregistered_site_is_refused_by_the_superlink(federation, tmp_path):
    stranger = deployed_site_folder(tmp_path / "stranger", "stranger", "DE")
    result = subprocess.run(
        [FLOWERBED, "site", "launch", str(stranger.site_file), "--superlink",
         federation["address"], "--root-certificates", str(federation["ca"]),
         "--port", str(free_port())],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "FLWR_HOME": str(tmp_path / "flwr")},
    )  # fmt: skip
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1
    assert "Failed to activate SuperNode" in said
    assert "has not registered" in said


def test_a_certificate_from_another_ca_is_refused_before_anything_starts(federation, tmp_path):
    other = make_certificates(tmp_path / "other", ["127.0.0.1"])
    folder = deployed_site_folder(tmp_path / "site", "berlin", "DE")
    result = subprocess.run(
        [FLOWERBED, "site", "launch", str(folder.site_file), "--superlink",
         federation["address"], "--root-certificates", str(other.ca)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = " ".join(result.stdout.split())
    assert result.returncode == 1
    assert "presents a certificate" in said and "Traceback" not in said
