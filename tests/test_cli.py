"""What a user sees when they get something wrong: one line, exit 1, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from flowerbed.cli import main; main()", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=os.environ.copy())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--data", "missing.npz"], "missing.npz: no such file"),
        (["--data", "scan.dcm"], "unknown data source"),
        (["--model", "vgg16"], "unknown model 'vgg16'"),
        (["--rounds", "0"], "run.rounds"),
        (["--epsilon", "4", "--no-dp"], "--epsilon and --no-dp contradict"),
        (["--partition", "zipf"], "unknown partition 'zipf'"),
        (["nofile.toml"], "nofile.toml: no such file"),
        (["bad.toml"], "bad.toml: sites.0.country: 'EU' is not an ISO 3166-1"),
        (["--strategy", "gossip", "--topology", "star"], "unknown topology 'star'"),
        (["--strategy", "gossip", "--topology", "torus", "--sites", "7"], "7 sites do not form"),
        (["--strategy", "gossip", "--topology", "links.txt"], "links.txt does not exist"),
        (["split.toml"], "cuts the complete topology into 2 groups"),
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_starts(tmp_path, args, expected):
    (tmp_path / "bad.toml").write_text('[[sites]]\nname = "a"\ncountry = "EU"\n')
    (tmp_path / "split.toml").write_text(
        '[run]\nstrategy = "gossip"\ntopology = "complete"\n[residency]\nDE = ["DE"]\n'
        '[[sites]]\nname = "a"\ncountry = "DE"\n[[sites]]\nname = "b"\ncountry = "FR"\n'
    )
    result = run_cli("simulate", *args, "--out", "run", cwd=tmp_path)
    assert result.returncode == 1
    output = " ".join((result.stdout + result.stderr).split())
    assert expected in output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["verify", "nowhere"], "nowhere is not a run folder"),
        (["report", "nowhere"], "nowhere is not a run folder"),
        (["report", "nowhere", "--format", "pdf"], "--format pdf is not one of html, md, json"),
    ],
)
def test_audit_of_a_folder_that_is_no_run_is_one_clear_line(tmp_path, args, expected):
    result = run_cli("audit", *args, cwd=tmp_path)
    assert result.returncode == 1
    assert expected in " ".join(result.stdout.split()) and "Traceback" not in result.stderr


def test_an_existing_run_folder_is_not_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.csv").write_text("round\n1\n")
    result = run_cli("simulate", "--out", "run", cwd=tmp_path)
    assert result.returncode == 1
    assert "already holds a run" in result.stdout
    assert (tmp_path / "run" / "metrics.csv").read_text() == "round\n1\n"
