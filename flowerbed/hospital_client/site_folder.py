"""A hospital's site folder: its config, its keys, its ledger and its model, at home.

Layout (``flowerbed site init`` writes it, every file mode 0600, folders 0700)::

    SITE_DIR/site.toml              name, country, data, budget, policy, approved apps, network
    SITE_DIR/keys/ledger.pem        Ed25519: signs the ledger heads that leave the site
    SITE_DIR/keys/sealing.pem       X25519: opens gossip payloads sealed for this site
    SITE_DIR/keys/supernode.pem     ECDSA P-384: Flower authenticates the SuperNode with it
    SITE_DIR/keys/supernode.pub     its public half (OpenSSH), for the coordinator to register
    SITE_DIR/public.toml            name, country and public keys, for the federation's roster
    SITE_DIR/roster.toml            the roster the operator pinned (``flowerbed site pin``)
    SITE_DIR/ledger.jsonl           the site's ledger, fsynced entry by entry
    SITE_DIR/home/model.pt          in gossip runs, the site's own model

The deployed ClientApp finds the folder through the SuperNode's node config
(``site="SITE_DIR/site.toml"``) and reads everything else from there, so
the keys never travel and the site's policy is the site's, not the
coordinator's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from flwr.app import Context
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flowerbed.audit.roster import (
    PUBLIC_FILE,
    ROSTER_FILE,
    PinnedRoster,
    RosterSite,
    public_toml,
    read_roster,
)
from flowerbed.catalogue import check_network
from flowerbed.config import (
    CoordinatorSettings,
    DataSettings,
    Federation,
    PrivacySettings,
    RunSettings,
    SiteSettings,
    country_code,
    one_line,
    read_toml,
    resolve_path,
)
from flowerbed.errors import ConfigError
from flowerbed.privacy.sealing import SiteKeys

SITE_FILE = "site.toml"
KEYS_DIR = "keys"
LEDGER_KEY = "ledger.pem"
SEALING_KEY = "sealing.pem"
SUPERNODE_KEY = "supernode.pem"
SUPERNODE_PUBLIC_KEY = "supernode.pub"
LEDGER_FILE = "ledger.jsonl"
HOME_DIR = "home"
APP_HASH_LENGTH = 64  # sha256, hex
SITE_NODE_KEY = "site"  # the SuperNode's node config key naming SITE_DIR/site.toml


class SitePolicy(BaseModel):
    """What the site's operator agreed to: where updates may go, which apps may run."""

    model_config = ConfigDict(extra="forbid")

    send_to: list[str] | None = Field(
        None, description="countries that may receive this site's model updates; None: any"
    )
    approved_apps: list[str] = Field(
        default_factory=list, description="sha256 of the Flower app bundles this site runs"
    )
    network: str | None = Field(
        None,
        description="this site's own network (package.module:function), built when the "
        "coordinator names it; built-in networks need no entry",
    )
    roster: str | None = Field(
        None, description="sha256 of the federation roster this site pinned (roster.toml)"
    )

    @field_validator("network")
    @classmethod
    def _network_name(cls, name: str | None) -> str | None:
        return name if name is None else check_network(name)

    @field_validator("send_to", mode="before")
    @classmethod
    def _iso_countries(cls, countries: Any) -> Any:
        return [country_code(c) for c in countries] if isinstance(countries, list) else countries

    @field_validator("approved_apps")
    @classmethod
    def _sha256(cls, hashes: list[str]) -> list[str]:
        for value in hashes:
            if not is_sha256(value):
                raise ValueError(
                    f"{value!r} is not a sha256 app hash; use the 64 hex digits that "
                    "`flowerbed app hash` prints"
                )
        return hashes

    @field_validator("roster")
    @classmethod
    def _roster_sha256(cls, value: str | None) -> str | None:
        if value is not None and not is_sha256(value):
            raise ValueError(
                f"{value!r} is not a sha256; use the 64 hex digits `coordinator roster` printed"
            )
        return value


def is_sha256(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == APP_HASH_LENGTH
        and all(c in "0123456789abcdef" for c in value)
    )


class SiteConfig(BaseModel):
    """The contents of ``site.toml``."""

    model_config = ConfigDict(extra="forbid")

    site: SiteSettings
    data: DataSettings = DataSettings()
    privacy: PrivacySettings = PrivacySettings()
    coordinator: CoordinatorSettings = CoordinatorSettings()
    policy: SitePolicy = SitePolicy()

    def federation(self) -> Federation:
        """The federation as this site sees it: itself, its budget, its own residency policy."""
        send_to = self.policy.send_to
        return Federation(
            sites=[self.site],
            data=self.data,
            run=RunSettings(model=self.policy.network),
            privacy=self.privacy,
            coordinator=self.coordinator,
            residency={} if send_to is None else {self.site.country: send_to},
        )


