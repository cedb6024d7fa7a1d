import pytest
from flwr.app import Context, RecordDict

from flowerbed.config import load_federation, save_federation
from flowerbed.errors import ConfigError
from flowerbed.hospital_client.identity import resolve_site


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


def test_deployment_takes_the_site_and_its_budget_from_node_config():
    node = {"name": "charite", "country": "de", "data": "synthetic", "epsilon": 3.0, "delta": 1e-6}
    federation, site = resolve_site(context(node), None)
    assert (site.name, site.country, site.data) == ("charite", "DE", "synthetic")
    assert federation.budget_of(site) == 3.0
    assert federation.privacy.delta == 1e-6


def test_bad_node_config_is_one_line_naming_the_field():
    with pytest.raises(ConfigError, match=r"^node config: sites\.0\.country: 'XX' is not"):
        resolve_site(context({"name": "charite", "country": "XX"}), None)
    with pytest.raises(ConfigError, match="node config names no site"):
        resolve_site(context({}), None)
