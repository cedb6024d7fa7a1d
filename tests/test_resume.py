"""A run whose coordinator dies goes on from its last completed round, spending nothing twice.

The coordinator is killed with SIGKILL (no clean-up of any kind) right after
it checkpointed round 2 of 4; ``simulate --resume`` plays rounds 3 and 4 in
the same run folder and ledger chains, and the audit verifies the whole run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import checkpointed_round, flowerbed, rows_by_round

from flowerbed.audit.ledger import read_ledger
from flowerbed.audit.schema import RESUMED, dp_history
from flowerbed.config import load_federation, save_federation
from flowerbed.privacy import rdp
from flowerbed.run_layout import CONFIG_FILE, METRICS_FILE, STATUS_FILE

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from flowerbed.cli import main; main()"]
SITES, ROUNDS, EPSILON = ("hospital-01", "hospital-02"), 4, 8.0


def kill_after_round(run: Path, stop_after: int) -> None:
    """Start a 4-round simulation and SIGKILL its whole process group once round
    ``stop_after`` is checkpointed."""
    command = [*CLI, "simulate", "--sites", "2", "--rounds", str(ROUNDS), "--out", str(run)]
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if checkpointed_round(run) >= stop_after:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpointed_round(run) == stop_after, "the run ended before it could be killed"


def test_a_coordinator_killed_after_round_2_of_4_is_resumed_and_nothing_is_spent_twice(
    tmp_path,
):
    run = tmp_path / "run"
    kill_after_round(run, stop_after=2)
    assert not (run / STATUS_FILE).exists()  # SIGKILL: the run had no say
    assert max(r for r, _, _ in rows_by_round(run)) <= 3

    resumed = subprocess.run(
        [*CLI, "simulate", "--resume", str(run)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "round 3: mean test AUC" in resumed.stdout and "round 1:" not in resumed.stdout
    # Every round once in metrics.csv: each site's train and test rows, none twice.
    expected = {(r, s, split) for r in range(1, ROUNDS + 1) for s in SITES
                for split in ("train", "test")}  # fmt: skip
    counted = rows_by_round(run)
    assert set(counted) == expected and set(counted.values()) == {1}
    verified = subprocess.run([*CLI, "audit", "verify", str(run)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout

    coordinator = read_ledger(run / "ledgers" / "coordinator.jsonl").entries
    resumes = [e for e in coordinator if e.get("kind") == RESUMED]
    assert len(resumes) == 1 and resumes[0]["round"] == 2
    assert len({e["run"] for e in coordinator if "run" in e}) == 2  # two Flower runs, one run
    for site in SITES:
        steps = [row for e in read_ledger(run / "ledgers" / f"{site}.jsonl").entries
                 for row in dp_history(e)]  # fmt: skip
        per_round = {count for _, _, count in steps}
        assert len(steps) == ROUNDS and len(per_round) == 1  # four rounds of DP steps, no more
        # The whole run's spend is what one uninterrupted run plans: its budget, exactly.
        assert rdp.epsilon(steps, 1e-5) == pytest.approx(EPSILON, abs=0.01)
    assert (run / "model.pt").is_file()

    # A completed run is not resumed again; the answer is one line.
    again = subprocess.run([*CLI, "simulate", "--resume", str(run)], capture_output=True, text=True)
    assert again.returncode == 1 and "there is nothing to resume" in again.stderr + again.stdout
    assert "Traceback" not in again.stderr


def test_what_cannot_be_resumed_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    code, said = flowerbed(monkeypatch, capsys, "simulate", "--resume", str(tmp_path / "none"))
    assert code == 1 and "holds no run" in said and "Traceback" not in said
    code, said = flowerbed(
        monkeypatch, capsys, "simulate", "--resume", str(tmp_path), "--rounds", "9"
    )
    assert code == 1 and "leave out --rounds" in said

    gossip = tmp_path / "gossip"
    gossip.mkdir()
    federation = load_federation(None, {"run": {"strategy": "gossip"}})
    save_federation(federation, gossip / CONFIG_FILE)
    (gossip / METRICS_FILE).write_text("round\n")
    code, said = flowerbed(monkeypatch, capsys, "simulate", "--resume", str(gossip))
    assert code == 1 and "a gossip run cannot be resumed yet" in said

    fedavg = tmp_path / "fedavg"
    fedavg.mkdir()
    save_federation(load_federation(None), fedavg / CONFIG_FILE)
    (fedavg / METRICS_FILE).write_text("round\n")
    code, said = flowerbed(monkeypatch, capsys, "simulate", "--resume", str(fedavg))
    assert code == 1 and "stopped before its first round completed" in said
