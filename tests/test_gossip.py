"""The gossip protocol end to end: the real relay, the real ClientApp, real sealing.

Messages go through ``InProcessGrid`` (Flower's Grid interface, delivered in
this process), so many rounds take milliseconds. With training switched off
the sites only mix, and the consensus a topology reaches can be checked
against what its mixing matrix predicts.
"""

from __future__ import annotations

import pytest
import torch
from flwr.app import ConfigRecord, MetricRecord
from in_process_grid import FIRST_NODE, RUN_ID, InProcessGrid

from flowerbed.config import load_federation, save_federation
from flowerbed.errors import ConfigError
from flowerbed.hospital_client import gossip_round, local_round
from flowerbed.hospital_client.app import make_client_app
from flowerbed.hospital_client.keys import SEALING_PRIVATE_KEY, SEALING_STATE
from flowerbed.models.factory import build_model
from flowerbed.models.model_file import MODEL_FILE, load_state
from flowerbed.privacy.sealing import Envelope, SealError, SiteKeys, open_sealed
from flowerbed.protocol import records as R
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.run_folder import RunFolder
from flowerbed.run_layout import SITES_DIR
from flowerbed.server_app import coordinate
from flowerbed.simulation import consensus_distance
from flowerbed.strategies.gossip import plan_topology

pytestmark = pytest.mark.usefixtures("task_identity")

SPEC = ModelSpec("small-cnn", 2, 1, 2, (28, 28))


def initial_state(index: int) -> dict[str, torch.Tensor]:
    """The distinct start of the site ``index`` (from 0) under ``no_training``."""
    torch.manual_seed(index + 1)
    return build_model(SPEC).state_dict()


@pytest.fixture
def no_training(monkeypatch):
    """Sites only mix: local training is replaced by a no-op; each site starts elsewhere."""

    def skip_training(model, config, context, federation, site, data) -> MetricRecord:
        return MetricRecord({R.NUM_EXAMPLES: len(data.train), R.EPSILON: 0.0, R.EPSILON_BUDGET: 8})

    def distinct_start(context, spec, seed):
        record = context.state.get(gossip_round.MODEL_STATE)
        return (
            record.to_torch_state_dict() if record else initial_state(context.node_id - FIRST_NODE)
        )

    monkeypatch.setattr(local_round, "train_locally", skip_training)
    monkeypatch.setattr(gossip_round, "_own_state", distinct_start)


class Gossip:
    """A gossip federation wired to an in-process grid; ``run()`` plays every round."""

    def __init__(self, tmp_path, sites, topology: str, rounds: int, residency=None) -> None:
        self.federation = load_federation(
            None,
            {
                "run": {"strategy": "gossip", "topology": topology, "rounds": rounds},
                "privacy": {"enabled": False},
                "sites": sites,
                "residency": residency or {},
            },
        )
        self.path = tmp_path / "run"
        self.folder = RunFolder.create(self.path, self.federation, on_round=self._measure)
        save_federation(self.federation, tmp_path / "federation.toml")
        app = make_client_app(str(tmp_path / "federation.toml"), str(self.path / SITES_DIR))
        self.grid = InProcessGrid(app, len(sites))
        self.consensus: list[float] = []
        self.snapshots: list[dict[str, dict[str, torch.Tensor]]] = []

    def _measure(self, server_round, rows) -> None:
        homes = [site.name for site in self.federation.sites]
        present = [n for n in homes if (self.path / SITES_DIR / n / "model.pt").exists()]
        states = self.home_models(present)
        self.consensus.append(consensus_distance(states))
        self.snapshots.append(dict(zip(present, states, strict=True)))

    def consensus_of(self, names: list[str]) -> list[float]:
        """Consensus distance among ``names`` after each round."""
        return [consensus_distance([snap[n] for n in names]) for snap in self.snapshots]

    def home_models(self, names=None) -> list[dict[str, torch.Tensor]]:
        names = names or [site.name for site in self.federation.sites]
        return [load_state(self.path / SITES_DIR / name / MODEL_FILE) for name in names]

    def run(self) -> None:
        coordinate(self.grid, self.federation, self.folder)

    def keys_of(self, name: str) -> SiteKeys:
        index = [site.name for site in self.federation.sites].index(name)
        record = self.grid.contexts[FIRST_NODE + index].state[SEALING_STATE]
        return SiteKeys.from_bytes(bytes(record[SEALING_PRIVATE_KEY]))


