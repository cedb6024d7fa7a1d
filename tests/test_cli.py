"""What a user sees when they get something wrong: one line, exit 1, no traceback.

The cases run ``main`` in this process (``conftest.flowerbed``); one runs the
installed console script, so the real entry point is held to the same rule.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import flowerbed, save_npz

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
    write_bad_data(tmp_path)
    return tmp_path


def write_bad_data(folder: Path) -> None:
    """Files that pass every form check (keys, shapes, columns) and cannot be trained on."""
    images = np.random.default_rng(0).random((40, 28, 28), dtype=np.float32)
    with_nan = images.copy()
    with_nan[3, 5, 5] = np.nan
    blank = images.copy()
    blank[7] = 0.0
    save_npz(folder / "nan.npz", with_nan, images[:8])
    save_npz(folder / "blank.npz", blank, images[:8])
    save_npz(folder / "gaps.npz", images, images[:8], classes=[1, 2])
    one_class = np.zeros((40, 1), dtype=np.uint8)
    save_npz(folder / "one-class.npz", images, images[:8], train_labels=one_class)
    (folder / "scan.png").write_text("not an image")
    (folder / "scans.csv").write_text("path,label\nscan.png,0\n")


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
        (["--data", "nan.npz"], "nan.npz: 1 training image(s) hold NaN or infinite pixel values"),
        (["--data", "blank.npz"], "blank.npz: training image 7 is blank (every pixel 0)"),
        (["--data", "gaps.npz"], "gaps.npz: labels 1, 2 are not 0..K-1 (no example of class 0)"),
        (["--data", "one-class.npz"], "the training split holds one class only (class 0)"),
        (["--data", "scans.csv"], "scan.png: cannot be read as an image (cannot identify image"),
        (["--sites", "100000"], "100000 sites: a simulation on one machine runs at most 4096"),
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_starts(
    in_tmp, monkeypatch, capsys, args, expected
):
    code, said = flowerbed(monkeypatch, capsys, "simulate", *args, "--out", "run")
    assert code == 1
    assert expected in said
    assert said.count("error:") == 1  # the run header, then one line
    assert "Traceback" not in said and "<monai." not in said
    assert "starting Flower simulation" not in said  # no progress bar above the error
    assert not (in_tmp / "run").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["verify", "nowhere"], "nowhere is not a run folder"),
        (["report", "nowhere"], "nowhere is not a run folder"),
        (
            ["report", "nowhere", "--format", "docx"],
            "--format docx is not one of html, md, json, pdf",
        ),
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


def test_an_out_that_names_a_file_is_one_clear_line(in_tmp, monkeypatch, capsys):
    (in_tmp / "notes.txt").write_text("mine\n")
    code, said = flowerbed(monkeypatch, capsys, "simulate", "--out", "notes.txt")
    assert code == 1 and "Traceback" not in said
    assert f"--out {in_tmp / 'notes.txt'}: is a file, not a folder; pass a new folder" in said
    assert (in_tmp / "notes.txt").read_text() == "mine\n"


@pytest.mark.slow  # starts a process
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
