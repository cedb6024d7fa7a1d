"""What a user sees when they get something wrong: one line, exit 1, no traceback.

The cases run ``main`` in this process (``conftest.flowerbed``); one runs the
installed console script, so the real entry point is held to the same rule.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import flowerbed

FLOWERBED = str(Path(sys.executable).parent / "flowerbed")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """A working folder holding a federation file with a bad country and one a policy splits."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text('[[sites]]\nname = "a"\ncountry = "EU"\n')
    (tmp_path / "split.toml").write_text(
        '[run]\nstrategy = "gossip"\ntopology = "complete"\n[residency]\nDE = ["DE"]\n'
        '[[sites]]\nname = "a"\ncountry = "DE"\n[[sites]]\nname = "b"\ncountry = "FR"\n'
    )
    return tmp_path


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
def test_bad_input_is_one_clear_line_and_nothing_starts(
    in_tmp, monkeypatch, capsys, args, expected
):
    code, said = flowerbed(monkeypatch, capsys, "simulate", *args, "--out", "run")
    assert code == 1
    assert expected in said
    assert "Traceback" not in said
    assert "starting Flower simulation" not in said  # no progress bar above the error
    assert not (in_tmp / "run").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["verify", "nowhere"], "nowhere is not a run folder"),
        (["report", "nowhere"], "nowhere is not a run folder"),
        (["report", "nowhere", "--format", "pdf"], "--format pdf is not one of html, md, json"),
    ],
)
def test_audit_of_a_folder_that_is_no_run_is_one_clear_line(
    in_tmp, monkeypatch, capsys, args, expected
):
    code, said = flowerbed(monkeypatch, capsys, "audit", *args)
    assert code == 1
    assert expected in said and "Traceback" not in said


def test_an_existing_run_folder_is_not_overwritten(in_tmp, monkeypatch, capsys):
    (in_tmp / "run").mkdir()
    (in_tmp / "run" / "metrics.csv").write_text("round\n1\n")
    code, said = flowerbed(monkeypatch, capsys, "simulate", "--out", "run")
    assert code == 1
    assert "already holds a run" in said
    assert (in_tmp / "run" / "metrics.csv").read_text() == "round\n1\n"


def test_the_console_script_reports_a_mistake_in_one_line_and_exit_1(tmp_path):
    result = subprocess.run(
        [FLOWERBED, "simulate", "--data", "missing.npz", "--out", "run"],
        cwd=tmp_path, capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    assert result.returncode == 1
    said = " ".join(result.stdout.split())
    assert f"error: {tmp_path / 'missing.npz'}: no such file" in said
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
