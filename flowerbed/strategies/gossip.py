"""Serverless peer averaging: the ServerApp only schedules and relays sealed payloads.

One round is one round trip per site (see ``../shared/DESIGN.md``): the
relay sends each site its inbox (payloads its neighbours sealed for it last
round, with Metropolis-Hastings weights over the peers that answered) and
the names and public keys of this round's addressees; the site mixes,
scores the mixed model (the previous round's outcome), trains, seals once
per addressee and replies. One last message after the last round asks the
sites only to mix and score, so N rounds take N + 1 round trips (FedAvg
takes 2N: one to train, one to evaluate). The relay moves
bytes it cannot open and never holds a model, so the run has no global
model: each site keeps its own, at home.

Each reply also carries a sketch of the model the site sealed, which its
addressees check against their payloads; from the sketches alone the relay
flags a site that only mixed and did not train (``honesty.training``).

The relay takes the sites' node ids and X25519 public keys from the roll
call (``roll_call``) and plans the topology under the residency policy:
forbidden edges are dropped and a graph left disconnected stops the run
before it starts.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable
from logging import INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result

from flowerbed.audit.residency import ResidencyPolicy
from flowerbed.config import Federation
from flowerbed.errors import ConfigError, RunStopped
from flowerbed.honesty import reasons
from flowerbed.honesty.sketch import sketch, valid_sketch
from flowerbed.honesty.training import TrainingCheck
from flowerbed.protocol import records as R
from flowerbed.strategies.attendance import require_quorum, take_attendance
from flowerbed.strategies.observer import RoundObserver, SiteRow
from flowerbed.strategies.roll import Roll
from flowerbed.strategies.topology import Topology, build_topology

CONNECT_POLL_S = 1.0


def plan_topology(federation: Federation) -> Topology:
    """The run's topology minus the edges the residency policy forbids; refuses a split graph."""
    names = [site.name for site in federation.sites]
    countries = [site.country for site in federation.sites]
    policy = ResidencyPolicy(federation.residency)
    topology = build_topology(
        federation.run.topology, names, federation.run.seed, federation.run.degree
    ).without(lambda s, r: not policy.permits(countries[s], countries[r]))
    parts = topology.components()
    if len(parts) > 1:
        described = " | ".join(
            f"{'/'.join(sorted({countries[i] for i in part}))}: "
            + ", ".join(names[i] for i in part)
            for part in parts
        )
        raise ConfigError(
            f"residency policy cuts the {federation.run.topology} topology into "
            f"{len(parts)} groups that never exchange models ({described}); allow transfers "
            "between these countries in [residency] or choose a denser topology"
        )
    return topology


