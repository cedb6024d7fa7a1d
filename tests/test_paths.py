"""A path means what it meant where it was typed, from any working folder.

A flag is read against the working folder, a field of a file against that
file's folder, and what a later process reads (``RUN_DIR/config.toml``,
``site.toml``) holds it absolute. Each test runs from a folder that is
neither the repository nor the data's, with relative paths that would open
nothing, or the wrong file, under any other anchor.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from conftest import flowerbed, save_npz

from flowerbed.config import load_federation
from flowerbed.hospital_client.site_folder import SiteFolder

FLOWERBED = str(Path(sys.executable).parent / "flowerbed")


@pytest.fixture
def layout(tmp_path) -> dict[str, Path]:
    """data/ with two sets, a federation file two folders down, and a separate working folder."""
    data, configs, work = tmp_path / "data", tmp_path / "configs" / "trial", tmp_path / "work"
    for folder in (data, configs, work):
        folder.mkdir(parents=True)
    images = np.random.default_rng(1).random((48, 28, 28), dtype=np.float32)
    save_npz(data / "shared.npz", images[:32], images[32:])
    save_npz(data / "own.npz", images[16:], images[:16])
    (configs / "federation.toml").write_text(
        "[run]\nrounds = 1\n\n[privacy]\nenabled = false\n\n"
        '[[sites]]\nname = "berlin"\ncountry = "DE"\n\n'
        '[[sites]]\nname = "paris"\ncountry = "FR"\ndata = "../../data/own.npz"\n'
    )
    return {"data": data, "configs": configs, "work": work}


@pytest.mark.slow
def test_simulate_reads_a_flag_against_the_working_folder_and_a_file_field_against_the_file(
    layout,
):
    result = subprocess.run(
        [FLOWERBED, "simulate", "../configs/trial/federation.toml",
         "--data", "../data/shared.npz", "--out", "runs/trial"],
        cwd=layout["work"], capture_output=True, text=True, env=os.environ.copy(), timeout=300,
    )  # fmt: skip
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, said + result.stderr[-2000:]
    assert "round 1: mean test AUC" in said
    run = layout["work"] / "runs" / "trial"
    written = tomllib.loads((run / "config.toml").read_text())
    assert written["data"]["source"] == str(layout["data"] / "shared.npz")
    assert written["sites"][1]["data"] == str(layout["data"] / "own.npz")
    assert '"completed"' in (run / "status.json").read_text()


def test_site_init_stores_the_data_path_absolute_for_the_supernode_to_open(
    layout, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(layout["work"])
    code, said = flowerbed(
        monkeypatch, capsys, "site", "init", "--name", "berlin", "--country", "DE",
        "--data", "../data/shared.npz", "--out", "berlin",
    )  # fmt: skip
    assert code == 0, said
    site_file, shared = layout["work"] / "berlin" / "site.toml", str(layout["data"] / "shared.npz")
    assert tomllib.loads(site_file.read_text())["site"]["data"] == shared
    monkeypatch.chdir(tmp_path)  # a SuperNode started elsewhere reads the same file
    assert SiteFolder.load(site_file).config.site.data == shared


def test_a_federation_file_read_from_elsewhere_names_the_files_beside_it(layout, monkeypatch):
    monkeypatch.chdir(layout["work"])
    trial = Path("../configs/trial/federation.toml")
    federation = load_federation(trial, {"data": {"source": "../data/shared.npz"}})
    assert federation.sites[1].data == str(layout["data"] / "own.npz")  # beside the file
    assert federation.data.source == str(layout["data"] / "shared.npz")  # beside the user
