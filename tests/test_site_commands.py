"""Setting up a real federation: what a hospital's engineer and a coordinator see.

Mistakes are one line and exit 1, and nothing starts; the app bundle's hash
is the one Flower computes, the same on every build.
"""

from __future__ import annotations

import hashlib
import socket

import pytest
from conftest import deployed_site_folder, flowerbed, pin_roster_of
from flwr.cli.build import build_fab_from_disk
from loopback import free_port

from flowerbed.deployment.app_bundle import app_hash, write_app
from flowerbed.deployment.certificates import make_certificates
from flowerbed.hospital_client.site_folder import SiteFolder


def test_site_init_writes_a_site_folder_that_launch_accepts(tmp_path, monkeypatch, capsys):
    code, said = flowerbed(
        monkeypatch, capsys, "site", "init", "--name", "charite", "--country", "de",
        "--data", "synthetic", "--send-to", "DE", "--send-to", "fr",
        "--out", str(tmp_path / "charite"),
    )  # fmt: skip
    assert code == 0, said
    assert "1600 training and 400 test images" in said
    folder = SiteFolder.load(tmp_path / "charite" / "site.toml")
    assert folder.config.site.country == "DE"
    assert folder.config.coordinator.country == "DE"
    assert folder.config.policy.send_to == ["DE", "FR"]
    assert folder.config.policy.approved_apps == []
    digest = app_hash()
    code, said = flowerbed(monkeypatch, capsys, "site", "approve", str(folder.site_file), digest)
    assert code == 0, said
    assert SiteFolder.load(folder.site_file).config.policy.approved_apps == [digest]


def test_the_app_hash_is_flowers_own_and_stable(tmp_path):
    digest = app_hash()
    assert digest == app_hash()
    built = build_fab_from_disk(write_app(tmp_path / "app"))
    assert hashlib.sha256(built).hexdigest() == digest


@pytest.fixture
def listening_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_bad_input_is_one_line_and_nothing_starts(tmp_path, monkeypatch, capsys, listening_port):
    site = deployed_site_folder(tmp_path / "berlin", "berlin", "DE")
    ca = make_certificates(tmp_path / "certs", ["127.0.0.1"]).ca
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello")
    twice = tmp_path / "twice.toml"
    twice.write_text(
        '[[sites]]\nname = "a"\ncountry = "DE"\n[[sites]]\nname = "a"\ncountry = "FR"\n'
    )
    keyless = tmp_path / "keyless.toml"
    keyless.write_text('[[sites]]\nname = "a"\ncountry = "DE"\n')
    pin_roster_of(site)
    rostered = tmp_path / "rostered.toml"
    rostered.write_text('[coordinator]\nroster = "roster.toml"\n[[sites]]\nname = "berlin"\n'
                        'country = "DE"\n')  # fmt: skip
    launch = ["site", "launch", str(site.site_file)]
    unused = f"127.0.0.1:{free_port()}"
    cases = [
        (["site", "init", "--name", "x", "--country", "XX", "--data", "synthetic"],
         "--country: 'XX' is not an ISO 3166-1 alpha-2 country code"),
        (["site", "init", "--name", "x", "--country", "DE", "--data", str(tmp_path / "no.npz")],
         "no.npz: no such file"),
        (["site", "init", "--name", "berlin", "--country", "DE", "--data", "synthetic",
          "--out", str(site.root)], "site.toml already exists"),
        (["site", "approve", str(site.site_file), "abc"], "--approve: 'abc' is not a sha256"),
        ([*launch, "--superlink", unused, "--root-certificates", str(ca)],
         f"cannot reach the SuperLink at {unused}"),
        ([*launch, "--superlink", unused], "pass --root-certificates ca.pem"),
        ([*launch, "--superlink", "nowhere", "--insecure"], "--superlink 'nowhere' is not"),
        ([*launch, "--superlink", unused, "--root-certificates", str(not_pem)],
         "not a PEM certificate"),
        ([*launch, "--superlink", unused, "--root-certificates", str(ca),
          "--port", str(listening_port)], f"127.0.0.1:{listening_port} is in use"),
        ([*launch[:2], str(tmp_path / "none.toml"), "--superlink", unused, "--insecure"],
         "none.toml: no such file"),
        (["coordinator", "launch", str(twice), "--certificates", str(ca.parent)],
         "site name 'a' appears twice"),
        (["coordinator", "launch", str(keyless), "--certificates", str(ca.parent)],
         "site a has no supernode_key"),
        (["coordinator", "launch", str(keyless), "--certificates", str(tmp_path)],
         "ca.pem: no such file"),
        (["run", str(keyless), "--superlink", unused, "--root-certificates", str(ca)],
         "keyless.toml: names no roster, and sites join only runs of the roster they pinned"),
        (["run", str(rostered), "--superlink", unused, "--root-certificates", str(ca)],
         f"cannot reach the SuperLink at {unused}"),
    ]  # fmt: skip
    for arguments, expected in cases:
        code, said = flowerbed(monkeypatch, capsys, *arguments)
        assert code == 1, (arguments, said)
        assert said.startswith("error: ") and expected in said, (arguments, said)
        assert "Traceback" not in said


def test_site_init_keeps_the_sites_image_size_augmentation_and_own_network(
    tmp_path, monkeypatch, capsys
):
    code, said = flowerbed(
        monkeypatch, capsys, "site", "init", "--name", "charite", "--country", "DE",
        "--data", "synthetic-seg", "--image-size", "16", "--augment",
        "--network", "hospital_nets:build", "--out", str(tmp_path / "charite"),
    )  # fmt: skip
    assert code == 0, said
    assert "segmentation: 1600 training and 400 test images of shape [1, 16, 16]" in said
    federation = SiteFolder.load(tmp_path / "charite" / "site.toml").federation
    assert (federation.data.image_size, federation.data.augment) == (16, True)
    assert federation.builds("hospital_nets:build") and not federation.builds("other:build")
    code, said = flowerbed(
        monkeypatch, capsys, "site", "init", "--name", "x", "--country", "DE",
        "--data", "synthetic", "--network", "not a network", "--out", str(tmp_path / "x"),
    )  # fmt: skip
    assert code == 1 and "--network: unknown model 'not a network'" in said
    assert not (tmp_path / "x").exists()
