"""Topologies: doubly stochastic mixing, connectivity, spectral gaps, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from flowerbed.catalogue import TOPOLOGIES
from flowerbed.config import load_federation
from flowerbed.errors import ConfigError
from flowerbed.strategies.gossip import plan_topology
from flowerbed.strategies.topology import build_topology

NAMES = [f"site-{i}" for i in range(8)]


@pytest.mark.parametrize("name", TOPOLOGIES.names())
def test_every_topology_mixes_with_doubly_stochastic_weights(name):
    topology = build_topology(name, NAMES, seed=3)
    assert topology.components() == [list(range(8))]
    for server_round in range(1, topology.period + 1):
        matrix = topology.mixing_matrix(server_round)
        assert (matrix >= 0).all()
        np.testing.assert_allclose(matrix.sum(axis=0), 1.0)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
        if topology.symmetric:
            np.testing.assert_allclose(matrix, matrix.T)
    assert 0.0 < topology.spectral_gap() <= 1.0


def test_weights_stay_doubly_stochastic_over_the_sites_that_answered():
    topology = build_topology("torus", NAMES)
    answered = [0, 1, 2, 4, 5, 7]
    matrix = topology.mixing_matrix(1, answered)[np.ix_(answered, answered)]
    np.testing.assert_allclose(matrix.sum(axis=0), 1.0)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    np.testing.assert_allclose(matrix, matrix.T)


def test_spectral_gaps_match_the_known_values():
    assert build_topology("complete", NAMES).spectral_gap() == pytest.approx(1.0)
    assert build_topology("one-peer-exponential", NAMES).spectral_gap() == pytest.approx(1.0)
    # Ring of 8 with Metropolis-Hastings weights 1/3: lambda_2 = 1/3 + 2/3 cos(2 pi / 8).
    ring = build_topology("ring", NAMES).spectral_gap()
    assert ring == pytest.approx(1 - (1 / 3 + 2 / 3 * np.cos(2 * np.pi / 8)))
    assert ring < build_topology("exponential", NAMES).spectral_gap() < 1.0


def test_random_regular_graph_is_regular_and_seeded():
    first = build_topology("random-regular", NAMES, seed=5, degree=3)
    again = build_topology("random-regular", NAMES, seed=5, degree=3)
    assert first.edges(1) == again.edges(1)
    assert all(len(first.receivers_of(site, 1)) == 3 for site in range(8))


@pytest.mark.parametrize(
    ("name", "count", "message"),
    [
        ("torus", 7, "7 sites do not form a grid"),
        ("random-regular", 5, "no 3-regular graph on 5 sites"),
    ],
)
def test_impossible_graphs_fail_with_the_reason(name, count, message):
    with pytest.raises(ConfigError, match=message):
        build_topology(name, NAMES[:count])


def test_edge_list_file_builds_the_graph_and_names_a_bad_line(tmp_path):
    edges = tmp_path / "edges.txt"
    edges.write_text("# hospital links\nsite-0 site-1\nsite-1 site-2\nsite-2 site-0\n")
    topology = build_topology(str(edges), NAMES[:3])
    assert topology.receivers_of(0, 1) == [1, 2]
    edges.write_text("site-0 site-1\nsite-1 nowhere\n")
    with pytest.raises(ConfigError, match=r"edges.txt:2: unknown site 'nowhere'"):
        build_topology(str(edges), NAMES[:3])


def test_a_disconnected_edge_list_refuses_to_start(tmp_path):
    edges = tmp_path / "edges.txt"
    edges.write_text("site-0 site-1\nsite-2 site-3\n")
    federation = load_federation(
        None,
        {
            "run": {"strategy": "gossip", "topology": str(edges)},
            "sites": [{"name": n, "country": "DE"} for n in NAMES[:4]],
        },
    )
    with pytest.raises(ConfigError, match="2 groups"):
        plan_topology(federation)


def test_unknown_topology_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"run.topology: unknown topology 'star'.*ring"):
        load_federation(None, {"run": {"topology": "star"}})