class GossipRelay:
    """Schedules gossip rounds and relays sealed payloads; holds no model."""

    def __init__(self, federation: Federation, observer: RoundObserver, roll: Roll) -> None:
        self.federation = federation
        self.observer = observer
        self.roll = roll
        self.topology = plan_topology(federation)
        self.names = roll.names
        self._excluding = federation.run.honesty == "exclude"

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int,
        timeout: float,
        train_config: ConfigRecord,
        evaluate_config: ConfigRecord,
    ) -> Result:
        """Run ``num_rounds`` of gossip. Of ``initial_arrays`` (the public seeded model every
        site builds for itself) only the sketch is kept; ``evaluate_config`` is unused: each
        site evaluates in its train reply."""
        nodes, keys = self.roll.node_ids, self.roll.public_keys
        log(
            INFO,
            "gossip on %s: %d sites, spectral gap %.3f",
            self.topology.name,
            len(nodes),
            self.topology.spectral_gap(),
        )
        inbox: dict[int, dict[int, bytes]] = {}
        weights: dict[int, dict[int, float]] = {}
        claims: dict[int, ConfigRecord] = {}  # sender -> probe answer for the payloads it sealed
        start = sketch(initial_arrays.to_torch_state_dict(), int(train_config[R.SEED]))
        training = TrainingCheck(start, len(nodes))
        seed = 0
        for server_round in range(1, num_rounds + 2):
            final = server_round > num_rounds
            seed, previous = secrets.randbelow(2**31), seed
            config = ConfigRecord(
                {**train_config, R.PROBE_SEED: seed, R.PREVIOUS_PROBE_SEED: previous}
            )
            messages = [
                self._instruction(
                    grid, node, site, server_round, config, (inbox, weights, claims), keys, final
                )
                for site, node in enumerate(nodes)
            ]
            attendance = take_attendance(
                server_round, "train", self.roll,
                grid.send_and_receive(messages, timeout=timeout), timeout, self.observer,
            )  # fmt: skip
            replies = attendance.answered
            answered, sealed, train_rows, test_rows = self._collect(server_round, nodes, replies)
            claims = self._claims_and_flags(server_round, nodes, replies)
            if server_round > 1:  # this round's replies scored the previous round's outcome
                self.observer.site_rows(test_rows)
                self.observer.round_done(server_round - 1)
            if final:
                break
            untrained = self._check_training(server_round, training, inbox, claims, train_rows)
            train_rows = [
                dataclasses.replace(row, flag=untrained.get(row.site, "")) for row in train_rows
            ]
            self._report_training(server_round, answered, train_rows, attendance.missing)
            if self.federation.run.honesty == "exclude":
                answered -= {self.names.index(site) for site in untrained}
            weights = self.topology.weights(server_round, answered)
            inbox = {
                receiver: {sender: sealed[sender][receiver] for sender in row}
                for receiver, row in weights.items()
            }
        return Result()

    def _instruction(
        self,
        grid: Grid,
        node: int,
        site: int,
        server_round: int,
        train_config: ConfigRecord,
        last_round: tuple[
            dict[int, dict[int, bytes]], dict[int, dict[int, float]], dict[int, ConfigRecord]
        ],
        keys: list[bytes],
        final: bool,
    ) -> Message:
        inbox, weights, claims = last_round
        send_to = [] if final else self.topology.receivers_of(site, server_round)
        heard = inbox.get(site, {})
        content = RecordDict(
            {
                R.CONFIG: ConfigRecord(
                    {**train_config, R.SERVER_ROUND: server_round, R.MIX_ONLY: final}
                ),
                R.INBOX: ConfigRecord({self.names[s]: blob for s, blob in heard.items()}),
                R.MIX_WEIGHTS: ConfigRecord(
                    {self.names[s]: w for s, w in weights.get(site, {}).items()}
                ),
                R.PEER_KEYS: ConfigRecord({self.names[p]: keys[p] for p in {*heard, *send_to}}),
                R.SEND_TO: ConfigRecord({R.SEND_TO: [self.names[r] for r in send_to]}),
                R.PEER_COUNTRIES: ConfigRecord(
                    {self.names[r]: self.federation.sites[r].country for r in send_to}
                ),
                R.PROBE_CLAIMS: ConfigRecord(
                    {self.names[s]: claims[s][R.PROBE_DIGEST] for s in heard if s in claims}
                ),
                R.SKETCH_CLAIMS: ConfigRecord(
                    {
                        self.names[s]: claims[s][R.PROBE_SKETCH]
                        for s in heard
                        if s in claims and R.PROBE_SKETCH in claims[s]
                    }
                ),
            }
        )
        return grid.create_message(content, "train", node, str(server_round))

    def _collect(
        self, server_round: int, nodes: list[int], replies: Iterable[Message]
    ) -> tuple[set[int], dict[int, dict[int, bytes]], list[SiteRow], list[SiteRow]]:
        """Of the replies without error: sites that answered with payloads for exactly their
        addressees, the payloads, this round's training rows and the test rows of the previous
        round's outcome."""
        position = {node: site for site, node in enumerate(nodes)}
        answered: set[int] = set()
        sealed: dict[int, dict[int, bytes]] = {}
        train_rows, test_rows = [], []
        for reply in replies:
            site = position[reply.metadata.src_node_id]
            if R.TEST_METRICS in reply.content:
                test_rows.append(
                    SiteRow.from_reply(server_round - 1, "test", reply, R.TEST_METRICS)
                )
            if R.SEALED not in reply.content:
                continue  # the last, mix-only message
            expected = self.topology.receivers_of(site, server_round)
            blobs = reply.content[R.SEALED]
            if {self.names[r] for r in expected} != set(blobs.keys()):
                self.observer.site_failed(
                    server_round, "train", self.names[site], "sealed for other sites"
                )
                continue
            answered.add(site)
            sealed[site] = {r: bytes(blobs[self.names[r]]) for r in expected}
            train_rows.append(SiteRow.from_reply(server_round, "train", reply))
        return answered, sealed, train_rows, test_rows

    def _claims_and_flags(
        self, server_round: int, nodes: list[int], replies: list[Message]
    ) -> dict[int, ConfigRecord]:
        """Each sender's probe answer (digest and sketch), to pass on; neighbours' flags, to the
        observer."""
        position = {node: site for site, node in enumerate(nodes)}
        claims = {}
        for reply in replies:
            reporter = self.names[position[reply.metadata.src_node_id]]
            answer = reply.content.config_records.get(R.PROBE)
            if answer is not None and R.PROBE_DIGEST in answer:
                claims[position[reply.metadata.src_node_id]] = _claim(answer)
            for peer, code in reply.content.config_records.get(R.FLAGS, {}).items():
                # a hostile site must not stop the relay with a made-up code
                if str(code) not in reasons.NEIGHBOUR_CODES:
                    log(
                        WARNING,
                        "round %d: %s sent an unknown flag; ignored",
                        server_round - 1,
                        reporter,
                    )
                    continue
                self.observer.site_flagged(
                    server_round - 1, peer, reasons.sentence(str(code)), self._excluding, reporter
                )
        return claims

    def _check_training(
        self,
        server_round: int,
        training: TrainingCheck,
        delivered: dict[int, dict[int, bytes]],
        claims: dict[int, ConfigRecord],
        train_rows: list[SiteRow],
    ) -> dict[str, str]:
        """Site name -> why, for the sites that sealed payloads without training this round;
        each also reported to the observer.

        ``train_rows`` are the rows of the sites that sealed payloads; a site
        whose budget is spent says so in its row (``refused``) and is not
        expected to train.
        """
        position = {name: site for site, name in enumerate(self.names)}
        sketches, refused = {}, set()
        for row in train_rows:
            site = position[row.site]
            answer = claims.get(site, {})
            sketches[site] = list(answer[R.PROBE_SKETCH]) if R.PROBE_SKETCH in answer else None
            if row.status == "refused":
                refused.add(site)
        flags = training.flag(delivered, sketches, refused)
        named = {self.names[site]: reason for site, reason in flags.items()}
        for site, reason in named.items():
            self.observer.site_flagged(server_round, site, reason, self._excluding, None)
        return named

    def _report_training(
        self,
        server_round: int,
        answered: set[int],
        train_rows: list[SiteRow],
        missing: dict[str, str],
    ) -> None:
        self.observer.site_rows(train_rows)
        require_quorum(server_round, len(answered), missing, self.federation.min_sites)
        if all(row.status == "refused" for row in train_rows):
            raise RunStopped(
                f"round {server_round}: no site could train (every privacy budget is spent); "
                "each site keeps its last model"
            )


def _claim(answer: ConfigRecord) -> ConfigRecord:
    """A site's probe answer as the relay passes it on: its digest, and its sketch only if it
    is one (a made-up sketch is dropped, and the site is flagged for giving none)."""
    claim = ConfigRecord({R.PROBE_DIGEST: str(answer[R.PROBE_DIGEST])})
    sketched = valid_sketch(answer.get(R.PROBE_SKETCH))
    if sketched is not None:
        claim[R.PROBE_SKETCH] = sketched
    return claim


def gossip(federation: Federation, observer: RoundObserver, roll: Roll) -> GossipRelay:
    return GossipRelay(federation, observer, roll)
