"""Hostile, lazy and failing sites, and the defences against them; measured privacy.

Runs are real (ServerApp, ClientApp, guard, ledgers) on an in-process grid,
four hospitals on the synthetic default without DP, so an attack's effect
shows in a few rounds.
"""

from __future__ import annotations

import csv
import itertools
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import _set_task_identity as set_task_identity
from conftest import run_in_process
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from flowerbed.audit.report import build_report
from flowerbed.audit.verify import verify_run
from flowerbed.config import load_federation
from flowerbed.datasets.base import ImageSet
from flowerbed.datasets.source import site_data
from flowerbed.errors import ConfigError
from flowerbed.honesty.measures import distance, far_out
from flowerbed.honesty.neighbours import check_neighbours
from flowerbed.honesty.probe import probe_digest
from flowerbed.honesty.replies import flag_replies
from flowerbed.honesty.sketch import only_mixed, sketch
from flowerbed.honesty.training import DID_NOT_TRAIN, NO_SKETCH, TrainingCheck
from flowerbed.hospital_client import gossip_round
from flowerbed.hospital_client.mixing import mix
from flowerbed.hospital_client.training import DPPlan, TrainPlan, evaluate, train
from flowerbed.models.factory import build_model
from flowerbed.privacy.accounting import PrivacyAccount
from flowerbed.protocol import records as R
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.strategies.gossip import GossipRelay
from flowerbed.strategies.roll import Roll

SITES = [
    {"name": "berlin", "country": "DE"},
    {"name": "munich", "country": "DE"},
    {"name": "paris", "country": "FR"},
    {"name": "lyon", "country": "FR"},
]
HOSTILE = "lyon"


def federation(
    strategy: str,
    faults: dict | None = None,
    rounds: int = 3,
    mixing: str = "average",
    sites: list[dict] = SITES,
):
    return load_federation(
        None,
        {
            "run": {
                "strategy": strategy,
                "rounds": rounds,
                "topology": "complete",
                "trim_fraction": 0.25,  # one site cut from each end of four
                "mixing": mixing,
            },
            "privacy": {"enabled": False},
            "sites": sites,
            "faults": faults or {},
        },
    )


def honest_scores(run) -> dict[str, float]:
    """Mean test AUC and loss of the honest sites in the last round."""
    with open(run / "metrics.csv", newline="") as rows:
        rows = [r for r in csv.DictReader(rows) if r["split"] == "test" and r["site"] != HOSTILE]
    last = [r for r in rows if int(r["round"]) == max(int(r["round"]) for r in rows)]
    return {key: sum(float(r[key]) for r in last) / len(last) for key in ("auc", "loss")}


def honest_auc(run) -> float:
    return honest_scores(run)["auc"]


