"""The roll call before round 1: who is connected, where they are, what their data looks like.

Every strategy starts from it. The coordinator asks each connected node for
its identity (name, country, X25519 public key, and the shape and classes
of its images: metadata, never data) and checks it against the federation
before a single model leaves the coordinator: a listed site that does not
answer (or refuses the app), a site in another country than the federation
places it, or sites whose data do not fit one model stop the run with the
reason. A node the federation does not list (one SuperLink may serve
several federations) is left out and sent nothing more. The model's shape comes from
the sites' answers, so a coordinator never needs to read anyone's data.
"""

from __future__ import annotations

import time
from logging import INFO

from flwr.app import ConfigRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid

from flowerbed.audit.roster import PinnedRoster, federation_roster
from flowerbed.catalogue import CLASSIFICATION, is_own_network
from flowerbed.config import Federation
from flowerbed.errors import RunStopped
from flowerbed.models.network_source import network_code
from flowerbed.protocol import records as R
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.strategies.attendance import why_failed
from flowerbed.strategies.roll import Roll

CONNECT_POLL_S = 1.0


class RollGrid:
    """The grid as Flower's strategies see it: the roll's nodes, connected or not.

    Flower's sampling waits until ``min_available_nodes`` nodes are connected
    (forever, once one has died) and samples among whatever is connected;
    through this view it addresses exactly the sites of the roll call, and a
    node gone answers with Flower's error instead of stalling the run.
    """

    def __init__(self, grid: Grid, node_ids: list[int]) -> None:
        self._grid, self._node_ids = grid, node_ids

    def get_node_ids(self) -> list[int]:
        return list(self._node_ids)

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


def roll_call(
    grid: Grid,
    federation: Federation,
    timeout: float,
    continues: list[int] | None = None,
    rounds_done: int = 0,
) -> Roll:
    """Wait for every listed site, ask each who it is, check the answers; ``RunStopped`` if off.

    ``continues``: a resumed run's earlier Flower runs, whose spend each site counts, and
    ``rounds_done`` the rounds they completed."""
    names = [site.name for site in federation.sites]
    deadline = time.monotonic() + timeout
    while len(node_ids := list(grid.get_node_ids())) < len(names):
        if time.monotonic() > deadline:
            raise RunStopped(f"only {len(node_ids)} of {len(names)} sites connected in time")
        time.sleep(CONNECT_POLL_S)
    pinned = federation_roster(federation)

    def ask() -> RecordDict:
        return query_of(federation, pinned, continues, rounds_done)

    query = ask()  # what the answers are checked against
    queries = [  # each its own record: the ledger attaches a head to each message's content
        grid.create_message(ask(), f"query.{R.IDENTITY_QUERY}", node, "identity")
        for node in node_ids
    ]
    answers: dict[str, tuple[int, bytes, tuple[int, ...], int, str]] = {}
    site_errors: dict[str, str] = {}  # site -> its own one-line error
    refusals: list[str] = []  # Flower's errors: an unapproved app, a node gone
    for reply in grid.send_and_receive(queries, timeout=timeout):
        if reply.has_error() and reply.error.code == R.SITE_ERROR:
            name, message = R.split_site_error(reply.error.reason)
            if name in names:
                site_errors[name] = message
            else:  # another federation's site refusing this one's roll call: not ours
                log(INFO, "node %r, not in this federation, refused the roll call", name)
            continue
        if reply.has_error():
            refusals.append(f"node {reply.metadata.src_node_id}: {why_failed(reply)}")
            continue
        site = reply.content[R.SITE]
        name = str(site[R.SITE_NAME])
        if not _listed(federation, name, str(site[R.SITE_COUNTRY])):
            continue  # another federation's site on the same SuperLink: it gets nothing
        _check_network_code(query, name, site)
        _check_sealing_key(pinned, name, bytes(site[R.SITE_PUBLIC_KEY]))
        answers[name] = (
            reply.metadata.src_node_id,
            bytes(site[R.SITE_PUBLIC_KEY]),
            tuple(int(d) for d in site[R.SITE_SAMPLE_SHAPE]),
            int(site[R.SITE_CLASSES]),
            str(site.get(R.SITE_TASK, CLASSIFICATION)),
        )
    silent = [name for name in names if name not in answers and name not in site_errors]
    if site_errors or silent:
        raise RunStopped(_roll_call_failure(site_errors, silent, refusals))
    spec, task = _common_spec(federation, {n: answers[n][2:] for n in names})
    return Roll(names, [answers[n][0] for n in names], [answers[n][1] for n in names], spec, task)


