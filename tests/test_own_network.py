"""A hospital's own network (``package.module:function``): trained like a built-in, named by
the sha256 of its source, refused with the reason where it cannot be trained or trusted."""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest
from conftest import flowerbed, run_in_process, train_instruction
from flwr.app import ConfigRecord, Message, RecordDict

from flowerbed.audit.report import write_reports
from flowerbed.audit.verify import verify_run
from flowerbed.config import load_federation
from flowerbed.errors import ModelError, RunStopped
from flowerbed.hospital_client import app
from flowerbed.hospital_client.egress_guard import EgressRefused, check_inbound
from flowerbed.hospital_client.identity import own_network_code, roll_call_answer
from flowerbed.models.network_source import network_code
from flowerbed.protocol import records as R
from flowerbed.strategies import roll_call

NETWORK = "hospital_tiny_net:build"
SOURCE = '''
from torch import nn


def build(spatial_dims, in_channels, out_channels):
    """A classifier of any input size: one convolution, pooled, one linear layer."""
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    pool = nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d
    return nn.Sequential(
        conv(in_channels, 4, 3, padding=1), nn.ReLU(inplace=True), pool(1), nn.Flatten(),
        nn.Linear(4, out_channels),
    )


def in_place(spatial_dims, in_channels, out_channels):
    return InPlace()


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(28 * 28, 2)

    def forward(self, x):
        hidden = x.flatten(1)
        hidden.relu_()
        return self.head(hidden)
'''


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    """The hospital's module, importable as a site's environment would have it."""
    path = tmp_path / "code" / "hospital_tiny_net.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(path.parent))
    return path


def federation_with(network: str, **run):
    return load_federation(
        None,
        {
            "run": {"model": network, "rounds": 1, **run},
            "privacy": {"enabled": False},
            "sites": [{"name": "berlin", "country": "DE"}, {"name": "paris", "country": "FR"}],
        },
    )


def test_an_own_network_trains_and_the_report_names_it_with_its_sources_sha256(
    tmp_path, own_module, task_identity
):
    run, _ = run_in_process(tmp_path, federation_with(NETWORK))
    write_reports(run)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed", status
    report = json.loads((run / "report.json").read_text())
    sha = hashlib.sha256(own_module.read_bytes()).hexdigest()
    assert report["verdict"] == "verified"
    assert NETWORK in report["run"]["model"] and sha in report["run"]["model"]
    assert set(report["test_scores"]) == {"berlin", "paris"}


def test_a_site_refuses_an_own_network_its_config_does_not_name(own_module, task_identity):
    site_view = federation_with("small-cnn")
    msg = train_instruction(1, 1)
    msg.content[R.CONFIG][R.MODEL] = NETWORK
    del msg.content[R.ARRAYS]  # the network's name alone decides
    with pytest.raises(EgressRefused, match="not built in and this site's config does not"):
        check_inbound(msg, site_view)
    check_inbound(msg, federation_with(NETWORK))  # named by the site itself: accepted
    with pytest.raises(ModelError, match="does not name"):
        own_network_code(site_view, NETWORK, network_code(NETWORK))


def test_a_site_whose_copy_of_the_network_differs_refuses_at_the_roll_call(
    own_module, task_identity
):
    from conftest import site_context

    federation = federation_with(NETWORK)
    query = RecordDict(
        {R.CONFIG: ConfigRecord({R.NETWORK_QUERY: NETWORK, R.SITE_NETWORK_CODE: "0" * 64})}
    )
    with pytest.raises(ModelError, match="differs from the coordinator's"):
        roll_call_answer(site_context(), federation, federation.sites[0], query)
    query[R.CONFIG][R.SITE_NETWORK_CODE] = network_code(NETWORK)
    answer = roll_call_answer(site_context(), federation, federation.sites[0], query)
    assert answer[R.SITE][R.SITE_NETWORK_CODE] == network_code(NETWORK)
    assert isinstance(Message(answer, dst_node_id=1, message_type="query"), Message)


@pytest.mark.parametrize(
    ("network", "flags", "said"),
    [
        ("hospital_tiny_net:in_place", [], "fails under Opacus per-sample gradients"),
        ("hospital_tiny_net:nowhere", ["--no-dp"], "has no function nowhere"),
        ("no_such_module:build", ["--no-dp"], "module no_such_module cannot be imported"),
        ("unet", ["--no-dp"], "cannot run on images of shape [1, 28, 28]"),
        ("unet", ["--image-size", "32"], "gives outputs of shape [2, 2, 32, 32] but classif"),
    ],
)
def test_an_own_network_that_cannot_train_stops_the_cli_in_one_line(
    tmp_path, own_module, monkeypatch, capsys, network, flags, said
):
    code, printed = flowerbed(
        monkeypatch, capsys, "simulate", "--model", network, *flags, "--out", str(tmp_path / "r")
    )
    assert code == 1 and said in printed and "Traceback" not in printed, printed
    assert not (tmp_path / "r").exists()


def test_a_site_that_answers_with_other_code_stops_the_run_and_verify_names_it(
    tmp_path, own_module, task_identity, monkeypatch
):
    """A site whose own check was bypassed (its code changed) is held to the coordinator's
    hash at the roll call; had the coordinator let it pass, its ledger shows to the auditor
    which code it claimed."""
    honest = app.roll_call_answer

    def paris_runs_other_code(context, federation, site, query, homes):
        answer = honest(context, federation, site, query, homes)
        if site.name == "paris":
            answer[R.SITE][R.SITE_NETWORK_CODE] = "f" * 64
        return answer

    monkeypatch.setattr(app, "roll_call_answer", paris_runs_other_code)
    with pytest.raises(RunStopped, match="site paris runs network hospital_tiny_net:build from"):
        run_in_process(tmp_path / "held", federation_with(NETWORK))
    monkeypatch.setattr(roll_call, "_check_network_code", lambda *args: None)
    run, _ = run_in_process(tmp_path / "passed", federation_with(NETWORK))
    problems = [str(p) for p in verify_run(run).problems]
    assert len(problems) == 1 and problems[0].startswith("paris entry")
    assert "ran network source sha256 ffffffffffff, not the" in problems[0]
