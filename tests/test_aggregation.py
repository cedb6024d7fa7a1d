"""What the coordinator makes of the sites' replies, whatever order they arrive in."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_CNN, replies_for, site_context

from flowerbed.catalogue import STRATEGIES
from flowerbed.config import load_federation
from flowerbed.run_folder import RunFolder
from flowerbed.strategies.roll import Roll

pytestmark = pytest.mark.usefixtures("task_identity")


def test_the_federated_average_is_the_same_to_the_bit_whatever_order_the_replies_arrive_in(
    tmp_path,
):
    """Replies arrive in whatever order the sites finish. Float sums depend on their order,
    and over rounds a last-bit difference grows into another model, so a seeded run
    would not repeat."""
    federation = load_federation(None, {"privacy": {"enabled": False}})
    names = [site.name for site in federation.sites]
    roll = Roll(
        names, list(range(1, len(names) + 1)), [b""] * len(names), SMALL_CNN, "classification"
    )
    replies = replies_for(federation, [site_context() for _ in names], 1)
    aggregates = []
    for order, arrived in enumerate([replies, replies[::-1], replies[1:] + replies[:1]]):
        folder = RunFolder.create(tmp_path / f"run-{order}", federation)
        arrays, _ = STRATEGIES.get("fedavg")(federation, folder, roll).aggregate_train(1, arrived)
        aggregates.append(arrays.to_torch_state_dict())
    for other in aggregates[1:]:
        assert all(torch.equal(aggregates[0][name], other[name]) for name in other)
