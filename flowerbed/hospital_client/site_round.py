"""A site's server-side round: train or evaluate the received model on its own data.

Replies carry model parameters, the declared metrics of ``flowerbed.records``
and the site's public identity (name, country): nothing else leaves.
The site's privacy account lives in ``context.state``, so it survives the
per-message subprocess of a deployed SuperNode.
"""

from __future__ import annotations

from logging import WARNING

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from torch import nn

from flowerbed import records as R
from flowerbed.arrays import to_state_dict
from flowerbed.config import Federation, SiteSettings
from flowerbed.datasets import SiteData, site_data
from flowerbed.honesty import probe_answer
from flowerbed.hospital_client.faults import SiteTurn, behave
from flowerbed.hospital_client.scoring import Scores
from flowerbed.hospital_client.training import (
    DPPlan,
    TrainPlan,
    evaluate,
    scheduled_learning_rate,
    steps_per_epoch,
    train,
)
from flowerbed.models import ModelSpec, build_model, reading_network
from flowerbed.privacy import BudgetExhausted, PrivacyAccount, plan_noise
from flowerbed.privacy.accounting import STATE_KEY


def train_round(
    msg: Message, context: Context, federation: Federation, site: SiteSettings
) -> RecordDict:
    """One round of local training on the received model, or a refusal if the budget is spent."""
    data = site_data(federation, site)
    model = _model_from(msg)
    config = msg.content[R.CONFIG]
    received = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    turn = site_turn(model, config, context, federation, site, data, received)
    state, metrics = behave(federation, site, turn)
    trained = not metrics.get(R.BUDGET_EXHAUSTED, 0)
    content = site_reply(site, metrics, ArrayRecord(state) if trained else None)
    if trained and R.PROBE_SEED in config:
        content[R.PROBE] = probe_answer(spec_of(config), state, int(config[R.PROBE_SEED]))
    return content


def site_turn(
    model: nn.Module,
    config: ConfigRecord,
    context: Context,
    federation: Federation,
    site: SiteSettings,
    data: SiteData,
    received: dict[str, torch.Tensor],
) -> SiteTurn:
    """This round at this site: honest training of ``model`` (see ``faults`` for the rest)."""

    def honest(own: SiteData) -> tuple[dict[str, torch.Tensor], MetricRecord]:
        metrics = train_locally(model, config, context, federation, site, own)
        return model.state_dict(), metrics

    def idle() -> MetricRecord:
        account = PrivacyAccount.from_record(context.state.get(STATE_KEY))
        nothing = Scores(0, float("nan"), float("nan"), float("nan"))
        spent = account.epsilon(federation.privacy.delta)
        return metrics_of(nothing, spent, federation.budget_of(site))

    return SiteTurn(int(config[R.SERVER_ROUND]), received, data, honest, idle)


def train_locally(
    model: nn.Module,
    config: ConfigRecord,
    context: Context,
    federation: Federation,
    site: SiteSettings,
    data: SiteData,
) -> MetricRecord:
    """Train ``model`` in place for this round if the budget can pay; the metrics either way.

    The noise is planned for the whole run (rounds x epochs), the privacy
    account is read from and written back to ``context.state``. A round the
    budget cannot afford leaves the model as it was and says so in the
    metrics (``budget-exhausted``).
    """
    account = PrivacyAccount.from_record(context.state.get(STATE_KEY))
    privacy = federation.privacy
    budget = federation.budget_of(site)
    steps = steps_per_epoch(len(data.train), int(config[R.BATCH_SIZE]))
    dp = None
    if privacy.enabled:
        dp = DPPlan(
            plan_noise(budget, privacy.delta, 1 / steps, steps * _planned_epochs(config)),
            privacy.max_grad_norm,
        )
        spent = account.epsilon(privacy.delta)
        after = account.epsilon_after(
            dp.noise_multiplier, 1 / steps, steps * int(config[R.LOCAL_EPOCHS]), privacy.delta
        )
        if after > budget:
            refusal = BudgetExhausted(site.name, spent, after, budget)
            log(WARNING, "%s", refusal)
            return _refusal_metrics(refusal)
    plan = TrainPlan(
        epochs=int(config[R.LOCAL_EPOCHS]),
        batch_size=int(config[R.BATCH_SIZE]),
        learning_rate=scheduled_learning_rate(
            float(config[R.LEARNING_RATE]),
            str(config.get(R.LR_SCHEDULE, "constant")),
            int(config[R.SERVER_ROUND]),
            int(config[R.NUM_ROUNDS]),
        ),
        optimizer=str(config.get(R.OPTIMIZER, "sgd")),
        proximal_mu=float(config.get(R.PROXIMAL_MU, 0.0)),
        dp=dp,
    )
    seed = (
        int(config[R.SEED]) * 100_003
        + int(config[R.SERVER_ROUND]) * 1009
        + _index(federation, site)
    )
    scores = train(model, data.train, data.num_classes, plan, account, seed)
    if account.history:
        context.state[STATE_KEY] = account.to_record()
    return metrics_of(scores, account.epsilon(privacy.delta), budget)


