"""``flowerbed audit verify``: do a run's ledgers prove what they claim?

A run passes only when every party's ledger is an intact chain whose signed
heads are its own, every transfer is recorded alike by sender and receiver,
every head a peer recorded matches the sender's ledger, no transfer broke
the residency policy, every epsilon a site claims is what its recorded DP
steps give (recomputed here with Opacus's RDP analysis) and no site spent
more than its privacy budget, for the run or over its data set's lifetime.
Where the run folder holds the roster the sites pinned, every ledger is held
to it too. Each failure is one ``Problem``: the party, the entry, what is wrong.

Nothing here trusts a ledger before checking it: the public key a signature
is checked against comes from the genesis entry, and a party that rewrites
its ledger under a fresh key is caught by the heads its peers recorded.
One signature per ledger is checked, the last head's: through the chain it
vouches for every entry before it (that is why heads are signed rather than
entries, and why verification runs at hashing speed).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from flowerbed.audit.ledger import (
    GENESIS_PREVIOUS,
    SignedHead,
    entry_hash,
    head_message,
    read_ledger,
    verify_signature,
)
from flowerbed.audit.residency import ResidencyPolicy
from flowerbed.audit.roster import Roster, read_roster
from flowerbed.audit.schema import DP, GENESIS, NETWORK, RESUMED, dp_history, run_parts
from flowerbed.config import COORDINATOR, Federation, load_federation
from flowerbed.errors import FlowerbedError
from flowerbed.privacy import rdp
from flowerbed.run_layout import CONFIG_FILE, LEDGERS_DIR, ROSTER_FILE

EPSILON_SLACK = 1e-9
EPSILON_TOLERANCE = 1e-6  # relative: the site computed with the same function and floats


@dataclass(frozen=True)
class Problem:
    party: str
    entry: int | None
    what: str

    def __str__(self) -> str:
        where = f"entry {self.entry}" if self.entry is not None else "ledger"
        return f"{self.party} {where}: {self.what}"


@dataclass
class PartyLedger:
    """One party's entries that survived the chain check (all of them when intact)."""

    party: str
    country: str | None
    public_key: str | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    intact: bool = True


