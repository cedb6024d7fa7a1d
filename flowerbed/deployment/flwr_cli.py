"""Flower's own ``flwr`` command, pointed at one SuperLink, with JSON answers.

Registering SuperNodes, submitting a run and asking for its status all go
through ``flwr`` so the traffic is Flower's; its connection settings live in
a private ``FLWR_HOME`` (``config.toml``), never in the user's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

from flowerbed.errors import FlowerbedError

CONNECTION = "flowerbed"
TIMEOUT_S = 120.0


def with_installed_tools(environment: dict[str, str]) -> dict[str, str]:
    """``environment`` with this Python's scripts first on PATH: Flower starts its tools by name."""
    tools = str(Path(sys.executable).parent)
    return {**environment, "PATH": os.pathsep.join([tools, environment.get("PATH", "")])}


class FlwrCli:
    """``flwr`` for the SuperLink at ``address``; ``ca`` None means no TLS."""

    def __init__(self, home: Path, address: str, ca: Path | None) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        connection: dict[str, Any] = {"address": address}
        if ca is None:
            connection["insecure"] = True
        else:
            connection["root-certificates"] = str(Path(ca).resolve())
        config = {"superlink": {"default": CONNECTION, CONNECTION: connection}}
        (self.home / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")

    def register(self, public_key: Path, name: str) -> str:
        """Register a site's SuperNode key; a phrase saying what happened."""
        answer = self._json("supernode", "register", str(public_key), CONNECTION, "--name", name)
        if answer.get("success"):
            return f"registered (node id {answer.get('node-id')})"
        message = str(answer.get("error-message", answer))
        if "already in use" in message:
            return "already registered"
        raise FlowerbedError(f"registering site {name} failed: {message}")

    def submit(self, app: Path, run_config: dict[str, Any]) -> int:
        """Submit the app in folder ``app``; the run id."""
        overrides = " ".join(f"{key}={json.dumps(value)}" for key, value in run_config.items())
        answer = self._json("run", str(app), CONNECTION, "--run-config", overrides)
        if not answer.get("success"):
            raise FlowerbedError(f"the SuperLink refused the run: {answer.get('error-message')}")
        return int(answer["run-id"])

    def status(self, run_id: int) -> tuple[str, str]:
        """(status, details) of a run, e.g. ("finished:failed", "ServerApp failed ...")."""
        answer = self._json("list", CONNECTION, "--run-id", str(run_id))
        row = answer["runs"][0]
        return str(row["status"]), str(row.get("status-details", ""))

    def _json(self, *arguments: str) -> dict[str, Any]:
        result = subprocess.run(
            ["flwr", *arguments, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env={**with_installed_tools(dict(os.environ)), "FLWR_HOME": str(self.home)},
            check=False,
        )
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            said = (result.stderr or result.stdout).strip().splitlines()
            raise FlowerbedError(
                f"flwr {arguments[0]} failed: {said[-1] if said else result.returncode}"
            ) from None
