"""The egress guard: what may leave a site, and what a site accepts.

Outbound, only these leave, each checked against what was declared:

* ``arrays``: model parameters, float arrays whose names and shapes are
  exactly the declared model's (never an image batch or labels);
* ``metrics`` / ``test-metrics``: the declared metric names, numbers only;
* ``site``: the site's own name, country and public key;
* ``probe``: one SHA-256 digest and, from a gossip site, a sketch of
  ``honesty.sketch.SKETCH_SIZE`` finite numbers, nothing else;
* ``sealed``: ciphertext for the addressees this round's instruction named,
  in countries the residency policy lets this site send to;
* ``ledger-head``: added after the guard by the ledger (see ``audit_mod``).

Parameters sent to the coordinator obey the residency policy too. Anything
else (a string, a path, an unknown record or key) is refused: nothing is
sent, the refusal is written to the site's ledger, and the site fails loudly.
Inbound, a message with a record this site does not know is refused before
any code looks at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from flowerbed.audit.residency import ResidencyPolicy
from flowerbed.catalogue import TASKS
from flowerbed.config import COORDINATOR, Federation, SiteSettings
from flowerbed.errors import SiteRefused
from flowerbed.honesty import reasons
from flowerbed.honesty.sketch import SKETCH_SIZE, valid_sketch
from flowerbed.hospital_client.site_folder import is_sha256
from flowerbed.protocol import records as R
from flowerbed.protocol.model_spec import ModelSpec

MAX_SAMPLE_DIMS = 4  # channels + up to three spatial dims
INBOUND = {name: ArrayRecord if name == R.ARRAYS else ConfigRecord for name in R.INBOUND_RECORDS}
FLOAT_KINDS = ("f",)


class EgressRefused(SiteRefused):
    """The guard stopped a message; the reason names the record and why."""


@lru_cache(maxsize=8)
def declared_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the declared model.

    Built on the first message that carries parameters: a roll call, which carries
    none, answers without importing the networks (``hospital_client.app``).
    """
    from flowerbed.models.factory import build_model

    return {name: tuple(t.shape) for name, t in build_model(spec).state_dict().items()}


def _spec(instruction: Message) -> ModelSpec | None:
    config = instruction.content.config_records.get(R.CONFIG)
    if config is None or R.MODEL not in config:
        return None
    return ModelSpec.from_config(config)


def check_inbound(instruction: Message, federation: Federation) -> None:
    """Refuse an instruction holding records this site does not know, or naming a network
    this site does not build (an own network its config does not name: building it would
    run code the coordinator chose)."""
    for name, record in instruction.content.items():
        expected = INBOUND.get(name)
        if expected is None or not isinstance(record, expected):
            raise EgressRefused(f"inbound record {name!r} is not one a site accepts; refused")
    spec = _spec(instruction)
    if spec is not None and not federation.builds(spec.name):
        raise EgressRefused(
            f"inbound: network {spec.name!r} is not built in and this site's config does not "
            "name it; refused"
        )
    arrays = instruction.content.array_records.get(R.ARRAYS)
    if arrays is not None:
        _check_parameters(arrays, spec, "inbound")


def check_outbound(
    reply: RecordDict, instruction: Message, federation: Federation, site: SiteSettings
) -> None:
    """Raise ``EgressRefused`` naming the first thing in ``reply`` that may not leave."""
    for problem in _outbound_problems(reply, instruction, federation, site):
        raise EgressRefused(f"{site.name}: {problem}; not sent")


def _outbound_problems(
    reply: RecordDict, instruction: Message, federation: Federation, site: SiteSettings
) -> Iterator[str]:
    policy = ResidencyPolicy(federation.residency)
    for name, record in reply.items():
        if name == R.ARRAYS and isinstance(record, ArrayRecord):
            if not policy.permits(site.country, federation.coordinator_country):
                yield (
                    f"parameters may not go to the coordinator in "
                    f"{federation.coordinator_country} (residency policy of {site.country})"
                )
            yield from _parameter_problems(record, _spec(instruction))
        elif name in (R.METRICS, R.TEST_METRICS) and isinstance(record, MetricRecord):
            yield from _metric_problems(name, record)
        elif name == R.SITE and isinstance(record, ConfigRecord):
            yield from _site_problems(record, site)
        elif name == R.PROBE and isinstance(record, ConfigRecord):
            yield from _probe_problems(record)
        elif name == R.FLAGS and isinstance(record, ConfigRecord):
            yield from _flag_problems(record, instruction)
        elif name == R.SEALED and isinstance(record, ConfigRecord):
            yield from _sealed_problems(record, instruction, federation, site, policy)
        else:
            yield f"record {name!r} ({type(record).__name__}) is not declared"


