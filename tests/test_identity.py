import stat

import pytest
from conftest import deployed_site_folder
from flwr.app import Context, RecordDict

from flowerbed.config import load_federation, save_federation
from flowerbed.errors import ConfigError
from flowerbed.hospital_client.identity import resolve_site
from flowerbed.hospital_client.site_folder import SiteFolder


def context(node_config: dict) -> Context:
    return Context(run_id=1, node_id=5, node_config=node_config, state=RecordDict(), run_config={})


def test_simulation_picks_the_site_by_partition_id(tmp_path):
    path = tmp_path / "federation.toml"
    save_federation(load_federation(), path)
    federation, site = resolve_site(context({"partition-id": 2, "num-partitions": 4}), str(path))
    assert site == federation.sites[2]


def test_simulation_with_the_wrong_number_of_nodes_is_refused(tmp_path):
    path = tmp_path / "federation.toml"
    save_federation(load_federation(), path)
    with pytest.raises(ConfigError, match="lists 4 sites but the simulation started 3 nodes"):
        resolve_site(context({"partition-id": 0, "num-partitions": 3}), str(path))


def test_deployment_takes_the_site_budget_and_policy_from_its_site_folder(tmp_path):
    folder = deployed_site_folder(tmp_path / "charite", "charite", "de", send_to=["de", "fr"])
    federation, site = resolve_site(context({"site": str(folder.site_file)}), None)
    assert (site.name, site.country, site.data) == ("charite", "DE", "synthetic")
    assert federation.residency == {"DE": ["DE", "FR"]}
    assert not federation.privacy.enabled


def test_a_site_folder_is_created_private_with_its_keys_and_never_overwritten(tmp_path):
    folder = deployed_site_folder(tmp_path / "charite", "charite", "DE")
    files = [p for p in folder.root.rglob("*") if p.is_file()]
    assert {p.relative_to(folder.root).as_posix() for p in files} == {
        "site.toml", "keys/ledger.pem", "keys/sealing.pem", "keys/supernode.pem",
        "keys/supernode.pub", "public.toml",
    }  # fmt: skip
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE(folder.keys.stat().st_mode) == 0o700
    assert folder.supernode_public_key.read_text().startswith("ecdsa-sha2-nistp384 ")
    reloaded = SiteFolder.load(folder.site_file)
    assert reloaded.config == folder.config
    assert reloaded.ledger_key.private_bytes_raw() == folder.ledger_key.private_bytes_raw()
    with pytest.raises(ConfigError, match="already exists"):
        deployed_site_folder(tmp_path / "charite", "charite", "DE")


def test_bad_site_files_are_one_line_naming_the_field(tmp_path):
    folder = deployed_site_folder(tmp_path / "site", "charite", "DE")
    text = folder.site_file.read_text()
    for broken, message in (
        (text.replace('"DE"', '"XX"'), r"site\.country: 'XX' is not an ISO"),
        (
            text.replace("approved_apps = []", 'approved_apps = ["abc"]'),
            "policy.approved_apps.+'abc'",
        ),
        (text + "[extra]\n", "extra: unknown field"),
    ):
        folder.site_file.write_text(broken)
        with pytest.raises(ConfigError, match=rf"^{folder.site_file}: {message}"):
            SiteFolder.load(folder.site_file)
    (folder.keys / "sealing.pem").unlink()
    folder.site_file.write_text(text)
    with pytest.raises(ConfigError, match=r"sealing\.pem: key missing"):
        SiteFolder.load(folder.site_file)
    with pytest.raises(ConfigError, match="node config names no site"):
        resolve_site(context({}), None)