@dataclass
class Verdict:
    federation: Federation
    ledgers: dict[str, PartyLedger]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_run(run_dir: Path) -> Verdict:
    """Check every ledger of the run folder ``run_dir`` and their agreement."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FlowerbedError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); pass RUN_DIR")
    federation = load_federation(run_dir / CONFIG_FILE)
    files = sorted((run_dir / LEDGERS_DIR).glob("*.jsonl"))
    if not files:
        raise FlowerbedError(f"{run_dir / LEDGERS_DIR} holds no ledgers; nothing to verify")
    problems: list[Problem] = []
    ledgers = {path.stem: _check_chain(path, federation, problems) for path in files}
    for party in [COORDINATOR, *(site.name for site in federation.sites)]:
        if party not in ledgers:
            problems.append(Problem(party, None, "no ledger in the run folder"))
    policy = ResidencyPolicy(federation.residency)
    runs = runs_of(ledgers.get(COORDINATOR))
    coordinator = ledgers.get(COORDINATOR)
    parts = run_parts(coordinator.entries if coordinator is not None else [])
    for ledger in ledgers.values():
        _check_budget_and_policy(ledger, federation, policy, problems)
        _check_privacy(ledger, federation, runs, parts, problems)
    listed = {COORDINATOR, *(site.name for site in federation.sites)}
    _check_anchors(ledgers, listed, runs, problems)
    _check_transfers(ledgers, listed, runs, problems)
    _check_network(ledgers, runs, problems)
    if (run_dir / ROSTER_FILE).is_file():
        _check_roster(read_roster(run_dir / ROSTER_FILE).roster, ledgers, runs, problems)
    return Verdict(federation, ledgers, problems)


def _check_roster(
    roster: Roster, ledgers: dict[str, PartyLedger], runs: set[int] | None, problems: list[Problem]
) -> None:
    """Every party's ledger against the roster the sites pinned: a site's ledger signed
    under its roster key, from its roster country; every sealed update addressed to a
    country the roster places its receiver in; and every instruction a site refused
    because it contradicted the roster (a relay handing out other keys or countries)."""
    coordinator = ledgers.get(COORDINATOR)
    if coordinator is not None and coordinator.country != roster.coordinator_country:
        problems.append(
            Problem(COORDINATOR, 0, f"in {coordinator.country}, the roster says "
                    f"{roster.coordinator_country}")
        )  # fmt: skip
    for party, ledger in ledgers.items():
        if party == COORDINATOR:
            continue
        entry = roster.site(party)
        if entry is None:
            problems.append(Problem(party, 0, "a site the roster does not list"))
            continue
        if ledger.public_key != entry.ledger_key:
            problems.append(
                Problem(party, 0, "ledger signed under a key that is not its roster key")
            )
        if ledger.country != entry.country:
            problems.append(Problem(party, 0, f"says {ledger.country}, the roster {entry.country}"))
        for item in ledger.entries:
            if not in_runs(item, runs):
                continue
            if item.get("against_roster"):
                problems.append(
                    Problem(party, item["index"], f"refused an instruction: {item.get('reason')}")
                )
            for sealed in item.get("sealed_for", []):
                peer = roster.site(sealed["peer"])
                if peer is None or sealed.get("country") not in (None, peer.country):
                    problems.append(
                        Problem(party, item["index"], f"sealed for {sealed['peer']} in "
                                f"{sealed.get('country')}, not where the roster places it")
                    )  # fmt: skip


def _check_network(
    ledgers: dict[str, PartyLedger], runs: set[int] | None, problems: list[Problem]
) -> None:
    """Every site that answered the roll call for an own network ran the source the
    coordinator signed (its ``network`` entry's sha256)."""
    coordinator = ledgers.get(COORDINATOR)
    signed = [e for e in (coordinator.entries if coordinator else []) if e.get("kind") == NETWORK]
    if not signed:
        return
    expected = signed[-1]["source_sha256"]
    for party, ledger in ledgers.items():
        for entry in ledger.entries:
            code = entry.get("network_sha256")
            if code is not None and in_runs(entry, runs) and code != expected:
                what = (
                    f"ran network source sha256 {code[:12]}, not the {expected[:12]} the "
                    f"coordinator signed for {signed[-1]['network']}"
                )
                problems.append(Problem(party, entry.get("index"), what))


def runs_of(coordinator: PartyLedger | None) -> set[int] | None:
    """The Flower run ids this run folder covers (a deployed site's ledger spans many runs)."""
    if coordinator is None:
        return None
    return {e["run"] for e in coordinator.entries if "run" in e}


def cut_off(coordinator: PartyLedger) -> dict[int, int]:
    """Flower run id -> its last completed round, for the runs a coordinator stopped in and a
    resumed run went on with: messages of their later rounds were cut off mid-round (sent
    or not, answered or not), and that round was played again."""
    last: dict[int, int] = {}
    for entry in coordinator.entries:
        if entry.get("kind") == RESUMED:
            for run in entry["continues"]:
                last[int(run)] = min(last.get(int(run), entry["round"]), entry["round"])
    return last


def in_runs(entry: dict, runs: set[int] | None) -> bool:
    return runs is None or entry.get("run") in runs


def _check_chain(path: Path, federation: Federation, problems: list[Problem]) -> PartyLedger:
    party = path.stem
    read = read_ledger(path)
    entries = read.entries
    genesis = entries[0] if entries else None
    if genesis is None or genesis.get("kind") != GENESIS:
        problems.append(Problem(party, 0, "does not start with a genesis entry"))
        return PartyLedger(party, None, None, intact=False)
    ledger = PartyLedger(party, genesis.get("country"), genesis.get("public_key"))
    if genesis.get("party") != party:
        problems.append(
            Problem(party, 0, f"genesis names {genesis.get('party')!r}: not this party's ledger")
        )
    expected_country = federation.country_of(party)
    if expected_country is None:
        problems.append(Problem(party, 0, "a party the federation does not list"))
    elif genesis.get("country") != expected_country:
        problems.append(
            Problem(party, 0, f"says {genesis.get('country')}, the federation {expected_country}")
        )
    previous = GENESIS_PREVIOUS
    for position, entry in enumerate(entries):
        problem = _link_problem(position, entry, previous)
        if problem is not None:
            problems.append(Problem(party, position, problem))
            ledger.intact = False
            return ledger
        ledger.entries.append(entry)
        previous = entry["hash"]
    if read.torn is not None:
        problems.append(Problem(party, len(entries), "torn last line (cut off while written)"))
        ledger.intact = False
    last = ledger.entries[-1]
    signed = head_message(party, last["index"], last["hash"])
    if "signature" not in last:
        problems.append(Problem(party, last["index"], "ends without a signed head (truncated?)"))
    elif not verify_signature(ledger.public_key or "", last["signature"], signed):
        problems.append(Problem(party, last["index"], "head not signed by this party (forged)"))
        ledger.intact = False
    return ledger


def _link_problem(position: int, entry: dict[str, Any] | None, previous: str) -> str | None:
    if entry is None:
        return "not a readable entry (altered)"
    if entry.get("index") != position:
        return (
            f"numbered {entry.get('index')} at position {position}: entries deleted, "
            "duplicated, inserted or reordered"
        )
    if entry.get("prev") != previous:
        return "does not follow the entry before it: entries deleted, inserted or reordered"
    if entry.get("hash") != entry_hash(entry):
        return "content does not match its hash (altered)"
    return None


def _check_budget_and_policy(
    ledger: PartyLedger,
    federation: Federation,
    policy: ResidencyPolicy,
    problems: list[Problem],
) -> None:
    site = next((s for s in federation.sites if s.name == ledger.party), None)
    own = ledger.country or ""
    for entry in ledger.entries:
        index = entry["index"]
        if entry.get("direction") != "out":
            continue
        if "arrays" in entry.get("carries", []) and site is not None:
            receiver = str(entry.get("peer_country"))
            if not policy.permits(own, receiver):
                problems.append(
                    Problem(ledger.party, index, f"sent parameters to {receiver}: policy forbids")
                )
        for sealed in entry.get("sealed_for", []) if site is not None else []:
            country = federation.country_of(sealed["peer"]) or sealed.get("country")
            if country is None or not policy.permits(own, country):
                problems.append(
                    Problem(
                        ledger.party,
                        index,
                        f"sent a model update to {sealed['peer']} in {country}: policy forbids",
                    )
                )


def _check_privacy(
    ledger: PartyLedger,
    federation: Federation,
    runs: set[int] | None,
    parts: dict[int, int],
    problems: list[Problem],
) -> None:
    """Every epsilon a site's ledger claims, recomputed from the DP steps its entries record
    (noise multiplier, sample rate, steps, delta) with Opacus's RDP analysis: the run's (a
    resumed run's over all its parts, ``parts``, from the coordinator's ``resumed``
    entries), and the lifetime's over every run in the ledger. A claim the steps do not
    give, or a spend past the budget, is a problem; the site's own number is not trusted."""
    site = next((s for s in federation.sites if s.name == ledger.party), None)
    if site is None:
        return
    budgets = {"epsilon": federation.budget_of(site),
               "epsilon_lifetime": federation.lifetime_budget_of(site)}  # fmt: skip
    by_run: dict[Any, list[tuple[float, float, int]]] = defaultdict(list)
    lifetime: list[tuple[float, float, int]] = []
    delta = federation.privacy.delta
    for entry in ledger.entries:
        rows = dp_history(entry)
        run = parts.get(entry.get("run"), entry.get("run"))  # type: ignore[arg-type]
        if rows:
            by_run[run].extend(rows)
            lifetime.extend(rows)
            delta = float(entry[DP]["delta"])
        for key, history in (("epsilon", by_run[run]),
                             ("epsilon_lifetime", lifetime)):  # fmt: skip
            claimed = entry.get(key)
            if claimed is None:
                continue
            recomputed = _epsilon(tuple(history), delta)
            what = "lifetime epsilon" if key == "epsilon_lifetime" else "epsilon"
            if abs(float(claimed) - recomputed) > EPSILON_TOLERANCE * max(1.0, recomputed):
                problems.append(
                    Problem(ledger.party, entry["index"], f"claims {what} {claimed:.4f}, its "
                            f"recorded DP steps give {recomputed:.4f} (Opacus RDP)")
                )  # fmt: skip
            spent = max(float(claimed), recomputed)
            if in_runs(entry, runs) and spent > budgets[key] + EPSILON_SLACK:
                problems.append(
                    Problem(ledger.party, entry["index"],
                            f"{what} spent {spent:.3f} exceeds budget {budgets[key]:g}")
                )  # fmt: skip


@lru_cache(maxsize=4096)
def _epsilon(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    return rdp.epsilon(list(history), delta)


def _check_anchors(
    ledgers: dict[str, PartyLedger],
    listed: set[str],
    runs: set[int] | None,
    problems: list[Problem],
) -> None:
    """Every head a receiver recorded in this run must be in the sender's ledger, signed by it.

    A node on the SuperLink that the federation does not list may answer the roll call (which
    must ask every node who it is) and so leave its head in the coordinator's ledger; it takes
    no part in the run, so its ledger is not asked for.
    """
    for receiver in ledgers.values():
        for entry in receiver.entries:
            raw = entry.get("peer_head")
            if not raw or not in_runs(entry, runs):
                continue
            head = SignedHead.from_dict(raw)
            sender = ledgers.get(head.party)
            where = f"head recorded by {receiver.party} at its entry {entry['index']}"
            if sender is None and head.party not in listed:
                continue
            if sender is None:
                problems.append(Problem(head.party, head.index, f"{where}, but no ledger"))
                continue
            kept = sender.entries[head.index]["hash"] if head.index < len(sender.entries) else None
            if kept == head.hash:
                continue  # the sender's verified chain vouches for it: no signature to check
            if not head.valid_for(sender.public_key or ""):
                what = f"{where} is not signed by its ledger's key (ledger rewritten?)"
            elif kept is None:
                what = f"{where}, but the ledger ends before it (truncated)"
            else:
                what = f"{where} differs: ledger rewritten"
            problems.append(Problem(head.party, head.index, what))


def node_sites(coordinator: PartyLedger) -> dict[int, str]:
    """Which site each node id is, from the replies the coordinator recorded."""
    return {
        e["node"]: e["peer"]
        for e in coordinator.entries
        if e.get("direction") == "in" and e.get("peer") and "node" in e
    }


def _check_transfers(
    ledgers: dict[str, PartyLedger],
    listed: set[str],
    runs: set[int] | None,
    problems: list[Problem],
) -> None:
    """Each message of this run recorded as sent is recorded as received, digest and size equal.

    A party the federation does not list may only have been asked who it is: anything more
    sent to it is a problem, and its side of the roll call is not asked for.
    """
    coordinator = ledgers.get(COORDINATOR)
    if coordinator is None:
        return
    site_of_node = node_sites(coordinator)
    stopped = cut_off(coordinator)
    undelivered = {  # (addressee, digest) of instructions answered by an error
        (site_of_node.get(e.get("node")), e["undelivered"])
        for e in coordinator.entries
        if e.get("undelivered")
    }
    sides: dict[tuple[str, str, str, int], list[tuple[str, int]]] = defaultdict(list)
    for ledger in ledgers.values():
        for entry in ledger.entries:
            if entry.get("direction") not in ("in", "out") or "sha256" not in entry:
                continue
            if not in_runs(entry, runs):
                continue
            played = int(entry.get("round") or 0)
            if played > stopped.get(entry.get("run"), played):
                continue  # a round the coordinator stopped in, played again when resumed
            peer = entry.get("peer") or site_of_node.get(entry.get("node"))
            if peer is None:
                continue
            if peer not in listed:
                if entry["direction"] == "out" and "arrays" in entry.get("carries", []):
                    what = f"sent parameters to {peer}, a party the federation does not list"
                    problems.append(Problem(ledger.party, entry["index"], what))
                continue
            sender, receiver = (
                (ledger.party, peer) if entry["direction"] == "out" else (peer, ledger.party)
            )
            if (receiver, entry["sha256"]) in undelivered:
                continue  # answered by an error: it may or may not have arrived, on both sides
            key = (sender, receiver, entry["sha256"], entry["bytes"])
            sides[key].append((ledger.party, entry["index"]))
    for (sender, receiver, _, _), recorded in sides.items():
        by = {party for party, _ in recorded}
        if by != {sender, receiver}:
            missing = receiver if sender in by else sender
            party, index = recorded[0]
            side = "receipt" if missing == receiver else "sending"
            what = f"transfer {sender} -> {receiver} has no {side} in {missing}'s ledger"
            problems.append(Problem(party, index, what))
    _check_sealed(ledgers, runs, problems)


def _check_sealed(
    ledgers: dict[str, PartyLedger], runs: set[int] | None, problems: list[Problem]
) -> None:
    """A sealed payload a site received in this run must be one its sender says it sealed.

    A site's ledger spans every run it joined; payloads of other runs, from peers
    this run may not have, are not this run's to check.
    """
    sealed = {
        (ledger.party, item["peer"], item["sha256"])
        for ledger in ledgers.values()
        if ledger.party != COORDINATOR
        for entry in ledger.entries
        for item in entry.get("sealed_for", [])
    }
    for ledger in ledgers.values():
        if ledger.party == COORDINATOR:
            continue
        for entry in ledger.entries:
            if not in_runs(entry, runs):
                continue
            for item in entry.get("sealed_from", []):
                if (item["peer"], ledger.party, item["sha256"]) not in sealed:
                    problems.append(
                        Problem(
                            ledger.party,
                            entry["index"],
                            f"payload from {item['peer']} that {item['peer']} never sealed",
                        )
                    )