def _check_parameters(arrays: ArrayRecord, spec: ModelSpec | None, where: str) -> None:
    for problem in _parameter_problems(arrays, spec):
        raise EgressRefused(f"{where}: {problem}")


def _parameter_problems(arrays: ArrayRecord, spec: ModelSpec | None) -> Iterator[str]:
    if spec is None:
        yield "parameters without a declared model"
        return
    declared = declared_shapes(spec)
    if set(arrays.keys()) != set(declared):
        unknown = sorted(set(arrays.keys()) - set(declared)) or sorted(set(declared))
        yield f"arrays {unknown[:3]} are not the declared {spec.name}'s parameters"
        return
    for name, array in arrays.items():
        if tuple(array.shape) != declared[name] or np.dtype(array.dtype).kind not in FLOAT_KINDS:
            yield f"array {name!r} {array.dtype}{list(array.shape)} is not a declared parameter"


MAX_DP_ROWS = 64  # distinct (noise, sample rate) pairs in one round: in practice one or two


def _metric_problems(name: str, record: MetricRecord) -> Iterator[str]:
    for key, value in record.items():
        if key not in R.DECLARED_METRICS:
            yield f"metric {key!r} in {name!r} is not declared"
        elif key in R.DP_HISTORY:
            if not (isinstance(value, list) and len(value) <= MAX_DP_ROWS):
                yield f"metric {key!r} in {name!r} is not a short list of numbers"
        elif not isinstance(value, int | float):
            yield f"metric {key!r} in {name!r} is not a single number"


def _probe_problems(record: ConfigRecord) -> Iterator[str]:
    """A probe answer is one SHA-256 digest and at most a sketch of the model, nothing else."""
    if not set(record.keys()) <= {R.PROBE_DIGEST, R.PROBE_SKETCH} or not is_sha256(
        record.get(R.PROBE_DIGEST)
    ):
        yield "probe answer is not a single sha256 digest"
    if R.PROBE_SKETCH in record and valid_sketch(record[R.PROBE_SKETCH]) is None:
        yield f"probe sketch is not {SKETCH_SIZE} finite numbers"


def _flag_problems(record: ConfigRecord, instruction: Message) -> Iterator[str]:
    """Flags name neighbours whose payloads arrived, with a declared reason code only."""
    inbox = instruction.content.config_records.get(R.INBOX, {})
    for peer, code in record.items():
        if peer not in inbox:
            yield f"flag for {peer!r}, which sent this site nothing"
        elif not isinstance(code, str) or code not in reasons.NEIGHBOUR_CODES:
            yield f"flag reason for {peer!r} is not a declared code"


def _site_problems(record: ConfigRecord, site: SiteSettings) -> Iterator[str]:
    for key, value in record.items():
        if key not in R.SITE_KEYS:
            yield f"site record key {key!r} is not declared"
        elif key == R.SITE_NAME and value != site.name:
            yield f"site record names {value!r}, not this site"
        elif key == R.SITE_COUNTRY and value != site.country:
            yield f"site record places it in {value!r}, not {site.country}"
        elif key == R.SITE_PUBLIC_KEY and not (isinstance(value, bytes) and len(value) == 32):
            yield "site record's public key is not a 32-byte key"
        elif key == R.SITE_SAMPLE_SHAPE and not (
            isinstance(value, list)
            and 2 <= len(value) <= MAX_SAMPLE_DIMS
            and all(isinstance(d, int) for d in value)
        ):
            yield "site record's sample shape is not a short list of sizes"
        elif key == R.SITE_CLASSES and not isinstance(value, int):
            yield "site record's class count is not a number"
        elif key == R.SITE_TASK and value not in TASKS:
            yield "site record's task is not classification or segmentation"
        elif key == R.SITE_NETWORK_CODE and not is_sha256(value):
            yield "site record's network code is not a sha256 digest"


def _sealed_problems(
    record: ConfigRecord,
    instruction: Message,
    federation: Federation,
    site: SiteSettings,
    policy: ResidencyPolicy,
) -> Iterator[str]:
    send_to = instruction.content.config_records.get(R.SEND_TO)
    named = set(send_to[R.SEND_TO]) if send_to is not None else set()
    declared = instruction.content.config_records.get(R.PEER_COUNTRIES, ConfigRecord())
    for addressee, payload in record.items():
        country = federation.country_of(addressee) or declared.get(addressee)
        if addressee not in named or addressee == COORDINATOR:
            yield f"sealed payload for {addressee!r}, whom this round's instruction did not name"
        elif not isinstance(payload, bytes):
            yield f"sealed payload for {addressee!r} is not ciphertext"
        elif country is None:
            yield f"sealed payload for {addressee!r}, whose country is unknown"
        elif not policy.permits(site.country, str(country)):
            yield (
                f"sealed payload for {addressee} in {country}: the residency policy of "
                f"{site.country} forbids it"
            )
