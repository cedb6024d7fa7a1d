"""The package's shape: the Layout table of ``docs/layout.md`` is the tree, and each part
imports only what the table lets it; no import cycle; the auditor's side needs no training
stack, nor a deployed site's roll call MONAI or Opacus."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
from conftest import deployed_site_folder, pin_roster_of

from flowerbed import catalogue
from flowerbed.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowerbed"
TRAINING_STACK = {"torch", "monai", "opacus", "ray", "flwr.simulation"}


def modules() -> dict[str, Path]:
    """Every flowerbed module by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> nx.DiGraph:
    """Module -> the flowerbed modules it imports, anywhere in its code (functions too)."""
    known = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in known and t != name)
    return graph


def part_of(module: str) -> str:
    """The Layout table's part a module belongs to: ``config``, ``audit/``, ``flowerbed``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "flowerbed"
    return parts[1] + "/" if (PACKAGE / parts[1]).is_dir() else parts[1]


def layout_table() -> dict[str, set[str]]:
    """Part -> the parts it may import, from the Layout table of ``docs/layout.md``."""
    page = (ROOT / "docs" / "layout.md").read_text()
    section = page.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    allowed = {}
    for row in section.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = set(re.findall(r"`([^`]+)`", cells[2]))
        for path in re.findall(r"`flowerbed/([^`]*)`", cells[0]):
            part = path.removesuffix(".py") if path.endswith(".py") else path
            allowed[part.removesuffix("__init__") or "flowerbed"] = names
    return allowed


def test_the_layout_table_names_every_part_of_the_tree_and_nothing_else():
    tree = {part_of(module) for module in modules()}
    assert set(layout_table()) == tree


def test_every_part_imports_only_what_the_layout_table_allows():
    allowed = layout_table()
    crossings = {
        (part_of(a), part_of(b), a, b)
        for a, b in import_graph().edges
        if part_of(a) != part_of(b) and part_of(b) not in allowed[part_of(a)]
    }
    assert not crossings, "\n".join(f"{a} imports {b}" for _, _, a, b in sorted(crossings))


def test_no_import_cycle_among_flowerbeds_modules():
    assert list(nx.simple_cycles(import_graph())) == []


def test_the_deployed_client_app_has_no_simulated_fault_in_its_path():
    reached = nx.descendants(import_graph(), "flowerbed.hospital_client.app")
    assert "flowerbed.faults" not in reached
    assert "flowerbed.simulation" not in reached


KINDS = [value for value in vars(catalogue).values() if isinstance(value, Registry)]


@pytest.mark.parametrize("kind", KINDS, ids=[kind.kind for kind in KINDS])
def test_every_catalogue_entry_imports(kind):
    for name in kind.names():
        assert callable(kind.get(name)), f"{kind.kind} {name}"


def imported_by(code: str) -> set[str]:
    """The training-stack modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    return {m for m in loaded if m.split(".")[0] in TRAINING_STACK or m in TRAINING_STACK}


@pytest.mark.slow  # starts a process
def test_loading_a_federation_and_verifying_a_run_need_no_training_stack():
    assert imported_by("import flowerbed.config, flowerbed.audit.verify") == set()


@pytest.mark.slow  # starts a process
def test_the_audit_verify_command_runs_without_the_training_stack(runs, tmp_path):
    run, _ = runs["fedavg"]
    code = (
        "import sys\nfrom flowerbed.cli import main\n"
        f"sys.argv = ['flowerbed', 'audit', 'verify', {str(run)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit_:\n    assert not exit_.code, exit_.code"
    )
    assert imported_by(code) == set()


@pytest.mark.slow  # starts a process
def test_a_deployed_roll_call_answers_without_monai_opacus_or_the_networks(tmp_path):
    """A deployed ClientApp is a fresh process per message: a roll call (under DP-SGD,
    which prices the run) pays for config, keys, ledger and guard, not the training stack."""
    folder = deployed_site_folder(tmp_path / "munich", "munich", "DE", dp=True)
    roster = pin_roster_of(folder)
    code = f"""
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
for attribute, value in (("_run_id", 1), ("_task_id", 1), ("_node_id", 0)):
    setattr(TaskIdentity, attribute, value)
from flowerbed.hospital_client.app import app
from flowerbed.protocol import records as R
config = {{R.NUM_ROUNDS: 2, R.LOCAL_EPOCHS: 1, R.BATCH_SIZE: 32, R.ROSTER_SHA256: {roster!r}}}
query = Message(RecordDict({{R.CONFIG: ConfigRecord(config)}}), dst_node_id=7,
                message_type=f"query.{{R.IDENTITY_QUERY}}")
reply = app(query, Context(1, 7, {{"site": {str(folder.site_file)!r}}}, RecordDict(), {{}}))
assert not reply.has_error(), reply.error.reason
assert reply.content[R.SITE][R.SITE_NAME] == "munich"
import sys
assert not [m for m in sys.modules if m.startswith("flowerbed.models.factory")]
"""
    loaded = {module.split(".")[0] for module in imported_by(code)}
    assert not loaded & {"monai", "opacus"}, loaded
