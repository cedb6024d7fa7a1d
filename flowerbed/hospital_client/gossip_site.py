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

import dataclasses
import io
from logging import WARNING
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common.logger import log

from flowerbed import records as R
from flowerbed.arrays import to_state_dict
from flowerbed.config import Federation, SiteSettings
from flowerbed.datasets import site_data
from flowerbed.honesty import (
    MIN_FOR_MEDIAN,
    distance,
    far_out,
    finite,
    median_model,
    probe_answer,
    probe_digest,
    same_sketch,
    sketch,
    unrelated,
)
from flowerbed.hospital_client.faults import behave
from flowerbed.hospital_client.identity import deployed_site
from flowerbed.hospital_client.mixing import mix
from flowerbed.hospital_client.site_round import (
    site_record,
    site_turn,
    spec_of,
    test_metrics,
)
from flowerbed.models import ModelSpec, build_model
from flowerbed.privacy.sealing import Envelope, SealError, SiteKeys, open_sealed, seal

KEYS_STATE = "gossip-keys"
MODEL_STATE = "gossip-model"
PRIVATE_KEY = "x25519-private-key"
MODEL_FILE = "model.pt"
DEFAULT_MIXING = "average"

State = dict[str, torch.Tensor]


def site_keys(context: Context) -> SiteKeys:
    """This site's X25519 key pair: a deployed site's own, from its site folder; a
    simulated site's made on first use and kept in ``context.state``."""
    folder = deployed_site(context)
    if folder is not None:
        return folder.sealing_keys
    record = context.state.get(KEYS_STATE)
    if record is not None:
        return SiteKeys.from_bytes(bytes(record[PRIVATE_KEY]))
    keys = SiteKeys.generate()
    context.state[KEYS_STATE] = ConfigRecord({PRIVATE_KEY: keys.private_bytes()})
    return keys


def identity(context: Context, federation: Federation, site: SiteSettings) -> RecordDict:
    """The roll-call answer: name, country, public key (what the relay forwards to this
    site's neighbours) and the kind of images it holds (so one model fits every site)."""
    data = site_data(federation, site)
    return RecordDict(
        {
            R.SITE: ConfigRecord(
                {
                    R.SITE_NAME: site.name,
                    R.SITE_COUNTRY: site.country,
                    R.SITE_PUBLIC_KEY: site_keys(context).public_bytes(),
                    R.SITE_SAMPLE_SHAPE: [int(d) for d in data.sample_shape],
                    R.SITE_CLASSES: int(data.num_classes),
                }
            )
        }
    )


def state_to_bytes(state: State) -> bytes:
    """Parameters as an ``.npz`` (no pickle: a payload can never run code when loaded)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: tensor.detach().cpu().numpy() for name, tensor in state.items()})
    return buffer.getvalue()


def state_from_bytes(raw: bytes, like: State) -> State:
    """Parameters from ``state_to_bytes``; ``ValueError`` unless names and shapes match ``like``."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
            state = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"not a parameter archive ({err})") from None
    if state.keys() != like.keys() or any(state[k].shape != like[k].shape for k in like):
        raise ValueError("parameters do not fit this site's model")
    return state


def _own_state(context: Context, spec: ModelSpec, seed: int) -> State:
    record = context.state.get(MODEL_STATE)
    if record is not None:
        return to_state_dict(record)
    torch.manual_seed(seed)  # every site starts from the same seeded model
    return build_model(spec).state_dict()


def _open_inbox(
    msg: Message, keys: SiteKeys, site: str, own: State
) -> tuple[dict[str, tuple[float, State]], int]:
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
) -> RecordDict:
    """Open the inbox and mix; evaluate and keep the mixed model; train; seal for the next.

    The mixed model is the site's model of the previous round (the one its
    test scores and its home copy describe): it holds the neighbours' last
    training, as FedAvg's global model holds every site's. The relay's last
    message asks only to mix (``mix-only``), so the last round's training
    is mixed in and scored too.
    """
    config = msg.content[R.CONFIG]
    spec = spec_of(config)
    keys = site_keys(context)
    data = site_data(federation, site)
    own = _own_state(context, spec, int(config[R.SEED]))
    neighbours, rejected = _open_inbox(msg, keys, site.name, own)
    broken = {peer for peer, (_, state) in neighbours.items() if not finite(state)}
    neighbours = {peer: opened for peer, opened in neighbours.items() if peer not in broken}
    flags = {**check_neighbours(msg, spec, own, neighbours), **dict.fromkeys(broken, R.NON_FINITE)}
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
    state, content[R.METRICS] = behave(federation, site, turn)
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


def check_neighbours(
    msg: Message, spec: ModelSpec, own: State, neighbours: dict[str, tuple[float, State]]
) -> dict[str, str]:
    """Neighbour -> a ``PEER_FLAGS`` code, for payloads that fail the honesty checks.

    A payload must be the model whose probe answer and sketch its sender gave
    the relay (a sender that seals one model and claims another, or sends
    different models to different neighbours, fails: the relay's check that
    a site trained rests on the sketch), must share a direction with the
    coordinate-wise median of this site's own model and its neighbours'
    (neighbours train from mixes of each other's models; a random model
    shares none; the median keeps one random model, the site's own included,
    from setting the reference), and must not lie far out of line with the
    other neighbours' (a random or scaled model).
    """
    claims = msg.content.config_records.get(R.PROBE_CLAIMS, {})
    sketches = msg.content.config_records.get(R.SKETCH_CLAIMS, {})
    seed = int(msg.content[R.CONFIG].get(R.PREVIOUS_PROBE_SEED, 0))
    run_seed = int(msg.content[R.CONFIG].get(R.SEED, 0))
    peers = list(neighbours)
    states = [neighbours[peer][1] for peer in peers]
    models = [own, *states]
    reference = median_model(models) if len(models) >= MIN_FOR_MEDIAN else own
    random_models = unrelated(states, reference)
    flags = {}
    for index, (peer, state) in enumerate(zip(peers, states, strict=True)):
        if (peer in claims and probe_digest(spec, state, seed) != str(claims[peer])) or (
            peer in sketches and not same_sketch(sketch(state, run_seed), sketches[peer])
        ):
            flags[peer] = "mismatch"
        elif index in random_models:
            flags[peer] = "unrelated"
    far = far_out([distance(state, own) for state in states])
    for index in far:
        flags.setdefault(peers[index], "far")
    return flags


def _save_home(
    context: Context, homes: str | None, name: str, state: State, spec: ModelSpec
) -> None:
    """Keep the site's current model at home, where the site (not the relay) can use it."""
    folder = deployed_site(context)
    home = folder.home if folder is not None else homes and Path(homes) / name
    if not home:
        return
    path = Path(str(home))
    path.mkdir(parents=True, exist_ok=True)
    partial = path / (MODEL_FILE + ".tmp")
    torch.save({"spec": dataclasses.asdict(spec), "state_dict": state}, partial)
    partial.replace(path / MODEL_FILE)  # atomic: a crash never leaves half a model


def load_home_model(home: Path) -> State:
    """A site's model as kept at home."""
    return torch.load(Path(home) / MODEL_FILE, weights_only=True)["state_dict"]
