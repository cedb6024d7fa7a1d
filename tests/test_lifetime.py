"""A site's privacy budget lasts its data set's lifetime, not one run.

The ledger in the site folder is the record: a run the rest of the budget
cannot pay for is refused by the site at the roll call, signed into that
ledger, and ``flowerbed site budget`` prints the spend per run.
"""

from __future__ import annotations

import json

import pytest
from conftest import deployed_site_folder, flowerbed, pin_roster_of, train_instruction
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from flowerbed.hospital_client.app import make_client_app
from flowerbed.protocol import records as R

pytestmark = pytest.mark.usefixtures("task_identity")


def roll_call(roster_sha256: str, rounds: int = 1) -> Message:
    config = {R.NUM_ROUNDS: rounds, R.LOCAL_EPOCHS: 1, R.BATCH_SIZE: 32,
              R.ROSTER_SHA256: roster_sha256}  # fmt: skip
    return Message(
        RecordDict({R.CONFIG: ConfigRecord(config)}),
        dst_node_id=7,
        message_type=f"query.{R.IDENTITY_QUERY}",
    )


def test_a_run_past_the_lifetime_budget_is_refused_at_the_roll_call(tmp_path, monkeypatch, capsys):
    folder = deployed_site_folder(tmp_path / "munich", "munich", "DE", dp=True)
    roster = pin_roster_of(folder)
    app = make_client_app()

    def run(run_id: int) -> Context:  # a new Flower run: its own id, a fresh context.state
        monkeypatch.setattr(TaskIdentity, "_run_id", run_id, raising=False)
        return Context(run_id, 7, {"site": str(folder.site_file)}, RecordDict(), {})

    first = run(1)
    assert not app(roll_call(roster), first).has_error()
    trained = app(train_instruction(1, 1), first)
    metrics = trained.content[R.METRICS]
    assert 7.5 < metrics[R.EPSILON] <= 8 and metrics[R.EPSILON_LIFETIME] == metrics[R.EPSILON]
    second = run(2)
    refused = app(roll_call(roster), second)
    assert refused.has_error()
    reason = refused.error.reason
    assert "munich refuses this run: its data set has spent epsilon 7.9" in reason, reason
    assert "of its lifetime budget 8, and this run plans 7.9" in reason
    last = json.loads(folder.ledger_path.read_text().splitlines()[-1])
    assert last["kind"] == "refused" and last["run"] == 2 and "signature" in last
    code, said = flowerbed(monkeypatch, capsys, "site", "budget", str(folder.root))
    assert code == 0 and f"epsilon {metrics[R.EPSILON]:.3f} spent of 8 over 1 runs" in said
