"""Ledgers and ``audit verify``: an honest run passes; every way of cooking the books fails.

Runs are real (the real ServerApp coordination, ClientApp, guard, ledgers
and crypto) on an in-process grid, small enough to take a few seconds.
Each attack edits the ledgers on disk as an adversary could and must make
``verify`` name the party and the entry.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import Error, Message, MessageType, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode

from flowerbed.audit.ledger import GENESIS_PREVIOUS, entry_hash, head_message, public_key_hex
from flowerbed.audit.ledgered_grid import as_from_addressees
from flowerbed.audit.verify import verify_run
from flowerbed.config import load_federation, save_federation
from flowerbed.hospital_client.site_folder import KEYS_DIR, ledger_key_in
from flowerbed.run_layout import SITES_DIR

pytestmark = pytest.mark.usefixtures("task_identity")


@pytest.fixture(params=["fedavg", "gossip"])
def run(request, runs, tmp_path) -> Path:
    source, _ = runs[request.param]
    copy = tmp_path / "run"
    shutil.copytree(source, copy)
    return copy


def lines(run: Path, party: str) -> list[str]:
    return (run / "ledgers" / f"{party}.jsonl").read_text().splitlines(keepends=True)


def write(run: Path, party: str, content: list[str]) -> None:
    (run / "ledgers" / f"{party}.jsonl").write_text("".join(content))


def problems(run: Path) -> list[str]:
    return [str(problem) for problem in verify_run(run).problems]


def rechain(entries: list[dict], party: str, key: Ed25519PrivateKey) -> list[str]:
    """What a party holding ``key`` can do: a fresh valid chain, heads signed."""
    previous, out = GENESIS_PREVIOUS, []
    for index, entry in enumerate(entries):
        entry = {k: v for k, v in entry.items() if k not in ("hash", "signature")}
        entry.update(index=index, prev=previous)
        entry["hash"] = previous = entry_hash(entry)
        entry["signature"] = key.sign(head_message(party, index, entry["hash"])).hex()
        out.append(json.dumps(entry, sort_keys=True) + "\n")
    return out


def site_key(run: Path, party: str) -> Ed25519PrivateKey:
    """The simulated site's own key, from its home in the run folder."""
    return ledger_key_in(run / SITES_DIR / party / KEYS_DIR)


def test_an_honest_run_verifies(runs):
    for path, _ in runs.values():
        assert problems(path) == []
        ledgers = sorted(p.stem for p in (path / "ledgers").glob("*.jsonl"))
        assert ledgers == ["berlin", "coordinator", "lyon", "paris"]


def test_each_site_receives_the_signed_head_of_its_own_instruction(runs):
    """Flower's FedAvg shares one content among a round's messages; each still gets its head."""
    path, _ = runs["fedavg"]
    coordinator = [json.loads(line) for line in lines(path, "coordinator")]
    checked = 0
    for site in ("berlin", "lyon", "paris"):
        for line in lines(path, site):
            entry = json.loads(line)
            head = entry.get("peer_head")
            if entry.get("direction") != "in" or not head or entry["kind"] == "query.identity":
                continue
            instruction = coordinator[head["index"]]
            assert (instruction["direction"], instruction["peer"]) == ("out", site)
            assert (instruction["sha256"], instruction["hash"]) == (entry["sha256"], head["hash"])
            checked += 1
    assert checked >= 6  # three sites, a train and an evaluate instruction each, every round


@pytest.mark.parametrize("party", ["paris", "coordinator"])
def test_a_changed_byte_in_any_entry_is_caught(run, party):
    honest = lines(run, party)
    for index, line in enumerate(honest):
        at = line.index('"time":"') + 10  # a digit of the year, inside the hashed content
        changed = line[:at] + ("1" if line[at] != "1" else "2") + line[at + 1 :]
        write(run, party, [*honest[:index], changed, *honest[index + 1 :]])
        found = problems(run)
        assert f"{party} entry {index}: content does not match its hash (altered)" in found


def test_a_flipped_byte_that_breaks_the_json_is_caught(run):
    content = lines(run, "berlin")
    content[2] = content[2][:10] + chr(ord(content[2][10]) ^ 1) + content[2][11:]
    write(run, "berlin", content)
    assert any(p.startswith("berlin entry 2:") for p in problems(run))


@pytest.mark.parametrize(
    ("edit", "entry"),
    [
        (lambda c: c[:4] + c[5:], 4),  # deleted
        (lambda c: [*c[:4], c[4], *c[4:]], 5),  # duplicated
        (lambda c: [*c[:4], c[5], c[4], *c[6:]], 4),  # reordered
    ],
)
def test_deleted_duplicated_or_reordered_entries_are_caught(run, edit, entry):
    write(run, "lyon", edit(lines(run, "lyon")))
    assert any(p.startswith(f"lyon entry {entry}:") for p in problems(run))


def test_a_truncated_ledger_is_caught_by_its_peers(run):
    content = lines(run, "paris")
    write(run, "paris", content[: len(content) - 3])
    found = problems(run)
    assert any(p.startswith("paris ") for p in found)


def test_a_torn_last_line_is_reported(run):
    content = lines(run, "berlin")
    write(run, "berlin", [*content[:-1], content[-1][:40]])
    assert any(p.startswith("berlin entry") and "torn" in p for p in problems(run))


