"""The hospital's Flower ClientApp: train and evaluate on this site's own data only.

Replies carry model parameters, the declared metrics of ``flowerbed.records``
and the site's public identity (name, country): nothing else leaves.
The site's privacy account lives in ``context.state``, so it survives the
per-message subprocess of a deployed SuperNode.
"""

from __future__ import annotations

from logging import WARNING

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log

from flowerbed import records as R
from flowerbed.config import Federation, SiteSettings
from flowerbed.datasets import SiteData, site_data
from flowerbed.hospital_client.identity import resolve_site
from flowerbed.hospital_client.scoring import Scores
from flowerbed.hospital_client.training import DPPlan, TrainPlan, evaluate, steps_per_epoch, train
from flowerbed.models import ModelSpec, build_model
from flowerbed.privacy import BudgetExhausted, PrivacyAccount, plan_noise
from flowerbed.privacy.accounting import STATE_KEY


def make_client_app(federation_file: str | None = None) -> ClientApp:
    """A ClientApp bound to ``federation_file``, or reading it from the run config if None."""
    app = ClientApp()

    def site_of(context: Context) -> tuple[Federation, SiteSettings]:
        path = federation_file or context.run_config.get(R.FEDERATION_FILE)
        return resolve_site(context, None if path is None else str(path))

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        federation, site = site_of(context)
        return Message(train_round(msg, context, federation, site), reply_to=msg)

    @app.evaluate()
    def _evaluate(msg: Message, context: Context) -> Message:
        federation, site = site_of(context)
        return Message(evaluate_round(msg, context, federation, site), reply_to=msg)

    return app


def train_round(
    msg: Message, context: Context, federation: Federation, site: SiteSettings
) -> RecordDict:
    """One round of local training, or a refusal if the budget cannot pay for it."""
    config = msg.content[R.CONFIG]
    data = site_data(federation, site)
    model = _model_from(msg, data)
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
            return _reply(site, _refusal_metrics(refusal))
    plan = TrainPlan(
        epochs=int(config[R.LOCAL_EPOCHS]),
        batch_size=int(config[R.BATCH_SIZE]),
        learning_rate=float(config[R.LEARNING_RATE]),
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
    metrics = _metrics(scores, account.epsilon(privacy.delta), budget)
    return _reply(site, metrics, ArrayRecord(model.state_dict()))


def evaluate_round(
    msg: Message, context: Context, federation: Federation, site: SiteSettings
) -> RecordDict:
    """Scores of the received model on this site's held-out test split."""
    data = site_data(federation, site)
    model = _model_from(msg, data)
    account = PrivacyAccount.from_record(context.state.get(STATE_KEY))
    scores = evaluate(model, data.test, data.num_classes)
    spent = account.epsilon(federation.privacy.delta)
    return _reply(site, _metrics(scores, spent, federation.budget_of(site)))


def _model_from(msg: Message, data: SiteData):
    config = msg.content[R.CONFIG]
    spec = ModelSpec(
        str(config[R.MODEL]),
        int(config[R.SPATIAL_DIMS]),
        int(config[R.IN_CHANNELS]),
        int(config[R.OUT_CHANNELS]),
    )
    model = build_model(spec)
    model.load_state_dict(msg.content[R.ARRAYS].to_torch_state_dict())
    return model


def _planned_epochs(config: ConfigRecord) -> int:
    return int(config[R.NUM_ROUNDS]) * int(config[R.LOCAL_EPOCHS])


def _index(federation: Federation, site: SiteSettings) -> int:
    return [s.name for s in federation.sites].index(site.name)


def _metrics(scores: Scores, epsilon: float, budget: float) -> MetricRecord:
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


def _reply(site: SiteSettings, metrics: MetricRecord, arrays: ArrayRecord | None = None):
    content = RecordDict(
        {
            R.METRICS: metrics,
            R.SITE: ConfigRecord({R.SITE_NAME: site.name, R.SITE_COUNTRY: site.country}),
        }
    )
    if arrays is not None:
        content[R.ARRAYS] = arrays
    return content


app = make_client_app()
