"""A site's server-side round: train or evaluate the model the ServerApp sent.

Replies carry model parameters, the declared metrics of
``flowerbed.protocol.records`` and the site's public identity (name,
country): nothing else leaves.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict

from flowerbed.config import Federation, SiteSettings
from flowerbed.datasets.source import site_data
from flowerbed.honesty.probe import probe_answer
from flowerbed.hospital_client.identity import site_record
from flowerbed.hospital_client.local_round import site_turn, test_metrics
from flowerbed.hospital_client.turn import Act, honest
from flowerbed.models.factory import build_model, reading_network
from flowerbed.protocol import records as R
from flowerbed.protocol.arrays import to_state_dict
from flowerbed.protocol.model_spec import ModelSpec


def train_round(
    msg: Message, context: Context, federation: Federation, site: SiteSettings, act: Act = honest
) -> RecordDict:
    """One round of local training on the received model, or a refusal if the budget is spent."""
    data = site_data(federation, site, checked=False)  # the roll call checked it
    config = msg.content[R.CONFIG]
    spec = ModelSpec.from_config(config)
    model = build_model(spec)
    model.load_state_dict(to_state_dict(msg.content[R.ARRAYS]))
    received = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    state, metrics = act(
        federation, site, site_turn(model, config, context, federation, site, data, received)
    )
    trained = not metrics.get(R.BUDGET_EXHAUSTED, 0)
    content = site_reply(site, metrics, ArrayRecord(state) if trained else None)
    if trained and R.PROBE_SEED in config:
        content[R.PROBE] = probe_answer(spec, state, int(config[R.PROBE_SEED]))
    return content


def evaluate_round(
    msg: Message, context: Context, federation: Federation, site: SiteSettings
) -> RecordDict:
    """Scores of the received model on this site's held-out test split."""
    data = site_data(federation, site, checked=False)  # the roll call checked it
    model = reading_network(ModelSpec.from_config(msg.content[R.CONFIG]))
    model.load_state_dict(to_state_dict(msg.content[R.ARRAYS]))
    return site_reply(site, test_metrics(model, context, federation, site, data))


def site_reply(
    site: SiteSettings, metrics: MetricRecord, arrays: ArrayRecord | None = None
) -> RecordDict:
    content = RecordDict({R.METRICS: metrics, R.SITE: site_record(site)})
    if arrays is not None:
        content[R.ARRAYS] = arrays
    return content
