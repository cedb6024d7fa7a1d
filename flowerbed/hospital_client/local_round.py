"""What every kind of round does at a site: train on its own data, score on its own test split.

Server-side rounds (``server_rounds``) and gossip rounds (``gossip_round``)
differ in where the model comes from and where it goes; both train and
score it here. The site's privacy account lives in ``context.state``, so it
survives the per-message subprocess of a deployed SuperNode.

A round's training is a ``SiteTurn`` handed to an ``Act`` (``turn``); what
a run plans and has spent is ``dp_plan``'s, which the roll call uses too.
"""

from __future__ import annotations

from logging import WARNING

from flwr.app import ConfigRecord, Context, MetricRecord
from flwr.common.logger import log
from torch import nn

from flowerbed.config import Federation, SiteSettings
from flowerbed.datasets.base import SiteData
from flowerbed.hospital_client.dp_plan import planned_steps, spent, steps_per_epoch
from flowerbed.hospital_client.lifetime import earlier_runs
from flowerbed.hospital_client.scoring import Scores
from flowerbed.hospital_client.training import (
    DPPlan,
    TrainPlan,
    evaluate,
    scheduled_learning_rate,
    train,
)
from flowerbed.hospital_client.turn import SiteTurn, State
from flowerbed.privacy.accounting import STATE_KEY, BudgetExhausted, PrivacyAccount
from flowerbed.protocol import records as R


def site_turn(
    model: nn.Module,
    config: ConfigRecord,
    context: Context,
    federation: Federation,
    site: SiteSettings,
    data: SiteData,
    received: State,
) -> SiteTurn:
    """This round at this site: honest training of ``model``."""

    def trained(own: SiteData) -> tuple[State, MetricRecord]:
        metrics = train_locally(model, config, context, federation, site, own)
        return model.state_dict(), metrics

    def idle() -> MetricRecord:
        nothing = Scores(0, float("nan"), float("nan"), float("nan"), float("nan"))
        return metrics_of(nothing, spent(context, federation), federation.budget_of(site))

    return SiteTurn(int(config[R.SERVER_ROUND]), received, data, trained, idle)


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
    dp, before = None, earlier_runs(context, config)
    if privacy.enabled:
        taken = account.history
        noise, rate, _ = planned_steps(federation, site, len(data.train), config, taken)[0]
        dp = DPPlan(noise, privacy.max_grad_norm)
        epoch = steps_per_epoch(len(data.train), int(config[R.BATCH_SIZE]))
        round_steps = epoch * int(config[R.LOCAL_EPOCHS])
        for of, limit, earlier in (
            ("run", budget, []),
            ("lifetime", federation.lifetime_budget_of(site), before),
        ):
            after = account.epsilon_after(noise, rate, round_steps, privacy.delta, earlier)
            if after > limit:
                spent_so_far = account.epsilon(privacy.delta, earlier)
                refusal = BudgetExhausted(site.name, spent_so_far, after, limit, of)
                log(WARNING, "%s", refusal)
                return _refusal_metrics(refusal)
    untrained = PrivacyAccount(list(account.history))
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
        augment=federation.data.augment,  # the site's own choice, never the coordinator's
    )
    seed = (
        int(config[R.SEED]) * 100_003
        + int(config[R.SERVER_ROUND]) * 1009
        + _index(federation, site)
    )
    scores = train(model, data.train, data.num_classes, plan, account, seed)
    if account.history:
        context.state[STATE_KEY] = account.to_record()
    metrics = metrics_of(scores, account.epsilon(privacy.delta), budget)
    taken = account.since(untrained)
    if taken:  # what the ledger keeps, and the auditor recomputes the epsilon from
        noises, rates, steps = (list(column) for column in zip(*taken, strict=True))
        metrics[R.DP_NOISE], metrics[R.DP_SAMPLE_RATE], metrics[R.DP_STEPS] = noises, rates, steps
        metrics[R.DP_DELTA] = privacy.delta
        metrics[R.EPSILON_LIFETIME] = account.epsilon(privacy.delta, before)
    return metrics


def test_metrics(
    model: nn.Module, context: Context, federation: Federation, site: SiteSettings, data: SiteData
) -> MetricRecord:
    """Scores of ``model`` on the site's held-out test split, with the epsilon spent so far.

    Accuracy is at the site's own operating point, chosen on its training data.
    """
    scores, leak = evaluate(
        model, data.test, data.num_classes, data.train, data.canaries, federation.privacy.delta
    )
    metrics = metrics_of(scores, spent(context, federation), federation.budget_of(site))
    metrics[R.MEMBERSHIP_AUC] = leak.auc
    metrics[R.MEMBERSHIP_TPR_1PCT] = leak.tpr_at_1pct
    metrics[R.MEMBERSHIP_TPR_01PCT] = leak.tpr_at_01pct
    metrics[R.CANARY_EPSILON] = leak.canary_epsilon
    return metrics


def _index(federation: Federation, site: SiteSettings) -> int:
    return [s.name for s in federation.sites].index(site.name)


def metrics_of(scores: Scores, epsilon: float, budget: float) -> MetricRecord:
    return MetricRecord(
        {
            R.NUM_EXAMPLES: scores.num_examples,
            R.LOSS: scores.loss,
            R.AUC: scores.auc,
            R.ACCURACY: scores.accuracy,
            R.DICE: scores.dice,
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