def evaluate_round(
    msg: Message, context: Context, federation: Federation, site: SiteSettings
) -> RecordDict:
    """Scores of the received model on this site's held-out test split."""
    data = site_data(federation, site)
    model = reading_network(spec_of(msg.content[R.CONFIG]))
    model.load_state_dict(to_state_dict(msg.content[R.ARRAYS]))
    return site_reply(site, test_metrics(model, context, federation, site, data))


def test_metrics(
    model: nn.Module, context: Context, federation: Federation, site: SiteSettings, data: SiteData
) -> MetricRecord:
    """Scores of ``model`` on the site's held-out test split, with the epsilon spent so far.

    Accuracy is at the site's own operating point, chosen on its training data.
    """
    account = PrivacyAccount.from_record(context.state.get(STATE_KEY))
    scores, membership = evaluate(model, data.test, data.num_classes, calibration=data.train)
    spent = account.epsilon(federation.privacy.delta)
    metrics = metrics_of(scores, spent, federation.budget_of(site))
    metrics[R.MEMBERSHIP_AUC] = membership
    return metrics


def spec_of(config: ConfigRecord) -> ModelSpec:
    """The network the ServerApp asked for (name and shape travel in the config)."""
    return ModelSpec(
        str(config[R.MODEL]),
        int(config[R.SPATIAL_DIMS]),
        int(config[R.IN_CHANNELS]),
        int(config[R.OUT_CHANNELS]),
    )


def _model_from(msg: Message) -> nn.Module:
    model = build_model(spec_of(msg.content[R.CONFIG]))
    model.load_state_dict(to_state_dict(msg.content[R.ARRAYS]))
    return model


def _planned_epochs(config: ConfigRecord) -> int:
    return int(config[R.NUM_ROUNDS]) * int(config[R.LOCAL_EPOCHS])


def _index(federation: Federation, site: SiteSettings) -> int:
    return [s.name for s in federation.sites].index(site.name)


def metrics_of(scores: Scores, epsilon: float, budget: float) -> MetricRecord:
    return MetricRecord(
        {
            R.NUM_EXAMPLES: scores.num_examples,
            R.LOSS: scores.loss,
            R.AUC: scores.auc,
            R.ACCURACY: scores.accuracy,
            R.EPSILON: epsilon,
            R.EPSILON_BUDGET: budget,
        }
    )


def _refusal_metrics(refusal: BudgetExhausted) -> MetricRecord:
    return MetricRecord(
        {
            R.NUM_EXAMPLES: 0,
            R.EPSILON: refusal.spent,
            R.EPSILON_BUDGET: refusal.budget,
            R.BUDGET_EXHAUSTED: 1,
        }
    )


def site_record(site: SiteSettings) -> ConfigRecord:
    """The site's public identity, attached to every reply."""
    return ConfigRecord({R.SITE_NAME: site.name, R.SITE_COUNTRY: site.country})


def site_reply(
    site: SiteSettings, metrics: MetricRecord, arrays: ArrayRecord | None = None
) -> RecordDict:
    content = RecordDict({R.METRICS: metrics, R.SITE: site_record(site)})
    if arrays is not None:
        content[R.ARRAYS] = arrays
    return content
