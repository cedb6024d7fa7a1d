"""The federation roster: every site's name, country and public keys, pinned by each site.

Without it a site learns its peers' sealing keys and countries from the
relay, and a relay that hands out its own key for a peer reads that peer's
payloads, or one that relabels a peer's country makes the egress guard
approve a transfer the residency policy forbids. The coordinator builds the
roster from the public files the sites send (``public.toml``, written by
``site init``); each site's operator pins its sha256 in ``site.toml``, as
for an app, and keeps the file beside it. From then on the site holds every
instruction to the roster, and the auditor every ledger.

The file is TOML, and its sha256 is over its exact bytes: what an operator
compares is what the site reads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flowerbed.config import Federation, country_code, one_line, read_toml
from flowerbed.errors import ConfigError
from flowerbed.run_layout import ROSTER_FILE

__all__ = ["PUBLIC_FILE", "ROSTER_FILE", "PinnedRoster", "Roster", "RosterSite"]

PUBLIC_FILE = "public.toml"
KEY_HEX_LENGTH = 64  # a raw Ed25519 or X25519 public key, 32 bytes in hex


class RosterSite(BaseModel):
    """One site as the federation knows it: public facts only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    country: str
    ledger_key: str = Field(description="Ed25519, raw, hex: verifies the site's ledger heads")
    sealing_key: str = Field(description="X25519, raw, hex: what peers seal payloads for")
    supernode_key: str = Field("", description="OpenSSH: Flower authenticates the SuperNode")

    @field_validator("country", mode="before")
    @classmethod
    def _iso_country(cls, code: Any) -> str:
        return country_code(code)

    @field_validator("ledger_key", "sealing_key")
    @classmethod
    def _raw_key(cls, value: str) -> str:
        if len(value) != KEY_HEX_LENGTH or not all(c in "0123456789abcdef" for c in value):
            raise ValueError(f"{value!r} is not a raw public key (64 hex digits)")
        return value


class Roster(BaseModel):
    """Every site of one federation and the coordinator's country."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    coordinator_country: str
    sites: list[RosterSite]

    @field_validator("coordinator_country", mode="before")
    @classmethod
    def _iso_country(cls, code: Any) -> str:
        return country_code(code)

    @field_validator("sites")
    @classmethod
    def _unique(cls, sites: list[RosterSite]) -> list[RosterSite]:
        for field in ("name", "ledger_key", "sealing_key"):
            values = [getattr(site, field) for site in sites]
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"two sites share the {field.replace('_', ' ')} {twice[0]}")
        return sites

    def site(self, name: str) -> RosterSite | None:
        return next((site for site in self.sites if site.name == name), None)

    def to_bytes(self) -> bytes:
        return tomli_w.dumps(self.model_dump(mode="json")).encode()

    def differences(
        self, keys: dict[str, bytes], countries: dict[str, str], names: set[str] = frozenset()
    ) -> list[str]:
        """What an instruction says about peers that this roster does not: one phrase each.

        ``keys`` are sealing keys by site, ``countries`` countries by site,
        ``names`` other sites it names (senders, addressees).
        """
        said = []
        for name in sorted({*keys, *countries, *names}):
            pinned = self.site(name)
            if pinned is None:
                said.append(f"{name} is not on the roster")
                continue
            if name in keys and bytes(keys[name]).hex() != pinned.sealing_key:
                said.append(f"the sealing key given for {name} is not its roster key")
            if name in countries and str(countries[name]) != pinned.country:
                said.append(
                    f"{name} is placed in {countries[name]}, the roster places it in "
                    f"{pinned.country}"
                )
        return said

    def federation_problems(self, federation: Federation) -> list[str]:
        """Where a federation file disagrees with this roster: sites it lists that the roster
        does not, in another country, or a coordinator elsewhere."""
        said = []
        for site in federation.sites:
            pinned = self.site(site.name)
            if pinned is None:
                said.append(f"site {site.name} is not on the roster")
            elif pinned.country != site.country:
                said.append(
                    f"site {site.name} is in {site.country} here, in {pinned.country} on the roster"
                )
        if federation.coordinator_country != self.coordinator_country:
            said.append(
                f"the coordinator is in {federation.coordinator_country} here, in "
                f"{self.coordinator_country} on the roster"
            )
        return said


class PinnedRoster(NamedTuple):
    """A roster and the sha256 of the exact bytes it was read from."""

    roster: Roster
    sha256: str


def roster_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def write_roster(roster: Roster, path: Path) -> str:
    """Write ``roster`` to ``path``; its sha256, which every site pins."""
    content = roster.to_bytes()
    Path(path).write_bytes(content)
    return roster_hash(content)


def read_roster(path: Path) -> PinnedRoster:
    """The roster in ``path`` and the sha256 of its bytes; ``ConfigError`` if unreadable."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the roster ({err.strerror})") from None
    return PinnedRoster(_parse(read_toml(path), str(path)), roster_hash(content))


def federation_roster(federation: Federation) -> PinnedRoster | None:
    """The roster the federation file names, checked against it; None if it names none.

    ``ConfigError`` if a listed site is not on it, or in another country.
    """
    if federation.coordinator.roster is None:
        return None
    pinned = read_roster(Path(federation.coordinator.roster))
    problems = pinned.roster.federation_problems(federation)
    if problems:
        raise ConfigError(
            f"{federation.coordinator.roster}: {problems[0]}; build the roster again from the "
            "sites' public.toml (`flowerbed coordinator roster`), or fix the federation file"
        )
    return pinned


def build_roster(public_files: list[Path], coordinator_country: str) -> Roster:
    """A roster of the sites whose ``public.toml`` files are given."""
    sites = [_parse_site(read_toml(Path(path)), str(path)) for path in public_files]
    try:
        return Roster(coordinator_country=coordinator_country, sites=sites)
    except ValidationError as err:
        raise ConfigError(one_line("roster", err)) from None


def public_toml(site: RosterSite) -> bytes:
    """A site's public file: what it sends the coordinator for the roster."""
    return tomli_w.dumps({"site": site.model_dump(mode="json")}).encode()


def _parse(raw: dict[str, Any], source: str) -> Roster:
    try:
        return Roster(**raw)
    except ValidationError as err:
        raise ConfigError(one_line(source, err)) from None


def _parse_site(raw: dict[str, Any], source: str) -> RosterSite:
    try:
        return RosterSite(**raw.get("site", {}))
    except (ValidationError, TypeError) as err:
        detail = one_line(source, err) if isinstance(err, ValidationError) else f"{source}: {err}"
        raise ConfigError(f"{detail} (a site's public.toml, from `flowerbed site init`)") from None
