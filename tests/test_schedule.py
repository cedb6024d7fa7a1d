"""The learning rate over the rounds: what the site trains with in each round."""

from __future__ import annotations

import itertools

import pytest
from conftest import site_context, train_instruction

from flowerbed.config import load_federation
from flowerbed.errors import ConfigError
from flowerbed.hospital_client.server_rounds import train_round
from flowerbed.hospital_client.training import scheduled_learning_rate
from flowerbed.protocol import records as R

pytestmark = pytest.mark.usefixtures("task_identity")


def test_cosine_starts_at_the_peak_and_falls_every_round_to_nearly_nothing():
    rates = [scheduled_learning_rate(0.02, "cosine", r, 20) for r in range(1, 21)]
    assert rates[0] == 0.02
    assert all(later < earlier for earlier, later in itertools.pairwise(rates))
    assert 0 < rates[-1] < 0.001
    assert scheduled_learning_rate(0.02, "cosine", 21, 20) == rates[-1]  # gossip's mix-only turn
    assert {scheduled_learning_rate(0.02, "constant", r, 20) for r in range(1, 21)} == {0.02}


def update_size(server_round: int, schedule: str) -> float:
    """How far one round of training at a site moves the same received model."""
    federation = load_federation(None, {"privacy": {"enabled": False}})
    msg = train_instruction(server_round, 20, schedule)
    sent = msg.content[R.ARRAYS].to_torch_state_dict()
    reply = train_round(msg, site_context(), federation, federation.sites[0])
    trained = reply[R.ARRAYS].to_torch_state_dict()
    return float(
        sum(((trained[k] - sent[k]) ** 2).sum() for k in sent if sent[k].is_floating_point())
    )


def test_a_site_takes_the_scheduled_step_of_the_round_it_is_in():
    first, last = update_size(1, "cosine"), update_size(20, "cosine")
    assert last < 0.01 * first
    assert update_size(20, "constant") > 0.2 * first


def test_an_unknown_schedule_fails_at_load_naming_the_field():
    with pytest.raises(ConfigError, match="lr_schedule"):
        load_federation(None, {"run": {"lr_schedule": "step"}})
    assert load_federation(None, {}).run.lr_schedule == "constant"