def test_a_site_rewriting_its_whole_ledger_under_a_fresh_key_is_caught_by_its_peers(run):
    entries = [json.loads(line) for line in lines(run, "paris")]
    forger = Ed25519PrivateKey.generate()
    entries[0]["public_key"] = public_key_hex(forger)
    entries[3]["bytes"] = 1  # the history it wants to tell instead
    write(run, "paris", rechain(entries, "paris", forger))
    found = problems(run)
    assert any(p.startswith("paris entry") and "recorded by coordinator" in p for p in found)


def test_a_head_forged_without_the_sites_key_is_caught(run):
    entries = [json.loads(line) for line in lines(run, "lyon")]
    entries[2]["epsilon"] = 0.0
    write(run, "lyon", rechain(entries, "lyon", Ed25519PrivateKey.generate()))
    assert any(p.startswith("lyon entry") and "forged" in p for p in problems(run))


def test_two_sites_ledgers_swapped_are_caught(run):
    berlin, paris = lines(run, "berlin"), lines(run, "paris")
    write(run, "berlin", paris)
    write(run, "paris", berlin)
    found = problems(run)
    assert any(p.startswith("berlin entry 0: genesis names 'paris'") for p in found)
    assert any(p.startswith("paris entry 0: genesis names 'berlin'") for p in found)


def test_an_inserted_transfer_to_a_forbidden_country_is_caught(runs, tmp_path):
    path, _ = runs["gossip"]
    run = tmp_path / "run"
    shutil.copytree(path, run)
    federation = load_federation(run / "config.toml")
    federation.residency = {"FR": ["FR"]}
    save_federation(federation, run / "config.toml")
    entries = [json.loads(line) for line in lines(run, "paris")]
    forbidden = dict(entries[-1], sealed_for=[{"peer": "berlin", "sha256": "00", "bytes": 1}])
    # Even re-signed with paris's own key, the transfer itself breaks the policy.
    write(run, "paris", rechain([*entries, forbidden], "paris", site_key(run, "paris")))
    found = problems(run)
    assert any(p.startswith("paris entry") and "berlin in DE: policy forbids" in p for p in found)


def test_a_budget_overrun_is_caught(runs, tmp_path):
    path, _ = runs["fedavg"]
    run = tmp_path / "run"
    shutil.copytree(path, run)
    entries = [json.loads(line) for line in lines(run, "lyon")]
    entries[-1]["epsilon"] = 9.5
    write(run, "lyon", rechain(entries, "lyon", site_key(run, "lyon")))
    overrun = f"lyon entry {len(entries) - 1}: epsilon spent 9.500 exceeds budget 8"
    assert overrun in problems(run)


@pytest.mark.parametrize("forged", ["a lower claim", "more steps"])
def test_an_epsilon_its_recorded_dp_steps_do_not_give_is_caught(runs, tmp_path, forged):
    """The auditor recomputes each site's epsilon from the steps it ledgered (Opacus RDP)."""
    path, _ = runs["fedavg"]
    run = tmp_path / "run"
    shutil.copytree(path, run)
    entries = [json.loads(line) for line in lines(run, "lyon")]
    trained = [entry for entry in entries if "dp" in entry]
    assert trained and all(e["dp"]["delta"] == 1e-5 and e["dp"]["steps"] for e in trained)
    entry = trained[-1]
    if forged == "a lower claim":
        entry["epsilon"] /= 2
    else:
        entry["dp"]["steps"] = [steps * 4 for steps in entry["dp"]["steps"]]
    write(run, "lyon", rechain(entries, "lyon", site_key(run, "lyon")))
    found = problems(run)
    said = f"lyon entry {entry['index']}: claims epsilon"
    assert any(p.startswith(said) and "recorded DP steps give" in p for p in found), found


def test_parameters_sent_to_a_party_the_federation_does_not_list_are_caught(runs, tmp_path):
    """A node outside the federation may answer the roll call, and nothing more."""
    path, _ = runs["fedavg"]
    run = tmp_path / "run"
    shutil.copytree(path, run)
    federation = load_federation(run / "config.toml")
    federation.sites = [site for site in federation.sites if site.name != "lyon"]
    save_federation(federation, run / "config.toml")
    (run / "ledgers" / "lyon.jsonl").unlink()
    found = problems(run)
    assert found
    assert all("sent parameters to lyon, a party the federation does not list" in p for p in found)


def test_the_superlinks_answers_for_lost_nodes_are_made_the_addressees():
    sent = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.TRAIN) for n in (7, 8, 9)]
    for index, message in enumerate(sent):
        message.metadata.__dict__["_message_id"] = f"instruction-{index}"  # as set on push
    answered = Message(RecordDict(), reply_to=sent[0])

    def from_superlink(instruction: Message, names_it: bool) -> Message:
        lost = Message(Error(ErrorCode.NODE_UNAVAILABLE, "node gone"), reply_to=instruction)
        lost.metadata.__dict__["_src_node_id"] = SUPERLINK_NODE_ID  # how the SuperLink answers
        if not names_it:
            lost.metadata.__dict__["_reply_to_message_id"] = ""
        return lost

    replies = [answered, from_superlink(sent[2], True), from_superlink(sent[1], False)]
    mine = as_from_addressees(replies, sent)
    assert [r.metadata.src_node_id for r in mine] == [7, 9, 8]
    assert [r.has_error() for r in mine] == [False, True, True]
