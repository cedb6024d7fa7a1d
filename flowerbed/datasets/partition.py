"""Split one dataset into sites for simulation: IID, Dirichlet label skew, quantity skew.

Every partitioner maps (labels, number of sites, alpha, generator) to one
index array per site. The same seed gives the same split on every machine,
which is what lets each simulated site compute its own shard independently.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flowerbed.catalogue import PARTITIONERS
from flowerbed.errors import DataError

Partitioner = Callable[[np.ndarray, int, float, np.random.Generator], list[np.ndarray]]
MIN_EXAMPLES_PER_SITE = 4
_MAX_REDRAWS = 100


def iid(labels: np.ndarray, sites: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, then deal equal shares."""
    return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), sites)]


def dirichlet(
    labels: np.ndarray, sites: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Label skew: each class is spread over sites in Dirichlet(alpha) proportions.

    Smaller alpha, stronger skew. Redrawn until every site has a few examples.
    """
    for _ in range(_MAX_REDRAWS):
        parts: list[list[int]] = [[] for _ in range(sites)]
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet([alpha] * sites)
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for site, chunk in enumerate(np.split(members, cuts)):
                parts[site].extend(chunk.tolist())
        if min(len(part) for part in parts) >= MIN_EXAMPLES_PER_SITE:
            return [np.sort(np.array(part, dtype=np.int64)) for part in parts]
    raise DataError(
        f"Dirichlet(alpha={alpha}) over {sites} sites keeps leaving a site with fewer than "
        f"{MIN_EXAMPLES_PER_SITE} examples; raise alpha or use fewer sites"
    )


def quantity(
    labels: np.ndarray, sites: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Quantity skew: IID labels, site sizes in Dirichlet(alpha) proportions."""
    floor = MIN_EXAMPLES_PER_SITE * sites
    shares = rng.dirichlet([alpha] * sites)
    sizes = MIN_EXAMPLES_PER_SITE + np.floor(shares * (len(labels) - floor)).astype(int)
    cuts = np.cumsum(sizes)[:-1]
    return [np.sort(part) for part in np.split(rng.permutation(len(labels))[: sizes.sum()], cuts)]


def partition(
    labels: np.ndarray, sites: int, scheme: str, alpha: float, seed: int
) -> list[np.ndarray]:
    """Index arrays, one per site, disjoint; ``DataError`` if there is too little data."""
    if len(labels) < MIN_EXAMPLES_PER_SITE * sites:
        raise DataError(
            f"{len(labels)} examples cannot give {sites} sites {MIN_EXAMPLES_PER_SITE} each; "
            "use fewer sites or more data"
        )
    partitioner: Partitioner = PARTITIONERS.get(scheme)
    return partitioner(labels, sites, alpha, np.random.default_rng(seed))
