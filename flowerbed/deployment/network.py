"""Checks before a process joins a federation: addresses, ports, certificates, reachability.

Flower reports these problems late (a retry loop, a traceback, a gRPC or
HTTP status code); each check here turns one into a single line saying
what is wrong and what to do, before anything starts.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from cryptography import x509

from flowerbed.errors import ConfigError

CONNECT_TIMEOUT_S = 5.0


def parse_address(address: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ``ConfigError`` naming ``flag`` otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag} {address!r} is not HOST:PORT; e.g. coordinator.example.org:9443")
    return host.strip("[]"), int(port)


def check_port_free(host: str, port: int, flag: str) -> None:
    """Refuse a port another process already listens on."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(
                f"{host}:{port} is in use ({err.strerror}); stop what listens there or pass "
                f"another {flag}"
            ) from None


def check_certificate(path: Path, flag: str) -> None:
    """Refuse a file that is not a PEM certificate."""
    try:
        x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(
            f"{flag} {path}: no such file; pass the CA certificate (ca.pem)"
        ) from None
    except ValueError:
        raise ConfigError(f"{flag} {path}: not a PEM certificate; pass the CA's ca.pem") from None


def check_reachable(host: str, port: int, ca: Path | None) -> None:
    """Connect to the SuperLink and, unless ``ca`` is None, check its certificate against ``ca``."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as raw:
            if ca is None:
                return
            context = ssl.create_default_context(cafile=str(ca))
            with context.wrap_socket(raw, server_hostname=host):
                return
    except ssl.SSLCertVerificationError as err:
        raise ConfigError(
            f"the SuperLink at {host}:{port} presents a certificate {ca} does not vouch for "
            f"({err.verify_message}); get the federation's ca.pem from the coordinator"
        ) from None
    except ssl.SSLError as err:
        raise ConfigError(
            f"the SuperLink at {host}:{port} does not speak TLS ({err.reason}); ask the "
            "coordinator, or pass --insecure if it really runs without TLS"
        ) from None
    except OSError as err:
        raise ConfigError(
            f"cannot reach the SuperLink at {host}:{port} ({err.strerror or err}); is "
            "`flowerbed coordinator launch` running there, and the address right?"
        ) from None
