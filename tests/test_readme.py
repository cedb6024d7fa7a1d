"""Every ``sh`` block of the README and of ``docs/``, run as written: a command shown there
that breaks fails CI.

Each block runs with ``bash -e`` from a copy of the repository's top level
(symlinks into this checkout, so ``.venv``, ``examples`` and the Makefile are
the real ones) beside a link to ``../shared``, as a user runs it from a clone.
One line is left out, ``make test``: it is this suite, which cannot run
itself. A block that reads ``../shared/data`` skips when that is absent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import rows_by_round

from flowerbed.audit.ledger import read_ledger
from flowerbed.audit.schema import RESUMED, dp_history
from flowerbed.privacy import rdp

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
NOT_RUN = "make test"  # the suite itself
LEFT_BEHIND = {"runs", "trial"}  # what earlier README commands left in the checkout
TIMEOUT_S = 900

pytestmark = pytest.mark.slow


def sh_blocks(readme: str) -> dict[str, str]:
    """The README's ``sh`` blocks by the heading they sit under (numbered if several)."""
    blocks: dict[str, str] = {}
    heading, block = "top", None
    for line in readme.splitlines():
        if block is None and line.startswith("## "):
            heading = line[3:].strip()
        elif block is None and line.strip() == "```sh":
            block = []
        elif block is not None and line.strip() == "```":
            name = heading if heading not in blocks else f"{heading} ({len(blocks) + 1})"
            blocks[name], block = "\n".join(block) + "\n", None
        elif block is not None:
            block.append(line)
    return blocks


def documented_blocks() -> dict[str, str]:
    """The README's blocks by heading, then each ``docs/`` page's as ``PAGE: heading``."""
    blocks = sh_blocks((ROOT / "README.md").read_text())
    for page in sorted((ROOT / "docs").glob("*.md")):
        found = sh_blocks(page.read_text())
        blocks.update({f"docs/{page.name}: {heading}": code for heading, code in found.items()})
    return blocks


BLOCKS = documented_blocks()


def test_the_readme_has_the_blocks_a_new_user_runs():
    assert {"Two commands", "Real data", "Serverless: gossip", "Run a real federation"} <= set(
        BLOCKS
    )
    assert any(name.startswith("docs/") for name in BLOCKS)


@pytest.fixture
def clone(tmp_path) -> Path:
    """The checkout's top level, linked entry by entry, and ``../shared`` beside it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in LEFT_BEHIND and entry.name != ".git":
            (repo / entry.name).symlink_to(entry)
    if SHARED.exists():
        (tmp_path / "shared").symlink_to(SHARED)
    return repo


@pytest.mark.parametrize("heading", sorted(BLOCKS))
def test_a_readme_block_runs_as_written(clone, tmp_path, heading):
    lines = BLOCKS[heading].splitlines()
    code = "\n".join(line for line in lines if line.split("#")[0].strip() != NOT_RUN)
    if "../shared/data" in code and not (SHARED / "data").exists():
        pytest.skip(f"{SHARED / 'data'} is absent")
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr-home")}
    shell = subprocess.Popen(
        ["bash", "-e", "-c", code], cwd=clone, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        said, _ = shell.communicate(timeout=TIMEOUT_S)
    finally:  # whatever the block left in the background (a SuperLink, SuperNodes) stops here
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 0, said[-4000:]
    assert "Traceback" not in said, said[-4000:]
    if heading in CHECKS_AFTER:
        CHECKS_AFTER[heading](clone, " ".join(said.split()))


def a_killed_coordinator_resumed_and_spent_each_budget_once(clone: Path, said: str) -> None:
    """What the federation block leaves: the run killed after round 1 and resumed, under
    DP-SGD with each site's lifetime budget (epsilon 8), every round played once."""
    trial = clone / "trial"
    sites = ("charite", "hcl-lyon", "ap-hp")
    expected = {(r, s, split) for r in (1, 2) for s in sites for split in ("train", "test")}
    counted = rows_by_round(trial / "run")
    assert set(counted) == expected and set(counted.values()) == {1}, counted
    coordinator = read_ledger(trial / "run" / "ledgers" / "coordinator.jsonl").entries
    assert [e["round"] for e in coordinator if e.get("kind") == RESUMED] == [1]
    # One run to each site, spent once: `site budget` of the block, and every site's ledger.
    assert "over 1 runs" in said, said[-2000:]
    lifetime = float(said.split("lifetime: epsilon ")[1].split()[0])
    assert 7.9 <= lifetime <= 8.0, said[-2000:]
    for site in sites:
        steps = [row for e in read_ledger(trial / site / "ledger.jsonl").entries
                 for row in dp_history(e)]  # fmt: skip
        assert rdp.epsilon(steps, 1e-5) <= 8.0


# Blocks whose results a test reads too: what a separate deployed run would only repeat.
CHECKS_AFTER = {"Run a real federation": a_killed_coordinator_resumed_and_spent_each_budget_once}
