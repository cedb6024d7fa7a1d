"""Deployment wall time per round: flowerbed FedAvg against a plain Flower FedAvg app.

Usage: python bench/deployment.py [--rounds 1 4] [--out bench/results/deployment.md]

Both federations are real processes on loopback: one SuperLink with TLS and
three SuperNodes, FedAvg without DP, the small CNN on the synthetic default
(every site holds the same 1600 training images). flowerbed runs as
hospitals would run it (`flowerbed coordinator launch`, `flowerbed site
launch`, `flowerbed run`: SuperNode authentication, app approval, roll call,
egress guard, fsynced ledgers); the plain app is `plain_flower_app` on bare
`flower-superlink` / `flower-supernode`. Each runs the smaller and the larger
number of rounds; the time per round is the difference over the rounds
between, so submission, roll call and start-up cancel out and are reported
on their own. The last rows say where a round's time goes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import per_round_and_start_up, write_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from loopback import Processes, free_port, wait_for

from flowerbed.config import PrivacySettings, SiteSettings
from flowerbed.deployment.app_bundle import app_hash
from flowerbed.deployment.certificates import CertificateFiles, make_certificates
from flowerbed.deployment.flwr_cli import FlwrCli, with_installed_tools
from flowerbed.deployment.network import check_reachable
from flowerbed.errors import ConfigError
from flowerbed.hospital_client.site_folder import (
    SiteConfig,
    SitePolicy,
    create_site_folder,
)

BIN = Path(sys.executable).parent
SITES = {"berlin": "DE", "paris": "FR", "lyon": "FR"}
SUPERNODE_POLL_S = 3.0  # flwr.supernode.start_client_internal sleeps this long when idle


def wait_reachable(address: str, ca: Path) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + 60
    while True:
        try:
            check_reachable(host, int(port), ca)
            return
        except ConfigError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def plain_app(folder: Path, rounds: int) -> Path:
    """The plain Flower app as a Flower app folder, for ``flwr run``."""
    folder.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("plain_flower_app.py"), folder / "plain_flower_app.py")
    (folder / "plain_deployed.py").write_text(
        f"from plain_flower_app import make_apps\n\napps = make_apps({rounds})\n"
        "server = apps[0]\nclient = apps[1]\n"
    )
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "plainflower"\nversion = "1.0.0"\ndescription = "baseline"\n'
        'license = "Apache-2.0"\ndependencies = []\n\n[tool.flwr.app]\npublisher = "bench"\n\n'
        '[tool.flwr.app.components]\nserverapp = "plain_deployed:server"\n'
        'clientapp = "plain_deployed:client"\n'
    )
    return folder


def plain_federation(root: Path, certs: CertificateFiles, processes: Processes) -> str:
    address = f"127.0.0.1:{free_port()}"
    host, port = address.split(":")
    processes.start(
        "plain-superlink", str(BIN / "flower-superlink"),
        "--ssl-ca-certfile", str(certs.ca), "--ssl-certfile", str(certs.server_cert),
        "--ssl-keyfile", str(certs.server_key), "--disable-runtime-dependency-installation",
        "--host", host, "--port", port, "--database", str(root / "plain.db"),
        home=root / "flwr-plain",
    )  # fmt: skip
    wait_reachable(address, certs.ca)
    for name in SITES:
        processes.start(
            f"plain-{name}", str(BIN / "flower-supernode"), "--superlink", address,
            "--root-certificates", str(certs.ca), "--port", str(free_port()),
            "--node-config", "partition-id=0 num-partitions=1",
            home=root / f"flwr-plain-{name}",
        )  # fmt: skip
    return address


def run_plain(root: Path, address: str, ca: Path, rounds: int) -> float:
    flwr = FlwrCli(root / f"flwr-submit-{rounds}", address, ca)
    start = time.perf_counter()
    run_id = flwr.submit(plain_app(root / f"plain-app-{rounds}", rounds), {})
    while not (status := flwr.status(run_id))[0].startswith("finished:"):
        time.sleep(0.5)
    elapsed = time.perf_counter() - start
    assert status[0] == "finished:completed", status
    return elapsed


def flowerbed_federation(root: Path, certs: CertificateFiles, processes: Processes) -> str:
    lines = []
    for name, country in SITES.items():
        config = SiteConfig(
            site=SiteSettings(name=name, country=country, data="synthetic"),
            privacy=PrivacySettings(enabled=False),
            policy=SitePolicy(approved_apps=[app_hash()]),
        )
        folder = create_site_folder(root / "sites" / name, config)
        lines.append(
            f'[[sites]]\nname = "{name}"\ncountry = "{country}"\n'
            f'supernode_key = "{folder.supernode_public_key}"\n'
        )
    (root / "sites.toml").write_text("\n".join(lines))
    address = f"127.0.0.1:{free_port()}"
    coordinator, log = processes.start(
        "coordinator", str(BIN / "flowerbed"), "coordinator", "launch", str(root / "sites.toml"),
        "--certificates", str(certs.folder), "--address", address, "--state", str(root / "state"),
        home=root / "flwr-coordinator",
    )  # fmt: skip
    wait_for(log, "SuperLink up", coordinator)
    for name in SITES:
        processes.start(
            name, str(BIN / "flowerbed"), "site", "launch",
            str(root / "sites" / name / "site.toml"), "--superlink", address,
            "--root-certificates", str(certs.ca), "--port", str(free_port()),
            home=root / f"flwr-{name}",
        )  # fmt: skip
    return address


def run_flowerbed(root: Path, address: str, ca: Path, rounds: int) -> float:
    federation = root / f"federation-{rounds}.toml"
    federation.write_text(
        f"[run]\nrounds = {rounds}\n[privacy]\nenabled = false\n\n"
        + (root / "sites.toml").read_text()
    )
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "flowerbed"), "run", str(federation), "--superlink", address,
         "--root-certificates", str(ca), "--out", str(root / f"run-{rounds}")],
        check=True, capture_output=True,
        env={**os.environ, "FLWR_HOME": str(root / "flwr-run")},
    )  # fmt: skip
    return time.perf_counter() - start


def import_seconds(module: str) -> float:
    """What a fresh ClientApp process pays before it can handle a message."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        check=True,
        cwd=Path(__file__).parent,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, nargs=2, default=[1, 4])
    parser.add_argument("--out", type=Path, default=Path("bench/results/deployment.md"))
    args = parser.parse_args()
    few, many = sorted(args.rounds)
    os.environ.update(with_installed_tools(dict(os.environ)))  # Flower starts its tools by name
    timings: dict[str, dict[int, float]] = {"plain Flower": {}, "flowerbed": {}}
    with tempfile.TemporaryDirectory(prefix="flowerbed-deploy-") as scratch:
        root = Path(scratch)
        certs = make_certificates(root / "certs", ["127.0.0.1", "localhost"])
        for app, federation, run in (
            ("plain Flower", plain_federation, run_plain),
            ("flowerbed", flowerbed_federation, run_flowerbed),
        ):
            processes = Processes(root)
            try:
                address = federation(root, certs, processes)
                for rounds in (few, many):
                    timings[app][rounds] = run(root, address, certs.ca, rounds)
                    print(f"{app}, {rounds} rounds: {timings[app][rounds]:.1f} s", flush=True)
            finally:
                processes.stop_all()
    split = {app: per_round_and_start_up(t) for app, t in timings.items()}
    per_round = {app: rate for app, (rate, _) in split.items()}
    startup = {app: once for app, (_, once) in split.items()}
    plain_import = import_seconds("plain_flower_app")
    ours_import = import_seconds("flowerbed.hospital_client.app")
    ratio = per_round["flowerbed"] / per_round["plain Flower"]
    note = (
        f"Where a round goes (2 messages a round, train and evaluate): each SuperNode "
        f"polls the SuperLink every {SUPERNODE_POLL_S:.0f} s when idle, and each message "
        f"starts a fresh ClientApp process whose imports alone take {plain_import:.1f} s "
        f"(plain) and {ours_import:.1f} s (flowerbed) on an idle machine; three sites on "
        "two cores contend for both. flowerbed's extra start-up is the roll call (one more "
        "round trip) and building the app bundle."
    )
    write_table(
        args.out,
        f"Deployment, 3 SuperNodes on loopback with TLS, FedAvg no DP, small CNN, synthetic "
        f"(`python bench/deployment.py --rounds {few} {many} --out {args.out}`)",
        ["app", f"wall s, {few} round(s)", f"wall s, {many} rounds", "s per round",
         "start-up s"],
        [
            *(
                f"| {app} | {t[few]:.1f} | {t[many]:.1f} | {per_round[app]:.2f} | "
                f"{startup[app]:.1f} |"
                for app, t in timings.items()
            ),
            f"| ratio | | | {ratio:.2f}x | |",
        ],
        after=[note],
    )  # fmt: skip


if __name__ == "__main__":
    main()