def sites(count: int, countries=("DE", "FR")) -> list[dict]:
    return [{"name": f"site-{i}", "country": countries[i % len(countries)]} for i in range(count)]


def average(states):
    return {name: torch.stack([s[name] for s in states]).mean(dim=0) for name in states[0]}


def test_complete_graph_reaches_the_exact_average_in_one_round(tmp_path, no_training):
    gossip = Gossip(tmp_path, sites(5), "complete", rounds=1)
    gossip.run()
    starts = [initial_state(index) for index in range(5)]
    assert consensus_distance(starts) > 1e-4
    expected = average(starts)
    for state in gossip.home_models():
        for name, tensor in expected.items():
            torch.testing.assert_close(state[name], tensor, rtol=0, atol=1e-6)
    assert gossip.consensus == [pytest.approx(0.0, abs=1e-12)]


def test_one_peer_exponential_graph_averages_2_to_the_k_sites_in_k_rounds(tmp_path, no_training):
    gossip = Gossip(tmp_path, sites(8), "one-peer-exponential", rounds=3)
    gossip.run()
    # Rounds 1, 2, 3 mix over hops 1, 2, 4: exact after the third, not before.
    assert gossip.consensus[1] > 1e-6
    assert gossip.consensus[2] < 1e-12


def test_ring_shrinks_consensus_distance_at_the_rate_its_spectral_gap_predicts(
    tmp_path, no_training
):
    gossip = Gossip(tmp_path, sites(8), "ring", rounds=14)
    gossip.run()
    predicted = (1 - plan_topology(gossip.federation).spectral_gap()) ** 2
    pairs = zip(gossip.consensus, gossip.consensus[1:], strict=False)
    steps = [later / earlier for earlier, later in pairs]
    assert all(step <= predicted * 1.01 for step in steps[1:])  # never slower than the bound
    assert steps[-1] == pytest.approx(predicted, rel=0.02)  # and asymptotically exactly it


def test_relay_handles_only_ciphertext_that_only_the_addressee_opens(tmp_path, no_training):
    gossip = Gossip(tmp_path, sites(4), "complete", rounds=3)
    gossip.run()
    stranger = SiteKeys.generate()
    opened = 0
    for message in gossip.grid.relayed:
        assert not message.content.array_records, "the relay must never carry parameters"
        if message.has_error() or R.SERVER_ROUND not in message.content.get(R.CONFIG, {}):
            continue  # an error, or the roll call's question
        server_round = int(message.content[R.CONFIG][R.SERVER_ROUND])
        sealed_in, receiver = server_round - 1, None
        for sender, blob in message.content.config_records.get(R.INBOX, ConfigRecord()).items():
            receiver = _addressee(gossip, message)
            envelope = Envelope(RUN_ID, sealed_in, sender, receiver)
            sender_public = gossip.keys_of(sender).public_bytes()
            with pytest.raises(SealError):
                open_sealed(bytes(blob), stranger, sender_public, envelope)
            open_sealed(bytes(blob), gossip.keys_of(receiver), sender_public, envelope)
            opened += 1
    assert opened == 4 * 3 * 3  # 4 sites, 3 neighbours each, one inbox after each round


def _addressee(gossip: Gossip, message) -> str:
    return gossip.federation.sites[message.metadata.dst_node_id - FIRST_NODE].name


def _rejected(gossip: Gossip, server_round: int) -> dict[str, int]:
    """Per site, how many payloads it rejected in ``server_round`` (from its replies)."""
    counts = {}
    for message in gossip.grid.relayed:
        if message.has_error():
            continue
        if R.SEALED in message.content and message.metadata.group_id == str(server_round):
            site = str(message.content[R.SITE][R.SITE_NAME])
            counts[site] = int(message.content[R.TEST_METRICS][R.REJECTED_PAYLOADS])
    return counts


def _inbox_of(message) -> ConfigRecord | None:
    return message.content.config_records.get(R.INBOX) if not message.has_error() else None


