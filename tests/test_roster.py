"""The federation roster: built by the coordinator, pinned by each site, held to by both.

A relay that hands a site another key for a peer, or moves a peer into
another country, is refused by the honest site (nothing sent, the refusal
signed into its ledger) and shows in ``audit verify``; a site joins only a
run of the roster it pinned.
"""

from __future__ import annotations

import json

import pytest
from conftest import AUDIT_SITES, deployed_site_folder, flowerbed, run_in_process
from flwr.app import ConfigRecord, Message
from in_process_grid import FIRST_NODE

from flowerbed.audit.roster import read_roster
from flowerbed.audit.verify import verify_run
from flowerbed.config import load_federation
from flowerbed.errors import ConfigError, RunStopped
from flowerbed.hospital_client.site_folder import SiteFolder
from flowerbed.privacy.sealing import SiteKeys
from flowerbed.protocol import records as R

ATTACKER_KEY = SiteKeys.generate().public_bytes()


@pytest.fixture
def sites(tmp_path):
    """Three site folders made by `site init`, and the roster the coordinator built."""
    for name, country in (("berlin", "DE"), ("paris", "FR"), ("lyon", "FR")):
        deployed_site_folder(tmp_path / name, name, country)
    return tmp_path


def build(monkeypatch, capsys, root, names, country="DE") -> tuple[int, str]:
    publics = [str(root / name / "public.toml") for name in names]
    return flowerbed(
        monkeypatch, capsys, "coordinator", "roster", *publics, "--country", country,
        "--out", str(root / "roster.toml"),
    )  # fmt: skip


def pin(monkeypatch, capsys, site_file, roster, sha256) -> tuple[int, str]:
    return flowerbed(monkeypatch, capsys, "site", "pin", str(site_file), str(roster), sha256)


def test_a_site_pins_the_roster_it_was_announced_and_nothing_else(sites, monkeypatch, capsys):
    code, said = build(monkeypatch, capsys, sites, ["berlin", "paris", "lyon"], "fr")
    assert code == 0, said
    sha256 = said.split()[-1]
    roster = read_roster(sites / "roster.toml")
    assert roster.sha256 == sha256 and roster.roster.coordinator_country == "FR"
    assert {s.name: s.country for s in roster.roster.sites} == {
        "berlin": "DE", "paris": "FR", "lyon": "FR"
    }  # fmt: skip
    berlin = sites / "berlin" / "site.toml"
    wrong = "0" * 64
    code, said = pin(monkeypatch, capsys, berlin, sites / "roster.toml", wrong)
    assert code == 1 and f"is not the {wrong} you were given" in said
    assert "Traceback" not in said
    assert SiteFolder.load(berlin).config.policy.roster is None
    code, said = pin(monkeypatch, capsys, berlin, sites / "roster.toml", sha256)
    assert code == 0, said
    folder = SiteFolder.load(berlin)
    assert folder.config.policy.roster == sha256
    assert folder.config.coordinator.country == "FR"  # the roster's, not the site's guess
    assert folder.pinned_roster.sha256 == sha256
    assert oct(folder.roster_file.stat().st_mode & 0o777) == "0o600"
    # Approving an app afterwards (the README's order) keeps the pin.
    code, said = flowerbed(monkeypatch, capsys, "site", "approve", str(berlin), "a" * 64)
    assert code == 0, said
    folder = SiteFolder.load(berlin)
    assert folder.config.policy.roster == sha256
    assert folder.config.policy.approved_apps == ["a" * 64]
    # Editing the pinned copy (say, another sealing key for paris) is caught on first use.
    folder.roster_file.write_text(folder.roster_file.read_text().replace("FR", "DE", 1))
    with pytest.raises(ConfigError, match="is not the pinned"):
        _ = SiteFolder.load(berlin).pinned_roster


def test_a_roster_without_the_site_or_with_other_keys_is_not_pinned(sites, monkeypatch, capsys):
    code, said = build(monkeypatch, capsys, sites, ["paris", "lyon"])
    sha256 = said.split()[-1]
    code, said = pin(
        monkeypatch, capsys, sites / "berlin" / "site.toml", sites / "roster.toml", sha256
    )
    assert code == 1 and "does not list this site (berlin)" in said
    impostor = deployed_site_folder(sites / "impostor" / "berlin", "berlin", "DE")
    code, said = build(monkeypatch, capsys, sites, ["impostor/berlin", "paris"])
    sha256 = said.split()[-1]
    code, said = pin(
        monkeypatch, capsys, sites / "berlin" / "site.toml", sites / "roster.toml", sha256
    )
    assert code == 1 and "another ledger key than this site's" in said
    assert impostor.config.policy.roster is None


def test_two_sites_with_one_name_make_no_roster(sites, monkeypatch, capsys):
    deployed_site_folder(sites / "again" / "berlin", "berlin", "DE")
    code, said = build(monkeypatch, capsys, sites, ["berlin", "again/berlin"])
    assert code == 1 and "two sites share the name berlin" in said


def relabel(rounds: set[int]):
    """A relay that, in ``rounds``, hands berlin an attacker's key for its first addressee
    and tells paris its first addressee is in another country."""

    def in_transit(message: Message) -> None:
        records = message.content.config_records
        if R.SEND_TO not in records or int(records[R.CONFIG][R.SERVER_ROUND]) not in rounds:
            return
        addressees = list(records[R.SEND_TO][R.SEND_TO])
        if not addressees:
            return
        if message.metadata.dst_node_id == FIRST_NODE:  # berlin
            keys = dict(records[R.PEER_KEYS])
            keys[addressees[0]] = ATTACKER_KEY
            message.content[R.PEER_KEYS] = ConfigRecord(keys)
        elif message.metadata.dst_node_id == FIRST_NODE + 1:  # paris
            countries = dict(records[R.PEER_COUNTRIES])
            countries[addressees[0]] = "CH"
            message.content[R.PEER_COUNTRIES] = ConfigRecord(countries)

    return in_transit


def test_a_relay_that_swaps_a_key_or_moves_a_peer_is_refused_and_verify_shows_it(
    tmp_path, task_identity
):
    federation = load_federation(
        None,
        {
            "run": {"strategy": "gossip", "rounds": 2, "topology": "complete"},
            "privacy": {"enabled": False},
            "sites": AUDIT_SITES,
        },
    )
    with pytest.raises(RunStopped, match="against the pinned roster") as stopped:
        run_in_process(tmp_path, federation, relabel({1}))
    assert "berlin: inbound: the sealing key given for" in str(stopped.value)  # the run is told
    run = tmp_path / "run"
    for site, said in (
        ("berlin", "the sealing key given for"),
        ("paris", "is placed in CH, the roster places it in"),
    ):
        entries = [json.loads(line) for line in (run / "ledgers" / f"{site}.jsonl").open()]
        refused = [e for e in entries if e.get("against_roster")]
        assert len(refused) == 1 and said in refused[0]["reason"], refused
        assert refused[0]["round"] == 1
        # nothing was sealed by the refusing site in the round it refused
        sealed = [e for e in entries if e.get("round") == 1 and e.get("sealed_for")]
        assert sealed == []
    problems = [str(p) for p in verify_run(run).problems]
    assert any(
        "berlin" in p and "refused an instruction" in p and "sealing key" in p for p in problems
    )
    assert any("paris" in p and "refused an instruction" in p and "CH" in p for p in problems)


def test_an_honest_relay_passes_the_roster_checks(runs):
    run, _ = runs["gossip"]
    assert (run / "roster.toml").is_file()
    assert verify_run(run).problems == []
