"""Starting the real processes: a hospital's SuperNode, the coordinator's SuperLink.

Both are Flower's own (``flower-supernode``, ``flower-superlink``); this
module only checks everything it can first, so a mistake is one line
before anything starts, and passes the flags a federation of hospitals
needs: TLS, SuperNode authentication, no dependency installation at run
time, the site's node config and app approval.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from logging import WARNING
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from flwr.common.logger import log

from flowerbed.catalogue import SEGMENTATION
from flowerbed.config import Federation
from flowerbed.datasets.source import site_data
from flowerbed.deployment.approval import require_approval, trusted_entities_file
from flowerbed.deployment.certificates import CertificateFiles
from flowerbed.deployment.flwr_cli import FlwrCli, with_installed_tools
from flowerbed.deployment.network import (
    check_certificate,
    check_port_free,
    check_reachable,
    parse_address,
)
from flowerbed.errors import ConfigError, FlowerbedError
from flowerbed.hospital_client.site_folder import SiteFolder

SUPERLINK_START_TIMEOUT_S = 60.0
SUPERLINK_DATABASE = "superlink.db"
LOCAL_HOST = "127.0.0.1"


def describe_site_data(folder: SiteFolder) -> str:
    """Load the site's data once (missing or malformed: a one-line DataError) and describe it."""
    federation = folder.federation
    data = site_data(federation, federation.sites[0])
    labels = "mask labels" if data.task == SEGMENTATION else "classes"
    return (
        f"{data.task}: {len(data.train)} training and {len(data.test)} test images of shape "
        f"{list(data.sample_shape)}, {data.num_classes} {labels}"
    )


def use_installed_tools() -> None:
    """Flower starts its helper processes by name: find them beside this Python."""
    os.environ.update(with_installed_tools(dict(os.environ)))
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")


def supernode_arguments(
    folder: SiteFolder, superlink: str, root_certificates: Path | None, port: int
) -> list[str]:
    """``flower-supernode``'s command line for this site (``root_certificates`` None: no TLS)."""
    tls = (
        ["--insecure"]
        if root_certificates is None
        else ["--root-certificates", str(root_certificates)]
    )
    return [
        "flower-supernode",
        "--superlink", superlink,
        *tls,
        "--auth-supernode-private-key", str(folder.supernode_key),
        "--trusted-entities", str(trusted_entities_file(folder)),
        "--node-config", f'site="{folder.site_file.resolve()}"',
        "--port", str(port),
    ]  # fmt: skip


def launch_site(site_file: Path, superlink: str, root_certificates: Path | None, port: int) -> None:
    """Check the site, then run its SuperNode in this process until it stops."""
    folder = SiteFolder.load(site_file)
    summary = describe_site_data(folder)
    host, link_port = parse_address(superlink, "--superlink")
    if root_certificates is not None:
        check_certificate(root_certificates, "--root-certificates")
    check_port_free(LOCAL_HOST, port, "--port")
    check_reachable(host, link_port, root_certificates)
    if not folder.config.policy.approved_apps:
        log(WARNING, "site.toml approves no app yet: every run will be refused")
    if root_certificates is None:
        log(WARNING, "--insecure: no TLS, model updates travel unencrypted")
    print(f"site {folder.config.site.name}: {summary}; joining {superlink}", flush=True)
    use_installed_tools()
    require_approval(folder)
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv = supernode_arguments(folder, superlink, root_certificates, port)
    try:
        flower_supernode()
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise FlowerbedError(
                f"the SuperNode stopped (exit {stop.code}); if Flower says 'Failed to "
                f"activate SuperNode', the coordinator has not registered "
                f"{folder.supernode_public_key}: send it to them"
            ) from None
    finally:
        stop_child_processes()


def stop_child_processes() -> None:
    """SIGTERM every process this one started.

    The SuperNode starts Flower's SuperExec, which keeps retrying its
    connection after a SuperNode that failed to join is gone (and holds the
    terminal's output open). Linux's ``/proc`` names the children; elsewhere
    this does nothing.
    """
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == me:
                os.kill(int(stat.parent.name), signal.SIGTERM)
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile


def site_keys_to_register(federation: Federation) -> dict[str, Path]:
    """Each site's SuperNode public key file (its ``supernode_key``), checked readable."""
    keys = {}
    for site in federation.sites:
        if site.supernode_key is None:
            raise ConfigError(
                f"site {site.name} has no supernode_key; add the path of the keys/supernode.pub "
                "it sent you to its [[sites]] entry"
            )
        try:
            key = load_ssh_public_key(Path(site.supernode_key).read_bytes())
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"site {site.name}: supernode_key {site.supernode_key} is not readable as an "
                f"OpenSSH public key ({err}); ask the site for its keys/supernode.pub"
            ) from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError(
                f"site {site.name}: supernode_key is not an ECDSA key; Flower needs the "
                "keys/supernode.pub that `flowerbed site init` wrote"
            )
        keys[site.name] = Path(site.supernode_key)
    return keys


def launch_coordinator(
    federation: Federation,
    certificates: CertificateFiles,
    address: str,
    state: Path,
) -> None:
    """Start the SuperLink, register the federation's sites, then wait until stopped."""
    host, port = parse_address(address, "--address")
    for path in (certificates.ca, certificates.server_cert):
        check_certificate(path, "--certificates")
    if not certificates.server_key.is_file():
        raise ConfigError(f"--certificates: {certificates.server_key} is missing")
    keys = site_keys_to_register(federation)
    check_port_free(host, port, "--address")
    state.mkdir(parents=True, exist_ok=True)
    use_installed_tools()
    superlink = subprocess.Popen(
        [
            "flower-superlink",
            "--ssl-ca-certfile", str(certificates.ca),
            "--ssl-certfile", str(certificates.server_cert),
            "--ssl-keyfile", str(certificates.server_key),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--host", host,
            "--port", str(port),
            "--database", str(state / SUPERLINK_DATABASE),
        ]
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: superlink.terminate())
    try:
        _wait_until_up(superlink, host, port, certificates.ca)
        flwr = FlwrCli(state / "flwr-home", address, certificates.ca)
        for name, key in keys.items():
            print(f"site {name}: {flwr.register(key, name)}", flush=True)
        country = federation.coordinator_country
        print(f"SuperLink up at {address} (coordinator in {country}); Ctrl-C stops it", flush=True)
        superlink.wait()
    finally:
        if superlink.poll() is None:
            superlink.terminate()
            superlink.wait(timeout=30)


def _wait_until_up(process: subprocess.Popen, host: str, port: int, ca: Path) -> None:
    deadline = time.monotonic() + SUPERLINK_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise FlowerbedError(
                f"flower-superlink exited ({process.returncode}); see its log above"
            )
        try:
            check_reachable(host, port, ca)
            return
        except ConfigError:
            if time.monotonic() > deadline:
                raise FlowerbedError(
                    f"flower-superlink did not answer on {host}:{port} within "
                    f"{SUPERLINK_START_TIMEOUT_S:.0f} s"
                ) from None
            time.sleep(0.5)
