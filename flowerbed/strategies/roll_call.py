"""The roll call before round 1: who is connected, where they are, what their data looks like.

Every strategy starts from it. The coordinator asks each connected node for
its identity (name, country, X25519 public key, and the shape and classes
of its images: metadata, never data) and checks it against the federation
before a single model leaves the coordinator: an unlisted node, a site in
another country than the federation places it, or sites whose data do not
fit one model stop the run with the reason. The model's shape comes from
the sites' answers, so a coordinator never needs to read anyone's data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flwr.app import RecordDict
from flwr.serverapp import Grid

from flowerbed import records as R
from flowerbed.config import Federation
from flowerbed.errors import RunStopped
from flowerbed.models import ModelSpec

CONNECT_POLL_S = 1.0


@dataclass(frozen=True)
class Roll:
    """The federation's sites as they answered, in federation order."""

    names: list[str]
    node_ids: list[int]
    public_keys: list[bytes]
    spec: ModelSpec

    def name_of(self, node_id: int) -> str:
        """The site behind a node id (its node id if it never answered the roll call)."""
        return dict(zip(self.node_ids, self.names, strict=True)).get(node_id, f"node {node_id}")


def roll_call(grid: Grid, federation: Federation, timeout: float) -> Roll:
    """Wait for every listed site, ask each who it is, check the answers; ``RunStopped`` if off."""
    names = [site.name for site in federation.sites]
    deadline = time.monotonic() + timeout
    while len(node_ids := list(grid.get_node_ids())) < len(names):
        if time.monotonic() > deadline:
            raise RunStopped(f"only {len(node_ids)} of {len(names)} sites connected in time")
        time.sleep(CONNECT_POLL_S)
    queries = [
        grid.create_message(RecordDict(), f"query.{R.IDENTITY_QUERY}", node, "identity")
        for node in node_ids
    ]
    answers: dict[str, tuple[int, bytes, tuple[int, ...], int]] = {}
    for reply in grid.send_and_receive(queries, timeout=timeout):
        if reply.has_error():
            raise RunStopped(f"a site failed to identify itself: {reply.error.reason}")
        site = reply.content[R.SITE]
        name = str(site[R.SITE_NAME])
        _check_identity(federation, name, str(site[R.SITE_COUNTRY]))
        answers[name] = (
            reply.metadata.src_node_id,
            bytes(site[R.SITE_PUBLIC_KEY]),
            tuple(int(d) for d in site[R.SITE_SAMPLE_SHAPE]),
            int(site[R.SITE_CLASSES]),
        )
    missing = [name for name in names if name not in answers]
    if missing:
        raise RunStopped(f"sites {', '.join(missing)} did not answer; start their SuperNodes")
    return Roll(
        names,
        [answers[n][0] for n in names],
        [answers[n][1] for n in names],
        _common_spec(federation.run.model, {n: answers[n][2:] for n in names}),
    )


def _check_identity(federation: Federation, name: str, country: str) -> None:
    expected = federation.country_of(name)
    if expected is None or name not in {site.name for site in federation.sites}:
        raise RunStopped(f"a node calls itself {name!r}, which the federation does not list")
    if country != expected:
        raise RunStopped(
            f"site {name} says it is in {country} but the federation places it in "
            f"{expected}; the residency plan would not hold, fix one of them"
        )


def _common_spec(model: str, data: dict[str, tuple[tuple[int, ...], int]]) -> ModelSpec:
    """One model for every site: same channels, spatial dims and classes, or a clear stop."""
    kinds = {(len(shape) - 1, shape[0], classes): name for name, (shape, classes) in data.items()}
    if len(kinds) > 1:
        described = "; ".join(
            f"{name}: {dims}D, {channels} channel(s), {classes} classes"
            for (dims, channels, classes), name in kinds.items()
        )
        raise RunStopped(
            f"the sites' images do not fit one model ({described}); give every site data of "
            "the same kind"
        )
    (dims, channels, classes), _ = next(iter(kinds.items()))
    return ModelSpec(model, spatial_dims=dims, in_channels=channels, out_channels=classes)
