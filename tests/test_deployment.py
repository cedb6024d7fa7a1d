"""A real federation on loopback: one SuperLink, a SuperNode per hospital, TLS and auth.

Every process is the real ``flowerbed`` command (and through it Flower's own
``flower-superlink`` / ``flower-supernode``), started in its own process
group and stopped by it, even when a test fails.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import deployed_site_folder
from loopback import Processes, free_port, kill, wait_for

from flowerbed.audit.report import build_report
from flowerbed.audit.verify import verify_run
from flowerbed.deployment.app_bundle import app_hash
from flowerbed.deployment.certificates import make_certificates

pytestmark = pytest.mark.slow

FLOWERBED = str(Path(sys.executable).parent / "flowerbed")
SITES = {"berlin": "DE", "paris": "FR", "lyon": "FR"}
UNAPPROVING = ("nantes", "FR")  # registered, but its operator approved no app
DOOMED = ("hamburg", "DE")  # approved; its SuperNode is killed mid-run by one test
ROSTER = "roster.toml"  # in the sites' folder: every site pinned it


def write_federation(
    path: Path,
    sites: dict[str, str],
    folders: Path,
    strategy: str,
    run: str = "rounds = 2",
    roster: Path | None = None,
    dp: bool = False,
) -> Path:
    lines = [f'[run]\nstrategy = "{strategy}"\n{run}\ntopology = "complete"\n']
    lines.append(f"[privacy]\nenabled = {str(dp).lower()}\n")
    lines.append(f'[coordinator]\ncountry = "DE"\nroster = "{roster or folders / ROSTER}"\n')
    for name, country in sites.items():
        key = folders / name / "keys" / "supernode.pub"
        lines.append(
            f'[[sites]]\nname = "{name}"\ncountry = "{country}"\nsupernode_key = "{key}"\n'
        )
    path.write_text("\n".join(lines))
    return path


def start_federation(root: Path, folders: Path, sites: dict[str, str], processes: Processes):
    """The sites' roster built and pinned, a SuperLink registering them, and their SuperNodes;
    what the tests need to know of it."""
    certificates = make_certificates(root / "certs", ["127.0.0.1", "localhost"])
    pin_a_roster(folders, folders / ROSTER, list(sites))
    registered = write_federation(root / "registered.toml", sites, folders, "fedavg")
    address = f"127.0.0.1:{free_port()}"
    coordinator, log = processes.start(
        "coordinator", FLOWERBED, "coordinator", "launch", str(registered),
        "--certificates", str(certificates.folder), "--address", address,
        "--state", str(root / "state"), home=root / "flwr-coordinator",
    )  # fmt: skip
    wait_for(log, "SuperLink up", coordinator)
    nodes = {
        name: processes.start(
            name, FLOWERBED, "site", "launch", str(folders / name / "site.toml"),
            "--superlink", address, "--root-certificates", str(certificates.ca),
            "--port", str(free_port()), home=root / f"flwr-{name}",
        )[0]
        for name in sites
    }  # fmt: skip
    return {
        "root": root, "address": address, "ca": certificates.ca, "folders": folders,
        "processes": processes, "coordinator_log": log, "nodes": nodes,
    }  # fmt: skip


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """A SuperLink with five registered hospitals, which all pinned one roster; four
    approved this flowerbed's app. They segment (UNet, Dice): deployed classification under
    DP-SGD, the coordinator killed and resumed and each lifetime budget spent once, runs in
    the README's "Run a real federation" block (``tests/test_readme.py`` checks what it
    leaves); a run past a lifetime budget is refused in ``tests/test_lifetime.py``."""
    root = tmp_path_factory.mktemp("deployment")
    folders = root / "sites"
    for name, country in (*SITES.items(), DOOMED):
        deployed_site_folder(
            folders / name, name, country, data="synthetic-seg", approved_apps=[app_hash()]
        )
    deployed_site_folder(folders / UNAPPROVING[0], *UNAPPROVING)
    everyone = {**SITES, DOOMED[0]: DOOMED[1], UNAPPROVING[0]: UNAPPROVING[1]}
    processes = Processes(root)
    try:
        yield start_federation(root, folders, everyone, processes)
    finally:
        processes.stop_all()


def pin_a_roster(folders: Path, roster: Path, sites: list[str], pin: bool = True) -> str:
    """What the coordinator and the sites do: a roster from their public files, built and
    pinned with the real commands; its sha256."""
    built = subprocess.run(
        [FLOWERBED, "coordinator", "roster", *(str(folders / n / "public.toml") for n in sites),
         "--country", "DE", "--out", str(roster)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    sha256 = built.stdout.split()[-1]
    for name in sites if pin else []:
        subprocess.run(
            [FLOWERBED, "site", "pin", str(folders / name / "site.toml"), str(roster), sha256],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
    return sha256


def run_command(federation: dict, federation_file: Path, out: Path) -> list[str]:
    return [
        FLOWERBED, "run", str(federation_file), "--superlink", federation["address"],
        "--root-certificates", str(federation["ca"]), "--out", str(out),
    ]  # fmt: skip


def run_env(federation: dict) -> dict[str, str]:
    return {**os.environ, "FLWR_HOME": str(federation["root"] / "flwr-run")}


def flowerbed_run(
    federation: dict, federation_file: Path, out: Path
) -> subprocess.CompletedProcess:
    return subprocess.run(
        run_command(federation, federation_file, out),
        capture_output=True, text=True, timeout=600, env=run_env(federation),
    )  # fmt: skip


def collect_ledgers(federation: dict, run: Path, sites: list[str]) -> None:
    """What an auditor does: gather each site's own ledger beside the coordinator's."""
    for name in sites:
        shutil.copy(
            federation["folders"] / name / "ledger.jsonl", run / "ledgers" / f"{name}.jsonl"
        )


# Gossip here; FedAvg on real SuperNodes runs in the killed-site test below (three
# sites, rows and verify checked) and in the README's "Run a real federation" block.
@pytest.mark.parametrize("strategy", ["gossip"])
def test_three_hospitals_train_on_real_supernodes_and_their_ledgers_verify(federation, strategy):
    root = federation["root"]
    spec = write_federation(root / f"{strategy}.toml", SITES, federation["folders"], strategy)
    run = root / f"run-{strategy}"
    result = flowerbed_run(federation, spec, run)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "round 2: mean test Dice" in " ".join(result.stdout.split())
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
    report = build_report(run)
    assert report.run["model"].startswith("unet (segmentation, 16x16 images")
    assert all(0 < scores["dice"] <= 1 for scores in report.test_scores.values())
    # What a signature covers: the bundle `flowerbed run` submitted, and each site's own
    # ledger says it approved that one; the roster every site held the run to.
    signed = report.signature
    assert signed["app_sha256"] == app_hash() and signed["app_approved_by"] == sorted(SITES)
    assert signed["app_not_approved_by"] == [] and len(signed["roster_sha256"]) == 1
    assert signed["ledger_heads"].keys() == {"coordinator", *SITES}


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


def test_a_site_refuses_a_run_of_a_roster_it_did_not_pin(federation):
    root, folders = federation["root"], federation["folders"]
    sites = {"berlin": "DE", "paris": "FR"}
    other = pin_a_roster(folders, root / "other-roster.toml", list(sites), pin=False)
    spec = write_federation(root / "other-roster-federation.toml", sites, folders, "fedavg",
                            roster=root / "other-roster.toml")  # fmt: skip
    result = flowerbed_run(federation, spec, root / "run-other-roster")
    said = " ".join(result.stdout.split())
    assert result.returncode == 1
    assert f"the run names roster {other[:12]}, this site pinned roster" in said
    for name in sites:  # nothing sent, the refusal signed into each site's ledger
        entries = [json.loads(line) for line in (folders / name / "ledger.jsonl").open()]
        refused = [e for e in entries if e.get("against_roster")]
        assert refused and other[:12] in refused[-1]["reason"]
        assert "signature" in refused[-1]


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


ROUND_TIMEOUT_S = 90  # above Flower's heartbeat expiry (2 x 30 s), which ends the wait first


def test_a_site_killed_mid_run_is_named_missing_and_the_others_finish(federation):
    root = federation["root"]
    sites = {"berlin": "DE", "paris": "FR", DOOMED[0]: DOOMED[1]}
    run_settings = f"rounds = 2\nround_timeout = {ROUND_TIMEOUT_S}\nmin_sites = 2"
    spec = write_federation(root / "doomed.toml", sites, federation["folders"], "fedavg",
                            run_settings)  # fmt: skip
    run = root / "run-doomed"
    command = subprocess.Popen(
        run_command(federation, spec, run), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=run_env(federation),
    )  # fmt: skip
    try:
        rows = wait_for_rows(run / "metrics.csv", lambda row: row["split"] == "test", 3)
        assert {row["round"] for row in rows} == {"1"}
        kill(federation["nodes"][DOOMED[0]])
        killed_at = time.monotonic()
        said, _ = command.communicate(timeout=ROUND_TIMEOUT_S + 240)
    finally:
        command.kill()
    said = " ".join(said.split())
    assert command.returncode == 0, said
    assert time.monotonic() - killed_at < ROUND_TIMEOUT_S + 120  # the deadline, plus a round
    assert "failed or missing: hamburg: its SuperNode stopped reporting" in said
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["rounds_completed"] == 2
    assert any(line.startswith("round 2 train: hamburg:") for line in status["failures"])
    with open(run / "metrics.csv", newline="") as file:
        metrics = list(csv.DictReader(file))
    for server_round in ("2",):  # the two live sites trained, and only they
        trained = {r["site"]: r["status"] for r in metrics
                   if r["round"] == server_round and r["split"] == "train"}  # fmt: skip
        assert trained == {"berlin": "ok", "paris": "ok", "hamburg": "failed"}
    failed = {(r["round"], r["split"], r["site"]) for r in metrics if r["status"] == "failed"}
    assert failed == {("2", split, "hamburg") for split in ("train", "test")}
    collect_ledgers(federation, run, list(sites))
    assert verify_run(run).problems == []
    report = build_report(run)
    assert {(f["round"], f["site"]) for f in report.failed} >= {(2, "hamburg")}


def wait_for_rows(metrics: Path, wanted, count: int, timeout: float = 240) -> list[dict]:
    """The first ``count`` rows of ``metrics.csv`` that are ``wanted``, once written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists():
            with open(metrics, newline="") as file:
                rows = [row for row in csv.DictReader(file) if wanted(row)]
            if len(rows) >= count:
                return rows[:count]
        time.sleep(0.2)
    raise AssertionError(f"{metrics} never held {count} such rows")
