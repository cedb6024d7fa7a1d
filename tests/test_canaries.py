"""The one-run privacy audit: canaries planted at a site, and the lower bound on epsilon."""

from __future__ import annotations

import numpy as np
import torch

from flowerbed.config import load_federation
from flowerbed.datasets.source import site_data
from flowerbed.hospital_client.dp_plan import steps_per_epoch
from flowerbed.hospital_client.training import DPPlan, TrainPlan, evaluate, train
from flowerbed.models.factory import build_model
from flowerbed.privacy.accounting import PrivacyAccount, plan_noise
from flowerbed.privacy.canary_audit import epsilon_lower_bound
from flowerbed.protocol.model_spec import ModelSpec

SITE = {"name": "berlin", "country": "DE"}
DELTA = 1e-5


def planted(canaries: int):
    federation = load_federation(None, {"sites": [SITE], "privacy": {"canaries": canaries}})
    return site_data(federation, federation.sites[0])


def test_canaries_are_mislabelled_copies_trained_on_by_a_fair_coin_and_the_same_every_round():
    plain, data = planted(0), planted(64)
    assert data.canaries is not None and plain.canaries is None
    members = data.canaries.members
    assert 16 < members.sum() < 48  # a fair coin per canary
    # The originals leave the training set; the mislabelled copies of members join it.
    assert len(data.train) == len(plain.train) - 64 + members.sum()
    images, labels = data.canaries.images.batch(np.arange(64))
    trained_images, trained_labels = data.train.batch(np.arange(len(data.train)))
    flat = trained_images.reshape(len(trained_images), -1)
    for image, label, member in zip(images, labels, members, strict=True):
        same = (flat == image.reshape(-1)).all(dim=1)
        assert bool(same.any()) == bool(member)
        if member:
            assert (trained_labels[same] == label).all()  # trained on the wrong label
    _, true_labels = data.canaries.images.base.batch(np.arange(64))
    assert (labels == 1 - true_labels).all()  # two classes: the next class is the other
    again = planted(64)  # a deployed site plants them in each round's fresh process
    assert np.array_equal(again.canaries.members, members)


def test_the_bound_is_zero_for_guesses_no_better_than_chance_and_grows_with_the_canaries():
    rng = np.random.default_rng(0)
    members = rng.random(1000) < 0.5
    assert epsilon_lower_bound(rng.random(1000), members, DELTA) < 0.3
    separated = [epsilon_lower_bound(np.where(members[:m], 0.0, 1.0), members[:m], DELTA)
                 for m in (64, 256, 1000)]  # fmt: skip
    assert 1.0 < separated[0] < separated[1] < separated[2] < 10
    assert np.isnan(epsilon_lower_bound(np.array([]), np.array([], dtype=bool), DELTA))


def canary_bound(dp_epsilon: float | None) -> tuple[float, float]:
    """Train the small CNN on 32 examples with 64 canaries, long enough to memorise; the
    canaries' lower bound on epsilon, and the attack's AUC."""
    data = planted(64)
    flip = data.train.flip  # the member canaries, and 32 of the site's own examples
    own = data.train.subset(np.concatenate([np.flatnonzero(flip), np.flatnonzero(~flip)[:32]]))
    torch.manual_seed(0)
    model = build_model(ModelSpec("small-cnn", 2, 1, 2, (28, 28)))
    dp = None
    epochs, batch = 40, 16
    if dp_epsilon is not None:
        steps = steps_per_epoch(len(own), batch)
        dp = DPPlan(plan_noise(dp_epsilon, DELTA, 1 / steps, steps * epochs), 1.0)
    plan = TrainPlan(epochs=epochs, batch_size=batch, learning_rate=0.003, optimizer="adam", dp=dp)
    train(model, own, 2, plan, PrivacyAccount(), seed=0)
    _, leak = evaluate(model, data.test, 2, own, data.canaries, DELTA)
    return leak.canary_epsilon, leak.auc


def test_the_canary_bound_rises_for_a_memorising_model_and_stays_below_the_accountant_under_dp():
    memorised, _ = canary_bound(None)
    assert memorised > 1.0  # the data refute every epsilon below it: a leak shown
    private, _ = canary_bound(8.0)
    assert private < 8.0 and private < memorised