class SiteFolder:
    """Paths and keys of one site folder; ``load`` validates ``site.toml``."""

    def __init__(self, root: Path, config: SiteConfig) -> None:
        self.root = Path(root)
        self.config = config

    @classmethod
    def load(cls, site_file: Path) -> SiteFolder:
        """Read and validate ``site_file``; ``ConfigError`` naming the file and field if bad."""
        site_file = Path(site_file)
        raw = read_toml(site_file)
        if isinstance(raw.get("site"), dict) and "data" in raw["site"]:
            raw["site"]["data"] = resolve_path(raw["site"]["data"], site_file.parent)
        try:
            config = SiteConfig(**raw)
        except ValidationError as err:
            raise ConfigError(one_line(str(site_file), err)) from None
        folder = cls(site_file.parent, config)
        for path in (folder.keys / LEDGER_KEY, folder.keys / SEALING_KEY):
            if not path.is_file():
                raise ConfigError(
                    f"{path}: key missing; the site folder is incomplete, run `flowerbed site "
                    "init` again into a new folder"
                )
        return folder

    @cached_property
    def federation(self) -> Federation:
        return self.config.federation()

    @property
    def site_file(self) -> Path:
        return self.root / SITE_FILE

    @property
    def keys(self) -> Path:
        return self.root / KEYS_DIR

    @property
    def ledger_path(self) -> Path:
        return self.root / LEDGER_FILE

    @property
    def home(self) -> Path:
        return self.root / HOME_DIR

    @property
    def supernode_key(self) -> Path:
        return self.keys / SUPERNODE_KEY

    @property
    def supernode_public_key(self) -> Path:
        return self.keys / SUPERNODE_PUBLIC_KEY

    @property
    def public_file(self) -> Path:
        return self.root / PUBLIC_FILE

    @property
    def roster_file(self) -> Path:
        return self.root / ROSTER_FILE

    @cached_property
    def ledger_key(self) -> Ed25519PrivateKey:
        return ledger_key_in(self.keys)

    @cached_property
    def sealing_keys(self) -> SiteKeys:
        return sealing_keys_in(self.keys)

    @cached_property
    def pinned_roster(self) -> PinnedRoster | None:
        """The roster this site's operator pinned; None if none is; ``ConfigError`` if the
        file is gone or no longer the one pinned."""
        sha256 = self.config.policy.roster
        if sha256 is None:
            return None
        pinned = read_roster(self.roster_file)
        if pinned.sha256 != sha256:
            raise ConfigError(
                f"{self.roster_file}: sha256 {pinned.sha256[:12]} is not the pinned "
                f"{sha256[:12]}; the file was changed, pin the federation's roster again"
            )
        return pinned

    def public_site(self) -> RosterSite:
        """What the federation's roster says of this site: public facts only."""
        supernode = self.supernode_public_key
        return public_site(
            self.config.site.name,
            self.config.site.country,
            self.keys,
            supernode.read_text().strip() if supernode.is_file() else "",
        )

    def save(self) -> None:
        """Write ``site.toml`` (mode 0600)."""
        data = self.config.model_dump(mode="json", exclude_none=True)
        write_private(self.site_file, tomli_w.dumps(data).encode())


@lru_cache(maxsize=2)
def _load(path: str) -> SiteFolder:
    return SiteFolder.load(Path(path))


def deployed_site(context: Context) -> SiteFolder | None:
    """The site folder a deployed SuperNode's node config names (read once per process);
    None in simulation."""
    path = context.node_config.get(SITE_NODE_KEY)
    return None if path is None else _load(str(path))


def create_site_folder(root: Path, config: SiteConfig) -> SiteFolder:
    """A new site folder with fresh keys; refuses a folder that already holds a site."""
    root = Path(root)
    if (root / SITE_FILE).exists():
        raise ConfigError(
            f"{root / SITE_FILE} already exists; pass another --out (a site's keys are its "
            "identity and are never overwritten)"
        )
    folder = SiteFolder(root, config)
    write_site_keys(folder.keys)
    os.chmod(root, 0o700)
    supernode = ec.generate_private_key(ec.SECP384R1())
    write_private(folder.supernode_key, _pem(supernode, serialization.PrivateFormat.OpenSSH))
    write_private(
        folder.supernode_public_key,
        supernode.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    )
    folder.save()
    write_private(folder.public_file, public_toml(folder.public_site()))
    return folder


def write_site_keys(keys: Path) -> None:
    """A site's fresh ledger (Ed25519) and sealing (X25519) keys in the folder ``keys``."""
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys, 0o700)
    write_private(keys / LEDGER_KEY, _pem(Ed25519PrivateKey.generate()))
    write_private(keys / SEALING_KEY, _pem(X25519PrivateKey.generate()))


def ledger_key_in(keys: Path) -> Ed25519PrivateKey:
    return _private_key(keys / LEDGER_KEY, Ed25519PrivateKey)


def sealing_keys_in(keys: Path) -> SiteKeys:
    return SiteKeys(_private_key(keys / SEALING_KEY, X25519PrivateKey))


def public_site(name: str, country: str, keys: Path, supernode_key: str = "") -> RosterSite:
    """The roster entry of the site whose private keys are in ``keys``."""
    return RosterSite(
        name=name,
        country=country,
        ledger_key=ledger_key_in(keys).public_key().public_bytes_raw().hex(),
        sealing_key=sealing_keys_in(keys).public_bytes().hex(),
        supernode_key=supernode_key,
    )


def _pem(key: Any, form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    """PEM text of a private key; Flower reads the SuperNode's in OpenSSH form."""
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def _private_key(path: Path, kind: type) -> Any:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable private key ({err}); restore it") from None
    if not isinstance(key, kind):
        raise ConfigError(f"{path}: holds a {type(key).__name__}, expected {kind.__name__}")
    return key


def write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to a file only its owner can read, created with that mode."""
    opener: Callable[[str, int], int] = lambda p, flags: os.open(p, flags, 0o600)  # noqa: E731
    with open(path, "wb", opener=opener) as out:
        out.write(content)
    os.chmod(path, 0o600)
