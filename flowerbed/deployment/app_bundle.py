"""The Flower app bundle (FAB) a deployed run submits, and its hash: what a site approves.

The bundle holds the ``flowerbed`` package's own source files and a
generated ``pyproject.toml`` naming the ServerApp and ClientApp. Flower puts
an installed bundle first on ``sys.path``, so the code a site runs is the
code in the bundle, and the bundle's sha256 (Flower's ``fab_hash``) pins
that code exactly. It is built from the installed package, not from the
working directory, and Flower's build is deterministic: the same flowerbed
gives the same hash on every machine, so a hospital can compute the hash of
the version it reviewed (``flowerbed app hash``) and approve it in advance.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import tomli_w
from flwr.cli.build import build_fab_from_files

import flowerbed

PUBLISHER = "flowerbed"
APP_NAME = "flowerbed"
# Set by `flowerbed run` on the coordinator's machine; strings, empty unless given.
RUN_CONFIG_KEYS = ("federation", "out", "resume", "app")


def app_files() -> dict[str, bytes]:
    """Relative path -> content of every file the bundle holds, in a stable order."""
    package = Path(flowerbed.__file__).parent
    sources = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    files = {f"flowerbed/{p.relative_to(package).as_posix()}": p.read_bytes() for p in sources}
    return {"pyproject.toml": _pyproject(), **files}


def _pyproject() -> bytes:
    return tomli_w.dumps(
        {
            "project": {
                "name": APP_NAME,
                "version": flowerbed.__version__,
                "description": "flowerbed federated training, as submitted to a federation",
                "license": "Apache-2.0",
                # Every party installs flowerbed itself; a run never installs anything.
                "dependencies": [],
            },
            "tool": {
                "flwr": {
                    "app": {
                        "publisher": PUBLISHER,
                        "components": {
                            "serverapp": "flowerbed.server_app:app",
                            "clientapp": "flowerbed.hospital_client.app:app",
                        },
                        "config": {key: "" for key in RUN_CONFIG_KEYS},
                    }
                }
            },
        }
    ).encode()


def build_app() -> bytes:
    """The bundle's bytes, exactly as Flower builds them."""
    with warnings.catch_warnings():  # pathspec's deprecation notice, raised inside Flower
        warnings.simplefilter("ignore", DeprecationWarning)
        return build_fab_from_files(app_files())[0]


def app_hash() -> str:
    """sha256 (hex) of the bundle: the hash a site operator approves."""
    return hashlib.sha256(build_app()).hexdigest()


def write_app(folder: Path) -> Path:
    """The bundle's files unpacked in ``folder``, for ``flwr run`` to build and submit."""
    for relative, content in app_files().items():
        path = Path(folder) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return Path(folder)
