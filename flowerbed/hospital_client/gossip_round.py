"""A site's gossip round: open, mix, evaluate, train, seal; one message each way.

The site keeps its own model in ``context.state`` between rounds (it
survives the per-message subprocess of a deployed SuperNode) and its mixed
model at home (``<home>/model.pt``), its model at the end of the run. There is no
global model: what arrives are sealed payloads from the neighbours the
relay scheduled, each opened with this site's X25519 key and bound to this
run, the previous round, the sender and this site.

Mixing uses the Metropolis-Hastings weights the relay computed over the
peers that answered last round (public scheduling facts, not data). A
payload that does not open or does not fit the model is rejected: its
weight falls back to the site's own model, and the count is reported. A
payload holding NaN or inf is dropped the same way, in either honesty mode,
and its sender flagged (``non-finite``).
A site whose privacy budget is spent still mixes and passes its model on:
mixing models already released under DP costs no privacy.
"""

from __future__ import annotations

from logging import WARNING

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common.logger import log

from flowerbed.config import Federation, SiteSettings
from flowerbed.datasets.source import site_data
from flowerbed.honesty import reasons
from flowerbed.honesty.neighbours import Neighbours, check_neighbours, non_finite
from flowerbed.honesty.probe import probe_answer
from flowerbed.honesty.sketch import sketch
from flowerbed.hospital_client.identity import site_record
from flowerbed.hospital_client.keys import sealing_keys, site_home
from flowerbed.hospital_client.local_round import site_turn, test_metrics
from flowerbed.hospital_client.mixing import mix
from flowerbed.hospital_client.site_folder import deployed_site
from flowerbed.hospital_client.turn import Act, State, honest
from flowerbed.models.factory import build_model
from flowerbed.models.model_file import MODEL_FILE, save_model
from flowerbed.privacy.sealing import Envelope, SealError, SiteKeys, open_sealed, seal
from flowerbed.protocol import records as R
from flowerbed.protocol.arrays import to_state_dict
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.protocol.payload import state_from_bytes, state_to_bytes

MODEL_STATE = "gossip-model"
DEFAULT_MIXING = "average"


def _own_state(context: Context, spec: ModelSpec, seed: int) -> State:
    record = context.state.get(MODEL_STATE)
    if record is not None:
        return to_state_dict(record)
    torch.manual_seed(seed)  # every site starts from the same seeded model
    return build_model(spec).state_dict()


def _open_inbox(msg: Message, keys: SiteKeys, site: str, own: State) -> tuple[Neighbours, int]:
    """Neighbours' opened payloads with their weights, and how many were rejected."""
    inbox, weights, peer_keys = (
        msg.content[R.INBOX],
        msg.content[R.MIX_WEIGHTS],
        msg.content[R.PEER_KEYS],
    )
    sent_in = int(msg.content[R.CONFIG][R.SERVER_ROUND]) - 1
    opened, rejected = {}, 0
    for sender, payload in inbox.items():
        envelope = Envelope(msg.metadata.run_id, sent_in, sender, site)
        try:
            plain = open_sealed(bytes(payload), keys, bytes(peer_keys[sender]), envelope)
            opened[sender] = (float(weights[sender]), state_from_bytes(plain, own))
        except (SealError, ValueError, KeyError) as err:
            rejected += 1
            log(WARNING, "%s rejected a payload from %s: %s", site, sender, err)
    return opened, rejected


def gossip_round(
    msg: Message,
    context: Context,
    federation: Federation,
    site: SiteSettings,
    homes: str | None,
    act: Act = honest,
) -> RecordDict:
    """Open the inbox and mix; evaluate and keep the mixed model; train; seal for the next.

    The mixed model is the site's model of the previous round (the one its
    test scores and its home copy describe): it holds the neighbours' last
    training, as FedAvg's global model holds every site's. The relay's last
    message asks only to mix (``mix-only``), so the last round's training
    is mixed in and scored too.
    """
    config = msg.content[R.CONFIG]
    spec = ModelSpec.from_config(config)
    keys = sealing_keys(context, site_home(homes, site.name))
    data = site_data(federation, site, checked=False)  # the roll call checked it
    own = _own_state(context, spec, int(config[R.SEED]))
    neighbours, rejected = _open_inbox(msg, keys, site.name, own)
    broken = non_finite(neighbours)
    neighbours = {peer: opened for peer, opened in neighbours.items() if peer not in broken}
    flags = {
        **check_neighbours(msg, spec, own, neighbours),
        **dict.fromkeys(broken, reasons.NON_FINITE),
    }
    if config.get(R.HONESTY) == "exclude":
        neighbours = {peer: opened for peer, opened in neighbours.items() if peer not in flags}
    mixed, disagreement = mix(str(config.get(R.MIXING, DEFAULT_MIXING)), own, neighbours)
    model = build_model(spec)
    model.load_state_dict(mixed)
    content = RecordDict({R.SITE: site_record(site)})
    if flags:
        content[R.FLAGS] = ConfigRecord(flags)
    if int(config[R.SERVER_ROUND]) > 1:
        scores = test_metrics(model, context, federation, site, data)
        scores[R.DISAGREEMENT] = disagreement
        scores[R.REJECTED_PAYLOADS] = rejected
        content[R.TEST_METRICS] = scores
        _save_home(context, homes, site.name, mixed, spec)
    if config.get(R.MIX_ONLY, False):
        return content
    turn = site_turn(model, config, context, federation, site, data, mixed)
    state, content[R.METRICS] = act(federation, site, turn)
    context.state[MODEL_STATE] = ArrayRecord(state)
    if R.PROBE_SEED in config:
        answer = probe_answer(spec, state, int(config[R.PROBE_SEED]))
        answer[R.PROBE_SKETCH] = sketch(state, int(config[R.SEED]))
        content[R.PROBE] = answer
    plain = state_to_bytes(state)
    peer_keys = msg.content[R.PEER_KEYS]
    content[R.SEALED] = ConfigRecord(
        {
            to: seal(
                plain,
                keys,
                bytes(peer_keys[to]),
                Envelope(msg.metadata.run_id, int(config[R.SERVER_ROUND]), site.name, to),
            )
            for to in msg.content[R.SEND_TO][R.SEND_TO]
        }
    )
    return content


def _save_home(
    context: Context, homes: str | None, name: str, state: State, spec: ModelSpec
) -> None:
    """Keep the site's current model at home, where the site (not the relay) can use it."""
    folder = deployed_site(context)
    path = folder.home if folder is not None else site_home(homes, name)
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    save_model(path / MODEL_FILE, state, spec)