def _check_network_code(query: RecordDict, name: str, site: ConfigRecord) -> None:
    """``RunStopped`` if a site answered for an own network with another source than ours.

    An honest site refuses such a roll call itself; this holds one that did not to it.
    """
    asked = query.config_records.get(R.CONFIG)
    if asked is None or R.NETWORK_QUERY not in asked:
        return
    expected, code = str(asked[R.SITE_NETWORK_CODE]), str(site.get(R.SITE_NETWORK_CODE, ""))
    if code != expected:
        raise RunStopped(
            f"site {name} runs network {asked[R.NETWORK_QUERY]} from source sha256 "
            f"{code[:12] or 'none'}, not the coordinator's {expected[:12]}; every site must "
            "install the same version"
        )


def _check_sealing_key(pinned: PinnedRoster | None, name: str, key: bytes) -> None:
    """``RunStopped`` if a site answered with another sealing key than its roster entry.

    Its honest peers would refuse to seal for the key the roster names
    anyway; this names the site before a round is played.
    """
    entry = None if pinned is None else pinned.roster.site(name)
    if entry is not None and key.hex() != entry.sealing_key:
        raise RunStopped(
            f"site {name} answered with a sealing key that is not its roster key; it must "
            "run from the site folder whose public.toml the roster was built from"
        )


def query_of(
    federation: Federation,
    pinned: PinnedRoster | None = None,
    continues: list[int] | None = None,
    rounds_done: int = 0,
) -> RecordDict:
    """The roll-call question. It names the run's rounds, epochs and batch size, which each
    site prices against its lifetime privacy budget (with a resumed run's earlier Flower
    runs, whose steps it has already spent); the roster's sha256, which every site
    holds to the one it pinned (``hospital_client.site_roster``); and an own network and the
    hash of its source, which every site must match
    (``hospital_client.identity.own_network_code``)."""
    run = federation.run  # for each site to price the run against its lifetime budget
    asked: dict[str, str | int | list[int]] = {
        R.NUM_ROUNDS: run.rounds, R.LOCAL_EPOCHS: run.local_epochs, R.BATCH_SIZE: run.batch_size
    }  # fmt: skip
    if continues:
        asked[R.CONTINUES] = list(continues)
        asked[R.ROUNDS_DONE] = rounds_done
    if pinned is not None:
        asked[R.ROSTER_SHA256] = pinned.sha256
    network = federation.run.model
    if network is not None and is_own_network(network):
        asked |= {R.NETWORK_QUERY: network, R.SITE_NETWORK_CODE: network_code(network)}
    return RecordDict({R.CONFIG: ConfigRecord(asked)})


def _roll_call_failure(site_errors: dict[str, str], silent: list[str], refusals: list[str]) -> str:
    """Why the roll call failed: each failing site's own error; the approval hint only for
    sites that did not answer, or whose SuperNode refused the app."""
    parts = [f"site {site}: {message}" for site, message in sorted(site_errors.items())]
    if silent:
        said = f" (errors: {'; '.join(refusals)})" if refusals else ""
        parts.append(
            f"sites {', '.join(silent)} did not answer the roll call{said}; start their "
            "SuperNodes, and check that they approved this app"
        )
    return "; ".join(parts)


def _listed(federation: Federation, name: str, country: str) -> bool:
    """Whether the federation lists this site; ``RunStopped`` if it places it elsewhere."""
    expected = {site.name: site.country for site in federation.sites}
    if name not in expected:
        log(INFO, "node %r is not in this federation; it takes no part", name)
        return False
    if country != expected[name]:
        raise RunStopped(
            f"site {name} says it is in {country} but the federation places it in "
            f"{expected[name]}; the residency plan would not hold, fix one of them"
        )
    return True


def _common_spec(
    federation: Federation, data: dict[str, tuple[tuple[int, ...], int, str]]
) -> tuple[ModelSpec, str]:
    """One model and task for every site: same task, image shape and classes, or a stop."""
    kinds = {value: name for name, value in data.items()}
    if len(kinds) > 1:
        described = "; ".join(
            f"{name}: {task}, images {list(shape)}, {classes} classes"
            for (shape, classes, task), name in kinds.items()
        )
        raise RunStopped(
            f"the sites' images do not fit one model ({described}); give every site data of "
            "the same kind and size (--image-size / [data] image_size)"
        )
    (shape, classes, task), _ = next(iter(kinds.items()))
    return ModelSpec.for_images(federation.network_for(task), shape, classes), task
