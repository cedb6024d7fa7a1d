"""Real processes on loopback, for tests and benchmarks of a deployed federation.

Each command starts in its own process group and ``stop_all`` ends every
group (SuperNodes start helpers of their own), even when the caller fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    """Started commands, each in its own process group, logging to ``logs/NAME.log``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *command: str, home: Path) -> tuple[subprocess.Popen, Path]:
        """Start ``command`` with its own ``FLWR_HOME``; the process and its log file."""
        log = self.logs / f"{name}.log"
        env = {**os.environ, "FLWR_HOME": str(home)}
        with open(log, "w") as out:
            process = subprocess.Popen(
                list(command), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, env=env,
            )  # fmt: skip
        self.started.append(process)
        return process, log

    def stop_all(self) -> None:
        for process in self.started:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(process, signal.SIGKILL)
        self.started.clear()


def kill(process: subprocess.Popen) -> None:
    """SIGKILL ``process`` and everything it started: a machine that dies, not one that stops."""
    _signal_group(process, signal.SIGKILL)
    process.wait()


def kill_processes_running(program: str) -> int:
    """SIGKILL every process of the program ``program`` (Flower starts a run's ServerApp as
    a process of its own), as ``pkill -x`` finds them; how many there were."""
    killed = 0
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == program:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
    return killed


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def wait_for(log: Path, text: str, process: subprocess.Popen) -> None:
    """Wait until ``text`` appears in ``log``; fail if the process exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while text not in log.read_text():
        assert process.poll() is None, f"{log.name} exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{log.name} never said {text!r}"
        time.sleep(0.5)
