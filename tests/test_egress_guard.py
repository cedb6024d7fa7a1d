"""The egress guard: a ClientApp trying to send what it must not is stopped and recorded."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
from conftest import deployed_site_folder, pin_roster_of
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flowerbed.config import load_federation, save_federation
from flowerbed.hospital_client.audit_mod import make_audit_mod
from flowerbed.hospital_client.egress_guard import EgressRefused
from flowerbed.hospital_client.identity import resolve_site
from flowerbed.models.factory import build_model
from flowerbed.protocol import records as R
from flowerbed.protocol.model_spec import ModelSpec

pytestmark = pytest.mark.usefixtures("task_identity")

SPEC = ModelSpec("small-cnn", 2, 1, 2, (28, 28))
SITE = {R.SITE_NAME: "berlin", R.SITE_COUNTRY: "DE"}


@pytest.fixture
def federation_file(tmp_path):
    federation = load_federation(
        None,
        {
            "sites": [{"name": "berlin", "country": "DE"}, {"name": "paris", "country": "FR"}],
            "residency": {"DE": ["DE"]},
            "coordinator": {"country": "DE"},
        },
    )
    path = tmp_path / "federation.toml"
    save_federation(federation, path)
    return path


def app_replying(federation_file, ledgers, reply: Callable[[Message], RecordDict]) -> ClientApp:
    """A ClientApp (behind the real guard and ledger) whose train handler replies ``reply``."""
    app = ClientApp(
        mods=[make_audit_mod(lambda context: resolve_site(context, str(federation_file)), ledgers)]
    )

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        return Message(reply(msg), reply_to=msg)

    return app


def instruction(**extra) -> Message:
    config = ConfigRecord(
        {
            R.SERVER_ROUND: 1,
            **SPEC.to_config(),
        }
    )
    content = RecordDict({R.CONFIG: config, **extra})
    return Message(content, dst_node_id=1, message_type="train")


def context(sites: int = 2) -> Context:
    return Context(1, 1, {"partition-id": 0, "num-partitions": sites}, RecordDict(), {})


def honest(msg: Message) -> RecordDict:
    return RecordDict(
        {
            R.ARRAYS: ArrayRecord(build_model(SPEC).state_dict()),
            R.METRICS: MetricRecord({R.NUM_EXAMPLES: 10, R.AUC: 0.9, R.EPSILON: 1.0}),
            R.SITE: ConfigRecord(SITE),
        }
    )


def with_record(name: str, record) -> Callable[[Message], RecordDict]:
    def reply(msg: Message) -> RecordDict:
        content = honest(msg)
        content[name] = record
        return content

    return reply


def last_entry(ledgers) -> dict:
    return json.loads((ledgers / "berlin.jsonl").read_text().splitlines()[-1])


def test_an_honest_reply_leaves_with_a_signed_ledger_head(federation_file, tmp_path):
    app = app_replying(federation_file, str(tmp_path), honest)
    reply = app(instruction(), context())
    head = reply.content[R.LEDGER_HEAD]
    assert head["party"] == "berlin" and head["index"] == last_entry(tmp_path)["index"]
    assert last_entry(tmp_path)["carries"] == [R.ARRAYS, R.METRICS, R.SITE]


IMAGES = ArrayRecord({"images": torch.rand(8, 1, 28, 28)})
ATTEMPTS = {
    "an image batch as its own record": (with_record("images", IMAGES), "'images'"),
    "an image batch as parameters": (
        with_record(R.ARRAYS, ArrayRecord({"batch": torch.rand(8, 1, 28, 28)})),
        "not the declared small-cnn's parameters",
    ),
    "parameters of the wrong shape": (
        with_record(
            R.ARRAYS,
            ArrayRecord(
                {
                    name: tensor.unsqueeze(-1)
                    for name, tensor in build_model(SPEC).state_dict().items()
                }
            ),
        ),
        "is not a declared parameter",
    ),
    "labels as a metric": (
        with_record(R.METRICS, MetricRecord({R.ACCURACY: [0.0, 1.0, 1.0]})),
        "is not a single number",
    ),
    "an undeclared metric": (
        with_record(R.METRICS, MetricRecord({"patients-over-80": 3})),
        "metric 'patients-over-80'",
    ),
    "a file path": (
        with_record(R.SITE, ConfigRecord({**SITE, "data": "/data/scans/p001.png"})),
        "site record key 'data'",
    ),
    "labels as a model sketch": (
        with_record(
            R.PROBE, ConfigRecord({R.PROBE_DIGEST: "0" * 64, R.PROBE_SKETCH: [0.0, 1.0, 1.0]})
        ),
        "probe sketch is not 64 finite numbers",
    ),
    "a note beside the probe answer": (
        with_record(R.PROBE, ConfigRecord({R.PROBE_DIGEST: "0" * 64, "ward": "oncology"})),
        "probe answer is not a single sha256 digest",
    ),
    "a path in a record of its own": (
        with_record("notes", ConfigRecord({"path": "/data/scans"})),
        "record 'notes'",
    ),
}


@pytest.mark.parametrize("attempt", list(ATTEMPTS))
def test_a_site_trying_to_send_what_it_must_not_is_stopped_and_recorded(
    federation_file, tmp_path, attempt
):
    reply, reason = ATTEMPTS[attempt]
    app = app_replying(federation_file, str(tmp_path), reply)
    with pytest.raises(EgressRefused, match=reason):
        app(instruction(), context())
    refusal = last_entry(tmp_path)
    assert refusal["kind"] == "refused" and reason.strip("'") in refusal["reason"]
    assert "signature" in refusal


def test_a_transfer_to_a_forbidden_country_is_refused_even_when_scheduled(
    federation_file, tmp_path
):
    def seal_for_paris(msg: Message) -> RecordDict:
        content = honest(msg)
        del content[R.ARRAYS]
        content[R.SEALED] = ConfigRecord({"paris": b"\x00" * 64})
        return content

    scheduled = instruction(**{R.SEND_TO: ConfigRecord({R.SEND_TO: ["paris"]})})
    app = app_replying(federation_file, str(tmp_path), seal_for_paris)
    with pytest.raises(EgressRefused, match="paris in FR: the residency policy of DE forbids"):
        app(scheduled, context())


def test_parameters_for_a_coordinator_in_a_forbidden_country_are_refused(tmp_path):
    federation = load_federation(
        None,
        {
            "sites": [{"name": "berlin", "country": "DE"}],
            "residency": {"DE": ["DE"]},
            "coordinator": {"country": "FR"},
        },
    )
    save_federation(federation, tmp_path / "federation.toml")
    app = app_replying(tmp_path / "federation.toml", str(tmp_path), honest)
    with pytest.raises(EgressRefused, match="coordinator in FR"):
        app(instruction(), context(sites=1))


def test_an_inbound_message_with_an_unknown_record_is_refused(federation_file, tmp_path):
    app = app_replying(federation_file, str(tmp_path), honest)
    smuggled = instruction(**{"exfiltrate": ConfigRecord({"to": "http://example.org"})})
    with pytest.raises(EgressRefused, match="inbound record 'exfiltrate'"):
        app(smuggled, context())


def test_a_deployed_sites_ledger_is_its_own_file_fsynced_entry_by_entry(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr("flowerbed.audit.ledger.os.fsync", synced.append)
    app = ClientApp(mods=[make_audit_mod(lambda context: resolve_site(context, None), None)])

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        return Message(honest(msg), reply_to=msg)

    folder = deployed_site_folder(tmp_path / "berlin", "berlin", "DE")
    pin_roster_of(folder)
    own = folder.ledger_path
    node_config = {"site": str(folder.site_file)}
    reply = app(instruction(), Context(1, 1, node_config, RecordDict(), {}))
    entries = [json.loads(line) for line in own.read_text().splitlines()]
    assert [e.get("direction") for e in entries] == [None, "in", "out"]  # genesis first
    assert reply.content[R.LEDGER_HEAD]["index"] == 2
    assert len(synced) == 3  # one fsync per entry


def test_simulated_sites_ledgers_are_flushed_without_fsync(federation_file, tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr("flowerbed.audit.ledger.os.fsync", synced.append)
    app_replying(federation_file, str(tmp_path), honest)(instruction(), context())
    assert len((tmp_path / "berlin.jsonl").read_text().splitlines()) == 3
    assert synced == []
