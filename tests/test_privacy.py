import math

import numpy as np
import pytest
import torch
from conftest import SMALL_CNN, replies_for, site_context, train_instruction
from opacus.accountants.utils import get_noise_multiplier

from flowerbed.catalogue import STRATEGIES
from flowerbed.config import load_federation
from flowerbed.datasets.base import ImageSet
from flowerbed.errors import RunStopped
from flowerbed.hospital_client.dp_plan import steps_per_epoch
from flowerbed.hospital_client.server_rounds import train_round
from flowerbed.hospital_client.training import DPPlan, TrainPlan, train
from flowerbed.privacy.accounting import STATE_KEY, PrivacyAccount, plan_noise
from flowerbed.protocol import records as R
from flowerbed.run_folder import RunFolder
from flowerbed.strategies.roll import Roll

pytestmark = pytest.mark.usefixtures("task_identity")


def test_account_survives_a_round_trip_through_flower_state():
    account = PrivacyAccount()
    account.record(1.1, 0.02, 50)
    account.record(1.1, 0.02, 50)
    restored = PrivacyAccount.from_record(account.to_record())
    assert restored == account
    assert restored.epsilon(1e-5) == pytest.approx(account.epsilon(1e-5))
    assert PrivacyAccount.from_record(None).epsilon(1e-5) == 0.0


def test_planned_noise_spends_the_budget_over_the_planned_steps_and_no_more():
    noise = plan_noise(budget=4.0, delta=1e-5, sample_rate=0.02, steps=500)
    account = PrivacyAccount()
    for _ in range(5):
        account.record(noise, 0.02, 100)
    spent = account.epsilon(1e-5)
    assert 3.8 <= spent <= 4.0
    assert account.epsilon_after(noise, 0.02, 100, 1e-5) > 4.0


@pytest.mark.parametrize(("budget", "rate", "steps"), [(8.0, 0.02, 400), (1.0, 0.1, 30)])
def test_planned_noise_is_the_noise_opacus_plans(budget, rate, steps):
    expected = get_noise_multiplier(
        target_epsilon=budget, target_delta=1e-5, sample_rate=rate, steps=steps, accountant="rdp"
    )
    assert plan_noise(budget, 1e-5, rate, steps) == expected


def test_a_resumed_run_spends_what_its_budget_has_left_even_after_an_extra_round():
    """Two of four rounds done, then the coordinator died while the sites trained a third
    it never used: the two rounds still to play take more noise, and the run ends on its
    budget, not past it."""
    noise = plan_noise(budget=8.0, delta=1e-5, sample_rate=0.02, steps=400)
    on_plan = [(noise, 0.02, 200)]
    # Opacus plans to within 0.01 of the budget; the rest of the plan is the same noise.
    assert plan_noise(8.0, 1e-5, 0.02, 200, on_plan) == pytest.approx(noise, rel=1e-2)
    with_lost_round = [(noise, 0.02, 300)]
    rest = plan_noise(8.0, 1e-5, 0.02, 200, with_lost_round)
    assert rest > noise
    spent = PrivacyAccount([*with_lost_round, (rest, 0.02, 200)]).epsilon(1e-5)
    assert 7.99 <= spent <= 8.0
    spent_out = [(0.5, 0.02, 10_000)]  # nothing is left: the largest noise, then a refusal
    assert PrivacyAccount(spent_out).epsilon(1e-5) > 8.0
    assert plan_noise(8.0, 1e-5, 0.02, 200, spent_out) == pytest.approx(1e4)


@pytest.mark.parametrize("batches", [99, 100])
def test_noise_is_planned_for_the_steps_and_rate_opacus_accounts(batches):
    data = ImageSet(
        np.random.default_rng(0).normal(size=(32 * batches, 1, 4, 4)).astype(np.float32),
        np.arange(32 * batches) % 2,
    )
    steps = steps_per_epoch(len(data), 32)
    noise = plan_noise(budget=8.0, delta=1e-5, sample_rate=1 / steps, steps=steps)
    account = PrivacyAccount()
    plan = TrainPlan(1, 32, 0.05, dp=DPPlan(noise, 1.0))
    train(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)), data, 2, plan, account, 0
    )
    assert account.history == [(noise, 1 / steps, steps)]
    assert account.epsilon(1e-5) <= 8.0


def test_site_spends_its_budget_over_the_planned_rounds_then_refuses_loudly():
    federation = load_federation(None, {"privacy": {"epsilon": 2.0}})
    site = federation.sites[0]
    context = site_context()
    spent = []
    for server_round in (1, 2):
        reply = train_round(train_instruction(server_round, 2), context, federation, site)
        assert R.ARRAYS in reply
        spent.append(reply[R.METRICS][R.EPSILON])
    assert 0 < spent[0] < spent[1] <= 2.0
    assert PrivacyAccount.from_record(context.state[STATE_KEY]).epsilon(1e-5) == spent[1]

    refusal = train_round(train_instruction(3, 2), context, federation, site)
    assert R.ARRAYS not in refusal
    assert refusal[R.METRICS][R.BUDGET_EXHAUSTED] == 1
    assert refusal[R.METRICS][R.EPSILON] == pytest.approx(spent[1])
    assert refusal[R.METRICS][R.EPSILON_BUDGET] == 2.0
    assert refusal[R.SITE][R.SITE_NAME] == site.name


def test_run_goes_on_without_a_refusing_site_and_stops_when_none_can_train(tmp_path):
    federation = load_federation(None, {"privacy": {"epsilon": 1.0}})
    contexts = [site_context() for _ in federation.sites]
    folder = RunFolder.create(tmp_path / "run", federation)
    names = [site.name for site in federation.sites]
    roll = Roll(
        names, list(range(1, len(names) + 1)), [b""] * len(names), SMALL_CNN, "classification"
    )
    strategy = STRATEGIES.get("fedavg")(federation, folder, roll)

    # the first site spends its whole budget alone
    train_round(train_instruction(1, 1), contexts[0], federation, federation.sites[0])
    mixed = replies_for(federation, contexts, 1)
    assert sum(R.ARRAYS in reply.content for reply in mixed) == 3
    arrays, _ = strategy.aggregate_train(1, mixed)
    assert arrays is not None
    refused = [row for row in folder.latest.values() if row.status == "refused"]
    assert [row.site for row in refused] == [federation.sites[0].name]

    replies_for(federation, contexts, 2)
    with pytest.raises(RunStopped, match="no site could train"):
        strategy.aggregate_train(3, replies_for(federation, contexts, 3))
    assert math.isfinite(folder.latest[federation.sites[1].name, "train"].epsilon)