def test_receiver_rejects_tampered_replayed_and_readdressed_payloads(tmp_path, no_training):
    gossip = Gossip(tmp_path, sites(4), "complete", rounds=4)
    seen: dict[tuple[int, str], bytes] = {}

    def attack(message) -> None:
        inbox = _inbox_of(message)
        if not inbox:
            return
        server_round = int(message.content[R.CONFIG][R.SERVER_ROUND])
        node = message.metadata.dst_node_id - FIRST_NODE  # the site's index
        for sender, blob in inbox.items():
            seen[node, sender] = bytes(blob)
        if server_round == 2 and node == 0:  # flip one byte of site-0's first payload
            sender = sorted(inbox.keys())[0]
            blob = bytearray(inbox[sender])
            blob[-1] ^= 1
            inbox[sender] = bytes(blob)
        if server_round == 3 and node == 1:  # replay round 1's payload in round 2's place
            sender = sorted(inbox.keys())[0]
            inbox[sender] = replayed[node, sender]
        if server_round == 4 and node == 2:  # hand site-2 what site-3 was sent
            sender = "site-0"
            inbox[sender] = seen[3, sender]

    replayed: dict[tuple[int, str], bytes] = {}

    def remember_then_attack(message) -> None:
        inbox = _inbox_of(message)
        if inbox and int(message.content[R.CONFIG][R.SERVER_ROUND]) == 2:
            node = message.metadata.dst_node_id - FIRST_NODE
            replayed.update({(node, s): bytes(b) for s, b in inbox.items()})
        attack(message)

    gossip.grid.in_transit = remember_then_attack
    gossip.run()
    assert _rejected(gossip, 2) == {"site-0": 1, "site-1": 0, "site-2": 0, "site-3": 0}
    assert _rejected(gossip, 3)["site-1"] == 1
    assert sum(_rejected(gossip, 3).values()) == 1
    assert _rejected(gossip, 4)["site-2"] == 1
    assert gossip.folder.rounds_completed == 4


def test_a_site_dropping_out_mid_run_does_not_stop_it(tmp_path, no_training):
    gossip = Gossip(tmp_path, sites(5), "complete", rounds=4)
    third = FIRST_NODE + 2
    gossip.grid.down = lambda node, msg: node == third and msg.metadata.group_id in ("2", "3")
    gossip.run()
    status = (gossip.path / "status.json").read_text()
    assert '"completed"' in status and "node down" in status
    # While site-2 was away the others mixed among themselves...
    survivors = gossip.consensus_of(["site-0", "site-1", "site-3", "site-4"])
    assert survivors[1] < 1e-12
    # ...and once it is back it is mixed in again.
    assert gossip.consensus[-1] < 1e-12
    assert gossip.folder.rounds_completed == 4


def test_residency_policy_drops_forbidden_edges_and_they_are_never_scheduled(tmp_path, no_training):
    federation_sites = sites(6, countries=("DE", "FR", "IT"))
    gossip = Gossip(tmp_path, federation_sites, "complete", rounds=3, residency={"FR": ["IT"]})
    gossip.run()
    country = {site["name"]: site["country"] for site in federation_sites}
    checked = 0
    for message in gossip.grid.relayed:
        if message.has_error() or R.SEND_TO not in message.content:
            continue
        me = _addressee(gossip, message)
        to = list(message.content[R.SEND_TO][R.SEND_TO])
        heard = list(message.content[R.INBOX].keys())
        pairs = [(me, other) for other in to] + [(other, me) for other in heard]
        for sender, receiver in pairs:
            assert (country[sender], country[receiver]) != ("FR", "DE")
            checked += 1
    assert checked > 0
    assert consensus_distance(gossip.home_models()) < gossip.consensus[0]


def test_a_policy_that_disconnects_the_topology_refuses_to_start(tmp_path):
    federation = load_federation(
        None,
        {
            "run": {"strategy": "gossip", "topology": "complete"},
            "sites": sites(4),
            "residency": {"DE": ["DE"], "FR": ["FR"]},
        },
    )
    with pytest.raises(ConfigError, match=r"cuts the complete topology into 2 groups.*DE.*FR"):
        plan_topology(federation)