# attack -> (its fault, the score it spoils). On this easy task a flipped or random
# quarter of the updates leaves the ranking (AUC) intact but makes the model unsure of
# every answer: its test loss nearly doubles. Scale 100: a quarter of the weight at 100x.
ATTACKS = {
    "sign-flip": ({"kind": "sign-flip"}, "auc"),
    "scale": ({"kind": "scale", "factor": 100.0}, "auc"),
    "noise": ({"kind": "noise"}, "loss"),
    "label-flip": ({"kind": "label-flip"}, "loss"),
}
DEFENCES = {  # name -> (strategy, mixing)
    "fedavg": ("fedavg", "average"),
    "median": ("median", "average"),
    "krum": ("krum", "average"),
    "trimmed-mean": ("trimmed-mean", "average"),
    "clipped gossip": ("gossip", "clipped"),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Honest sites' final scores per (defence, attack); "clean" means no hostile site."""
    patch = pytest.MonkeyPatch()
    set_task_identity(patch)
    root = tmp_path_factory.mktemp("robustness")
    results = {}
    for (name, (strategy, mixing)), attack in itertools.product(
        DEFENCES.items(), ["clean", *ATTACKS]
    ):
        faults = {} if attack == "clean" else {HOSTILE: ATTACKS[attack][0]}
        folder = root / f"{strategy}-{mixing}-{attack}"
        run, _ = run_in_process(folder, federation(strategy, faults, mixing=mixing))
        results[name, attack] = honest_scores(run)
    patch.undo()
    return results


def harm(outcomes, defence: str, attack: str) -> float:
    """How much ``attack`` spoils ``defence``'s run: AUC lost, or test loss gained."""
    score = ATTACKS[attack][1]
    clean, attacked = outcomes[defence, "clean"][score], outcomes[defence, attack][score]
    return clean - attacked if score == "auc" else attacked - clean


@pytest.mark.slow
@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_spoils_fedavg_and_every_defence_removes_most_of_it(outcomes, attack):
    clean = outcomes["fedavg", "clean"]
    assert clean["auc"] > 0.9
    visible = 0.15 if ATTACKS[attack][1] == "auc" else 0.5 * clean["loss"]
    assert harm(outcomes, "fedavg", attack) > visible, outcomes
    for defence in DEFENCES.keys() - {"fedavg"}:
        assert harm(outcomes, defence, attack) < 0.25 * harm(outcomes, "fedavg", attack), (
            defence,
            outcomes,
        )


def test_clipped_gossip_bounds_what_one_hostile_neighbour_does():
    own = {"w": torch.zeros(100)}
    honest = {f"peer-{i}": (0.2, {"w": torch.full((100,), 0.1 * (i + 1))}) for i in range(3)}
    hostile = {"attacker": (0.2, {"w": torch.full((100,), -1000.0)})}
    averaged, _ = mix("average", own, {**honest, **hostile})
    clipped, _ = mix("clipped", own, {**honest, **hostile})
    assert averaged["w"].abs().max() > 100
    assert clipped["w"].abs().max() < 0.2
    alone, _ = mix("clipped", own, honest)
    plain, _ = mix("average", own, honest)
    torch.testing.assert_close(alone["w"], plain["w"], rtol=0.5, atol=0.05)


@pytest.mark.slow
def test_dropped_crashed_and_free_riding_sites_do_not_stop_the_run_or_break_a_ledger(
    tmp_path, task_identity
):
    faults = {
        "berlin": {"kind": "drop", "rounds": [2]},
        "munich": {"kind": "crash", "rounds": [1]},
        HOSTILE: {"kind": "free-ride"},
    }
    run, _ = run_in_process(tmp_path, federation("fedavg", faults, rounds=2))
    with open(run / "metrics.csv", newline="") as rows:
        rows = list(csv.DictReader(rows))
    trained = {(int(r["round"]), r["site"]) for r in rows if r["split"] == "train"}
    failed = {
        (int(r["round"]), r["site"]): r["error"]
        for r in rows
        if r["split"] == "train" and r["status"] == "failed"
    }
    assert failed == {
        (2, "berlin"): "dropped out of round 2 (simulated fault)",
        (1, "munich"): "crashed in round 1 after training (simulated fault)",
    }
    assert (1, "berlin") in trained and (2, "munich") in trained
    assert '"completed"' in (run / "status.json").read_text()
    assert verify_run(run).problems == []


# Two sites share [data]; the third brings its own, so the two get the same shards with it
# as without it, and its NaN update is the only difference between the runs.
GOOD_SITES = [SITES[0], SITES[2]]
POISONED = {"name": "hamburg", "country": "DE", "data": "synthetic"}


def last_round_test_scores(run) -> dict[str, float]:
    with open(run / "metrics.csv", newline="") as rows:
        rows = [r for r in csv.DictReader(rows) if r["split"] == "test" and r["status"] == "ok"]
    last = max(int(r["round"]) for r in rows)
    return {r["site"]: float(r["auc"]) for r in rows if int(r["round"]) == last}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fedavg", "median", "gossip"])
def test_a_site_sending_nan_is_dropped_and_flagged_and_the_others_end_as_if_alone(
    tmp_path, task_identity, monkeypatch, strategy
):
    if strategy == "gossip":
        # A gossip site's own guard refuses to send the sketch of a NaN model; a hostile
        # site would not run it and would claim a finite sketch: so here does every site
        # (an honest site's model is finite, so its sketch is unchanged).
        def finite_sketch(state, seed):
            return sketch({n: torch.nan_to_num(t) for n, t in state.items()}, seed)

        monkeypatch.setattr(gossip_round, "sketch", finite_sketch)
    alone, _ = run_in_process(tmp_path / "alone", federation(strategy, rounds=2, sites=GOOD_SITES))
    poisoned, _ = run_in_process(
        tmp_path / "poisoned",
        federation(strategy, {"hamburg": {"kind": "nan"}}, 2, sites=[*GOOD_SITES, POISONED]),
    )
    expected, got = last_round_test_scores(alone), last_round_test_scores(poisoned)
    for site in ("berlin", "paris"):
        assert got[site] == pytest.approx(expected[site], abs=0.02), (site, expected, got)
        assert expected[site] > 0.8  # they did learn: the comparison is not of two failures
    flagged = build_report(poisoned).flagged
    assert {f["site"] for f in flagged} == {"hamburg"}
    assert all("NaN" in f["reason"] for f in flagged)
    if strategy != "gossip":  # gossip payloads are mixed, and checked, a round later
        assert {f["round"] for f in flagged} == {1, 2}
    assert verify_run(poisoned).problems == []


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fedavg", "gossip"])
def test_the_report_shows_each_sites_membership_attack_auc_beside_epsilon(
    tmp_path, task_identity, strategy
):
    run, _ = run_in_process(tmp_path, federation(strategy, rounds=2))
    report = build_report(run)
    assert set(report.membership) == {s["name"] for s in SITES}
    assert all(0.0 <= auc <= 1.0 for auc in report.membership.values())


def overfit_membership_auc(dp: DPPlan | None) -> float:
    """Train the small CNN on 48 randomly labelled examples; the attack AUC against test data.

    Without DP the model memorises its members; under heavy noise it cannot.
    """
    one_site = load_federation(None, {"sites": [SITES[0]]})
    data = site_data(one_site, one_site.sites[0])
    chosen = data.train.subset(torch.arange(48).numpy())
    noise_labels = torch.randint(0, 2, (48,), generator=torch.Generator().manual_seed(0))
    members = ImageSet(chosen.images, noise_labels.numpy().astype(chosen.labels.dtype))
    torch.manual_seed(0)
    model = build_model(ModelSpec("small-cnn", 2, 1, 2, (28, 28)))
    optimizer, learning_rate = ("adam", 0.003) if dp is None else ("sgd", 0.02)
    plan = TrainPlan(
        epochs=60, batch_size=16, learning_rate=learning_rate, optimizer=optimizer, dp=dp
    )
    train(model, members, 2, plan, PrivacyAccount(), seed=0)
    _, leak = evaluate(model, data.test, 2, calibration=members)
    return leak.auc


@pytest.mark.slow
def test_membership_attack_tells_an_overfit_model_apart_and_not_a_dp_one():
    assert overfit_membership_auc(None) > 0.7
    assert abs(overfit_membership_auc(DPPlan(noise_multiplier=2.0, max_grad_norm=1.0)) - 0.5) < 0.1


def test_a_fault_is_checked_at_load():
    with pytest.raises(ConfigError, match="unknown fault 'lazy'"):
        federation("fedavg", {HOSTILE: {"kind": "lazy"}})
    with pytest.raises(ConfigError, match="no site is called 'nowhere'"):
        federation("fedavg", {"nowhere": {"kind": "drop"}})
    with pytest.raises(ConfigError, match="unknown strategy 'bulyan'"):
        federation("bulyan")


def train_rows(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as rows:
        return [r for r in csv.DictReader(rows) if r["split"] == "train"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "why"),
    [("free-ride", "returned the model it was sent"), ("noise", "a random model")],
)
def test_a_lazy_site_is_flagged_every_round_and_no_honest_site_is(
    tmp_path, task_identity, kind, why
):
    run, _ = run_in_process(tmp_path, federation("fedavg", {HOSTILE: {"kind": kind}}))
    rows = train_rows(run)
    assert all(why in r["flag"] for r in rows if r["site"] == HOSTILE)
    assert len([r for r in rows if r["site"] == HOSTILE]) == 3
    assert all(r["flag"] == "" for r in rows if r["site"] != HOSTILE)
    report = build_report(run)
    assert report.verdict == "verified"
    assert [(f["round"], f["site"]) for f in report.flagged] == [
        (1, HOSTILE),
        (2, HOSTILE),
        (3, HOSTILE),
    ]


@pytest.mark.slow
def test_excluding_flagged_sites_protects_plain_fedavg(tmp_path, task_identity):
    clean, _ = run_in_process(tmp_path / "clean", federation("fedavg"))
    guarded = federation("fedavg", {HOSTILE: {"kind": "sign-flip"}})
    guarded.run.honesty = "exclude"
    run, _ = run_in_process(tmp_path / "guarded", guarded)
    assert honest_auc(run) > honest_auc(clean) - 0.05
    assert all(r["flag"] for r in train_rows(run) if r["site"] == HOSTILE)


def test_a_probe_answer_that_does_not_match_the_parameters_sent_is_flagged():
    spec = ModelSpec("small-cnn", 2, 1, 2, (28, 28))
    torch.manual_seed(0)
    sent = build_model(spec).state_dict()
    replies = []
    for i in range(4):
        torch.manual_seed(i + 1)
        state = {k: v + 0.01 * torch.randn_like(v) for k, v in sent.items()}
        claimed = state if i < 3 else sent | {"12.bias": sent["12.bias"] + 1}
        content = RecordDict(
            {
                R.ARRAYS: ArrayRecord(state),
                R.PROBE: ConfigRecord({R.PROBE_DIGEST: probe_digest(spec, claimed, 7)}),
            }
        )
        replies.append(SimpleNamespace(content=content))
    flags = flag_replies(spec, ArrayRecord(sent), 7, replies, 1.0, random.Random(0))
    assert flags == {3: "its probe answer is not what the parameters it sent give"}


def test_a_random_model_is_flagged_even_when_honest_updates_are_as_large():
    """Honest updates half the model's size put a random model within ``FAR_FACTOR``."""
    spec = ModelSpec("small-cnn", 2, 1, 2, (28, 28))
    torch.manual_seed(0)
    sent = build_model(spec).state_dict()
    states = [{k: v + 0.5 * v.std() * torch.randn_like(v) for k, v in sent.items()} for _ in "abc"]
    states.append({k: v.std() * torch.randn_like(v) for k, v in sent.items()})
    replies = [
        SimpleNamespace(
            content=RecordDict(
                {
                    R.ARRAYS: ArrayRecord(state),
                    R.PROBE: ConfigRecord({R.PROBE_DIGEST: probe_digest(spec, state, 7)}),
                }
            )
        )
        for state in states
    ]
    assert far_out([distance(state, sent) for state in states]) == {}
    flags = flag_replies(spec, ArrayRecord(sent), 7, replies, 1.0, random.Random(0))
    assert flags == {3: "its model shares no direction with the one it was sent: a random model"}
    neighbours = {peer: (0.25, state) for peer, state in zip("abcd", states, strict=True)}
    msg = SimpleNamespace(content=RecordDict({R.CONFIG: ConfigRecord({})}))
    assert check_neighbours(msg, spec, sent, neighbours) == {"d": "unrelated"}
    honest = {peer: neighbours[peer] for peer in "abc"}
    assert check_neighbours(msg, spec, states[3], honest) == {}  # the random site's own view


@pytest.mark.slow
def test_gossip_neighbours_flag_a_site_that_sends_random_models(tmp_path, task_identity):
    run, _ = run_in_process(tmp_path, federation("gossip", {HOSTILE: {"kind": "noise"}}))
    report = build_report(run)
    assert report.verdict == "verified"
    flagged = {(f["round"], f["site"]) for f in report.flagged}
    assert flagged == {(r, HOSTILE) for r in (1, 2, 3)}
    reporters = {f["reported_by"] for f in report.flagged}
    assert reporters == {s["name"] for s in SITES} - {HOSTILE}


def test_a_gossip_payload_that_is_not_the_model_its_sender_claimed_is_flagged():
    spec = ModelSpec("small-cnn", 2, 1, 2, (28, 28))
    torch.manual_seed(0)
    own = build_model(spec).state_dict()
    neighbours = {}
    for i, peer in enumerate(["a", "b", "c"]):
        torch.manual_seed(i + 1)
        neighbours[peer] = (0.25, {k: v + 0.01 * torch.randn_like(v) for k, v in own.items()})
    claims = {peer: probe_digest(spec, state, 11) for peer, (_, state) in neighbours.items()}
    claims["c"] = probe_digest(spec, own, 11)  # c sealed one model and claimed another
    msg = SimpleNamespace(
        content=RecordDict(
            {
                R.CONFIG: ConfigRecord({R.PREVIOUS_PROBE_SEED: 11}),
                R.PROBE_CLAIMS: ConfigRecord(claims),
            }
        )
    )
    assert check_neighbours(msg, spec, own, neighbours) == {"c": "mismatch"}


def relay_hearing(content: RecordDict) -> dict:
    """What the gossip relay keeps of one reply from the fourth site."""
    names = [site["name"] for site in SITES]
    roll = Roll(
        names, [1, 2, 3, 4], [b""] * 4, ModelSpec("small-cnn", 2, 1, 2, (28, 28)), "classification"
    )
    relay = GossipRelay(federation("gossip"), observer=None, roll=roll)
    reply = SimpleNamespace(
        has_error=lambda: False, metadata=SimpleNamespace(src_node_id=4), content=content
    )
    return relay._claims_and_flags(2, [1, 2, 3, 4], [reply])


def test_a_made_up_flag_code_from_a_site_does_not_stop_the_relay():
    assert relay_hearing(RecordDict({R.FLAGS: ConfigRecord({"berlin": "witch"})})) == {}


def test_a_made_up_sketch_is_not_passed_on_and_counts_as_none():
    answer = ConfigRecord({R.PROBE_DIGEST: "0" * 64, R.PROBE_SKETCH: [1.0, 2.0]})
    claims = relay_hearing(RecordDict({R.PROBE: answer}))
    assert dict(claims[3]) == {R.PROBE_DIGEST: "0" * 64}  # the relay flags NO_SKETCH then


def seeded_models(count: int) -> list[dict[str, torch.Tensor]]:
    spec = ModelSpec("small-cnn", 2, 1, 2, (28, 28))
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(build_model(spec).state_dict())
    return models


def trained_from(state: dict[str, torch.Tensor], learning_rate: float) -> dict[str, torch.Tensor]:
    """``state`` after one epoch of plain SGD on 40 random images: two small steps."""
    model = build_model(ModelSpec("small-cnn", 2, 1, 2, (28, 28)))
    model.load_state_dict(state)
    rng = np.random.default_rng(0)
    data = ImageSet(rng.random((40, 1, 32, 32), dtype=np.float32), rng.integers(0, 2, 40))
    train(model, data, 2, TrainPlan(1, 32, learning_rate), PrivacyAccount(), seed=0)
    return model.state_dict()


@pytest.mark.parametrize("mixing", ["average", "clipped"])
def test_sketches_alone_tell_a_mixed_model_from_a_trained_one(mixing):
    own, *others = seeded_models(4)
    neighbours = {peer: (0.25, state) for peer, state in zip("abc", others, strict=True)}
    mixed, _ = mix(mixing, own, neighbours)
    held, received = sketch(own, 0), [sketch(state, 0) for state in others]
    assert only_mixed(sketch(mixed, 0), held, received)
    assert only_mixed(held, held, received)  # sent back its own model, unmixed
    assert only_mixed(sketch(mixed, 0), held, received[:2]) is False  # mixed one it was not sent
    # the smallest honest round: two SGD steps at a tenth of the default rate
    assert only_mixed(sketch(trained_from(mixed, 0.001), 0), held, received) is False
    halfway = {name: 0.3 * own[name] + 0.7 * others[0][name] for name in own}
    assert np.allclose(sketch(halfway, 0), 0.3 * np.array(held) + 0.7 * np.array(received[0]))


def test_the_relay_flags_a_site_that_only_mixed_unless_its_budget_is_spent():
    (start,) = seeded_models(1)
    check = TrainingCheck(sketch(start, 0), sites=4)
    trained = trained_from(start, 0.01)
    first = {0: sketch(start, 0), 1: sketch(trained, 0), 2: sketch(start, 0), 3: None}
    assert check.flag({}, first, refused={2}) == {0: DID_NOT_TRAIN, 3: NO_SKETCH}
    # round 2: site 1 was handed sites 0's and 2's payloads and only mixed them
    mixed, _ = mix("average", trained, {"0": (0.3, start), "2": (0.3, start)})
    second = {1: sketch(mixed, 0), 0: sketch(trained_from(start, 0.001), 0)}
    assert check.flag({1: {0: b"", 2: b""}, 0: {1: b""}}, second, refused=set()) == {
        1: DID_NOT_TRAIN
    }


def inboxes_holding(grid, site: str) -> int:
    """How many of the relay's instructions handed ``site``'s payload to a neighbour."""
    return sum(
        site in message.content[R.INBOX]
        for message in grid.relayed
        if message.has_content() and R.INBOX in message.content
    )


@pytest.mark.slow
def test_a_gossip_free_rider_is_flagged_by_the_relay_every_round_and_no_honest_site_is(
    tmp_path, task_identity
):
    run, grid = run_in_process(tmp_path, federation("gossip", {HOSTILE: {"kind": "free-ride"}}))
    report = build_report(run)
    assert report.verdict == "verified"
    assert [(f["round"], f["site"], f["reason"], f["excluded"]) for f in report.flagged] == [
        (r, HOSTILE, DID_NOT_TRAIN, False) for r in (1, 2, 3)
    ]
    assert all("reported_by" not in f for f in report.flagged)  # the relay's own flags
    rows = train_rows(run)
    assert [r["flag"] for r in rows if r["site"] == HOSTILE] == [DID_NOT_TRAIN] * 3
    assert all(r["flag"] == "" for r in rows if r["site"] != HOSTILE)
    assert inboxes_holding(grid, HOSTILE) == 3 * 3  # flagged only: 3 neighbours, rounds 2-4


@pytest.mark.slow
def test_excluding_a_gossip_free_rider_keeps_its_model_from_every_neighbour(
    tmp_path, task_identity
):
    guarded = federation("gossip", {HOSTILE: {"kind": "free-ride"}})
    guarded.run.honesty = "exclude"
    run, grid = run_in_process(tmp_path, guarded)
    assert inboxes_holding(grid, HOSTILE) == 0
    assert {f["excluded"] for f in build_report(run).flagged} == {True}


def test_a_gossip_payload_whose_sketch_is_not_the_one_claimed_is_flagged():
    """A free rider cannot pass the relay's check by claiming a trained model's sketch."""
    spec = ModelSpec("small-cnn", 2, 1, 2, (28, 28))
    own, *others = seeded_models(4)
    neighbours = {peer: (0.25, state) for peer, state in zip("abc", others, strict=True)}
    digests = {peer: probe_digest(spec, state, 11) for peer, (_, state) in neighbours.items()}
    sketches = {peer: sketch(state, 0) for peer, (_, state) in neighbours.items()}
    sketches["b"] = sketch(trained_from(others[1], 0.01), 0)
    sketches["c"] = ["nan"] * 64  # not a sketch at all: a mismatch, not a crash
    msg = SimpleNamespace(
        content=RecordDict(
            {
                R.CONFIG: ConfigRecord({R.PREVIOUS_PROBE_SEED: 11, R.SEED: 0}),
                R.PROBE_CLAIMS: ConfigRecord(digests),
                R.SKETCH_CLAIMS: ConfigRecord(sketches),
            }
        )
    )
    assert check_neighbours(msg, spec, own, neighbours) == {"b": "mismatch", "c": "mismatch"}
