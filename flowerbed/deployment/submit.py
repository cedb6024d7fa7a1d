"""``flowerbed run``: submit the training run to a deployed federation and follow it to the end.

Run on the coordinator's machine: the ServerApp that the SuperLink starts
reads the federation file and writes the run folder there. Submission is
Flower's (``flwr run`` of the app bundle, see ``app_bundle``); following is
by the run folder's ``metrics.csv`` for per-round progress and Flower's run
status for the outcome, so a run that fails after it was accepted still
ends in a non-zero exit.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from flowerbed.audit.roster import federation_roster
from flowerbed.config import load_federation
from flowerbed.deployment.app_bundle import app_hash, write_app
from flowerbed.deployment.flwr_cli import FlwrCli
from flowerbed.deployment.network import check_certificate, check_reachable, parse_address
from flowerbed.errors import FlowerbedError
from flowerbed.protocol.records import APP, RESUME
from flowerbed.run_folder import METRICS_FILE, STATUS_FILE, check_new_run_folder, resumable

POLL_S = 2.0
FINISHED = "finished:"
COMPLETED = "finished:completed"

# (round, the test score's name: "AUC", or "Dice" for segmentation, its mean, failed sites)
RoundLine = Callable[[int, str, float, dict[str, str]], None]


def submit_run(
    federation_file: Path,
    superlink: str,
    root_certificates: Path | None,
    out: Path,
    on_submitted: Callable[[int, str], None],
    on_round: RoundLine,
    resume: bool = False,
) -> None:
    """Submit, follow, and raise ``FlowerbedError`` unless the run completed every round.

    With ``resume`` the run in ``out`` goes on from its last completed round, as it was
    configured (its ``config.toml``; ``RunFolder.resume``)."""
    federation_file = Path(federation_file).resolve()
    federation = load_federation(federation_file)  # a bad file fails here, not in the ServerApp
    if federation_roster(federation) is None:
        raise FlowerbedError(
            f"{federation_file}: names no roster, and sites join only runs of the roster they "
            'pinned; name it in the coordinator table, roster = "roster.toml" (`flowerbed '
            "coordinator roster` builds it)"
        )
    out = Path(out).resolve()
    done = 0
    if resume:
        done = int(resumable(out)[1]["round"])
    else:
        check_new_run_folder(out)
    host, port = parse_address(superlink, "--superlink")
    if root_certificates is not None:
        check_certificate(root_certificates, "--root-certificates")
    check_reachable(host, port, root_certificates)
    with tempfile.TemporaryDirectory(prefix="flowerbed-run-") as scratch:
        flwr = FlwrCli(Path(scratch) / "flwr-home", superlink, root_certificates)
        app = write_app(Path(scratch) / "app")
        digest = app_hash()  # the coordinator signs it; each site ledgers what it approved
        run_config = {"federation": str(federation_file), "out": str(out), APP: digest}
        run_config[RESUME] = "yes" if resume else ""
        run_id = flwr.submit(app, run_config)
        on_submitted(run_id, digest)
        status, details = _follow(flwr, run_id, out, on_round, done)
    if status != COMPLETED:
        raise FlowerbedError(f"run {run_id} {status.removeprefix(FINISHED)}: {details}")
    outcome = json.loads((out / STATUS_FILE).read_text()) if (out / STATUS_FILE).exists() else {}
    if outcome.get("status") != "completed":
        raise FlowerbedError(
            f"run {run_id} stopped early: {outcome.get('reason', 'no status.json written')}"
        )


def _follow(
    flwr: FlwrCli, run_id: int, out: Path, on_round: RoundLine, reported: int
) -> tuple[str, str]:
    """Report each round after ``reported`` as its test scores arrive; Flower's final status
    and its details."""
    while True:
        status, details = flwr.status(run_id)
        finished = status.startswith(FINISHED)
        rounds, failed = _rounds_so_far(out / METRICS_FILE)
        done = sorted(r for r in rounds if r > reported and (finished or r < max(rounds)))
        for server_round in done:
            name, mean = rounds[server_round]
            on_round(server_round, name, mean, failed.get(server_round, {}))
            reported = server_round
        if finished:
            return status, details
        time.sleep(POLL_S)


def _rounds_so_far(
    metrics: Path,
) -> tuple[dict[int, tuple[str, float]], dict[int, dict[str, str]]]:
    """From the run folder written so far: per round the test score's name and its mean
    (Dice where the sites segment, else AUC), and the sites that failed or went missing,
    with why."""
    if not metrics.exists():
        return {}, {}
    scores: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    failed: dict[int, dict[str, str]] = defaultdict(dict)
    with open(metrics, newline="") as rows:
        for row in csv.DictReader(rows):
            if row["status"] == "failed":
                failed[int(row["round"])][row["site"]] = row["error"]
            elif row["split"] == "test":
                for name, column in (("Dice", "dice"), ("AUC", "auc")):
                    if row[column] not in ("", "nan"):
                        scores[int(row["round"])][name].append(float(row[column]))
                        break
    means = {}
    for server_round, by_name in scores.items():
        name = "Dice" if "Dice" in by_name else "AUC"
        means[server_round] = (name, sum(by_name[name]) / len(by_name[name]))
    return means, failed
