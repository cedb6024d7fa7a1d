"""Who gossips with whom: graphs of hospitals, picked by name from ``TOPOLOGIES``.

A topology gives, for each round, the directed edges ``(sender, receiver)``
over site indices ``0..n-1``: the sender seals its parameters for the
receiver, who mixes them in at the start of the next round. Undirected graphs
(both directions of every edge) mix with Metropolis-Hastings weights, which
are symmetric and doubly stochastic on any undirected graph, also on the
subgraph of sites that answered a round. The exponential graphs of Ying et
al. (2021) are directed: each site sends to the sites 2^k ahead of it (all
k at once in the static graph, one k per round in the one-peer graph) and
weighs what it hears uniformly, 1 / (1 + in-degree); as every site also
sends to as many as it hears from, that is doubly stochastic too.

Every topology is checked before a run starts: a static graph must be
connected (a residency policy may have cut edges), a time-varying one
connected over one period. Graph work is networkx's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from flowerbed.catalogue import TOPOLOGIES
from flowerbed.errors import ConfigError

Edge = tuple[int, int]
Weights = dict[int, dict[int, float]]  # receiver -> sender -> weight


@dataclass(frozen=True)
class Topology:
    """Directed edges for each round; ``period`` rounds repeat (1 for a static graph)."""

    name: str
    size: int
    schedule: tuple[frozenset[Edge], ...]

    @property
    def period(self) -> int:
        return len(self.schedule)

    @property
    def symmetric(self) -> bool:
        """Every edge goes both ways in every round (an undirected graph)."""
        return all(all((r, s) in edges for s, r in edges) for edges in self.schedule)

    def edges(self, server_round: int) -> frozenset[Edge]:
        """Edges used to send in ``server_round`` (rounds count from 1)."""
        return self.schedule[(server_round - 1) % self.period]

    def senders_to(self, receiver: int, server_round: int) -> list[int]:
        return sorted(s for s, r in self.edges(server_round) if r == receiver)

    def receivers_of(self, sender: int, server_round: int) -> list[int]:
        return sorted(r for s, r in self.edges(server_round) if s == sender)

    def without(self, forbidden: Callable[[int, int], bool]) -> Topology:
        """This topology minus edges ``forbidden(sender, receiver)``.

        On an undirected graph an edge goes if either direction is forbidden:
        Metropolis-Hastings weights need both.
        """
        if self.symmetric:
            return Topology(
                self.name,
                self.size,
                tuple(
                    frozenset((s, r) for s, r in edges if not (forbidden(s, r) or forbidden(r, s)))
                    for edges in self.schedule
                ),
            )
        kept = tuple(frozenset(e for e in edges if not forbidden(*e)) for edges in self.schedule)
        return Topology(self.name, self.size, kept)

    def components(self) -> list[list[int]]:
        """Groups of sites that never exchange anything, over one period (one if connected)."""
        graph = nx.Graph()
        graph.add_nodes_from(range(self.size))
        for edges in self.schedule:
            graph.add_edges_from(edges)
        return sorted(sorted(c) for c in nx.connected_components(graph))

    def mixing_matrix(self, server_round: int, answered: Iterable[int] | None = None) -> np.ndarray:
        """The ``size`` x ``size`` mixing matrix W of ``server_round``: x <- W x."""
        weights = self.weights(server_round, range(self.size) if answered is None else answered)
        matrix = np.eye(self.size)
        for receiver, row in weights.items():
            for sender, weight in row.items():
                matrix[receiver, sender] = weight
            matrix[receiver, receiver] = 1.0 - sum(row.values())
        return matrix

    def weights(self, server_round: int, answered: Iterable[int]) -> Weights:
        """Mixing weights over the edges of ``server_round`` between sites that answered it.

        A site keeps ``1 - sum`` of its row for itself. Sites that did not
        answer are left out on both ends, so the weights stay symmetric on a
        undirected graph and the survivors re-weight among themselves.
        """
        alive = set(answered)
        edges = [(s, r) for s, r in self.edges(server_round) if s in alive and r in alive]
        heard: dict[int, list[int]] = {}
        for sender, receiver in edges:
            heard.setdefault(receiver, []).append(sender)
        if not self.symmetric:
            return {r: {s: 1.0 / (1 + len(ss)) for s in ss} for r, ss in heard.items()}
        degree = {site: len(heard.get(site, [])) for site in alive}
        return {
            r: {s: 1.0 / (1 + max(degree[r], degree[s])) for s in ss} for r, ss in heard.items()
        }

    def spectral_gap(self) -> float:
        """1 - the second largest singular value of one period's mixing, per round.

        For a static symmetric W this is 1 - max(|lambda_2|, |lambda_n|): the
        consensus distance shrinks by (1 - gap)^2 each round, at worst. For a
        time-varying graph it is taken over the product of one period.
        """
        product = np.eye(self.size)
        for server_round in range(1, self.period + 1):
            product = self.mixing_matrix(server_round) @ product
        if self.size < 2:
            return 1.0
        centred = product - np.full_like(product, 1.0 / self.size)
        second = float(np.linalg.norm(centred, ord=2))
        return 1.0 - second ** (1.0 / self.period)


@dataclass(frozen=True)
class GraphSpec:
    """What a topology factory may use: site count, seed (random graphs), degree (regular)."""

    size: int
    seed: int = 0
    degree: int = 3


TopologyFactory = Callable[[GraphSpec], Topology]


def _undirected(name: str, graph: nx.Graph) -> Topology:
    edges = frozenset((s, r) for a, b in graph.edges for s, r in ((a, b), (b, a)) if a != b)
    return Topology(name, graph.number_of_nodes(), (edges,))


def ring(spec: GraphSpec) -> Topology:
    return _undirected("ring", nx.cycle_graph(spec.size))


def torus(spec: GraphSpec) -> Topology:
    size = spec.size
    rows = max(d for d in range(1, math.isqrt(size) + 1) if size % d == 0)
    if rows < 2:
        raise ConfigError(
            f"topology torus: {size} sites do not form a grid of at least 2 x 2; "
            "use a site count with two factors (4, 6, 8, 9, ...) or another topology"
        )
    grid = nx.grid_2d_graph(rows, size // rows, periodic=True)
    return _undirected("torus", nx.convert_node_labels_to_integers(grid, ordering="sorted"))


def _hops(size: int) -> list[int]:
    return [2**k for k in range(max(1, math.ceil(math.log2(size))))] if size > 1 else []


def _ahead(size: int, hops: list[int]) -> frozenset[Edge]:
    """Each site sends to the sites ``hops`` ahead of it, round the circle."""
    return frozenset((i, (i + hop) % size) for i in range(size) for hop in hops if hop % size)


def exponential(spec: GraphSpec) -> Topology:
    """Static exponential graph: each site sends to the sites 2^0, 2^1, ... ahead of it."""
    return Topology("exponential", spec.size, (_ahead(spec.size, _hops(spec.size)),))


def one_peer_exponential(spec: GraphSpec) -> Topology:
    """Round t: each site sends to the site 2^(t mod log2 n) ahead (Ying et al. 2021)."""
    schedule = tuple(_ahead(spec.size, [hop]) for hop in _hops(spec.size))
    return Topology("one-peer-exponential", spec.size, schedule or (frozenset(),))


def random_regular(spec: GraphSpec) -> Topology:
    size, degree = spec.size, spec.degree
    if degree >= size or (degree * size) % 2:
        raise ConfigError(
            f"topology random-regular: no {degree}-regular graph on {size} sites "
            "(needs degree < sites and degree x sites even); change --sites"
        )
    return _undirected("random-regular", nx.random_regular_graph(degree, size, seed=spec.seed))


def complete(spec: GraphSpec) -> Topology:
    return _undirected("complete", nx.complete_graph(spec.size))


def from_edge_list(path: Path, names: list[str]) -> Topology:
    """An undirected graph from a file of ``site-a site-b`` lines (``#`` comments)."""
    index = {name: i for i, name in enumerate(names)}
    graph = nx.Graph()
    graph.add_nodes_from(range(len(names)))
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise ConfigError(f"topology {path}: cannot read it ({err.strerror})") from None
    for number, line in enumerate(lines, start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or not all(w in index for w in words):
            unknown = [w for w in words if w not in index]
            why = f"unknown site {unknown[0]!r}" if unknown else "expected two site names"
            raise ConfigError(f"topology {path}:{number}: {why}; each line is 'site-a site-b'")
        graph.add_edge(index[words[0]], index[words[1]])
    return _undirected(f"edges from {Path(path).name}", graph)


def build_topology(name: str, names: list[str], seed: int = 0, degree: int = 3) -> Topology:
    """A topology by registry name, or from an edge-list file when ``name`` is a path."""
    if name in TOPOLOGIES or not Path(name).suffix:
        factory: TopologyFactory = TOPOLOGIES.get(name)
        return factory(GraphSpec(len(names), seed, degree))
    return from_edge_list(Path(name), names)
