"""The federation file: which sites take part and how the run is set up.

One TOML file describes a federation for simulation::

    [run]          strategy, rounds, local epochs, model, seed, optimiser
    [data]         one dataset split across the sites that name no data of their own
    [privacy]      DP-SGD on or off, the default per-site (epsilon, delta) budget
    [coordinator]  country of the SuperLink + ServerApp (default: the first site's)
    [residency]    country = [countries that may receive its sites' model updates]
    [[sites]]      name, country (ISO 3166-1 alpha-2), optional own data and budget
    [faults.NAME]  simulation only: a hostile or failing site (kind, rounds, factor)

Values are validated here, at the edge: a bad one raises ``ConfigError`` naming
the file, the field and the fix, before anything starts. Code past this point
trusts the types. Command-line flags override the file (``load_federation``'s
``overrides``); environment variables ``FLOWERBED_RUN__ROUNDS=5`` and the like
override neither the file nor the flags, they only fill what both leave unset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import tomli_w
import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flowerbed.catalogue import (
    CLASSIFICATION,
    FAULTS,
    MIXING,
    PARTITIONERS,
    SEGMENTATION,
    STRATEGIES,
    TOPOLOGIES,
    check_network,
    is_own_network,
)
from flowerbed.countries import is_country_code
from flowerbed.errors import ConfigError

DEFAULT_COUNTRIES = ("DE", "FR")
COORDINATOR = "coordinator"  # the coordinator's party name in ledgers and policies
SITE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Measured on PneumoniaMNIST, 4 sites, Dirichlet(0.5), 20 rounds (see docs/benchmarks.md): Adam
# learns fastest without DP; under DP-SGD's clipped, noised gradients Adam and large
# SGD steps collapse the model to one class (SGD at 0.08: one seed in three). Under DP
# the small CNN with tanh did best with SGD at 0.04 (test AUC 0.919, against 0.898 for
# ReLU at 0.02), and better still without its head's hidden layer, whose weights DP-SGD
# must noise (small-cnn-dp; validation AUC 0.960 against 0.953, 5 seeds); without DP the
# two activations are equal. Segmentation trains MONAI's UNet either way: it trains
# under Opacus as built.
OPTIMIZERS = ("sgd", "adam")
DEFAULT_OPTIMIZER = {True: "sgd", False: "adam"}  # keyed by DP on / off
DEFAULT_MODEL = {  # keyed by task, then DP on / off
    CLASSIFICATION: {True: "small-cnn-dp", False: "small-cnn"},
    SEGMENTATION: {True: "unet", False: "unet"},
}
# Keyed by task, then optimiser. The UNet on synthetic-seg learns 3x faster with Adam at
# 0.01 than at 0.001 (test Dice 0.95 against 0.86 after 10 epochs of 400 images; SGD at
# 0.04 under DP-SGD, epsilon 8: 0.91).
DEFAULT_LEARNING_RATE = {
    CLASSIFICATION: {"sgd": 0.04, "adam": 0.001},
    SEGMENTATION: {"sgd": 0.04, "adam": 0.01},
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSettings(_Section):
    """How training is coordinated; the ServerApp sends these to every site."""

    strategy: str = "fedavg"
    rounds: int = Field(3, ge=1, le=10_000)
    local_epochs: int = Field(1, ge=1, le=1000)
    model: str | None = Field(
        None,
        description="a built-in or package.module:function; default: small-cnn-dp under "
        "DP-SGD, small-cnn without, unet for segmentation",
    )
    seed: int = 0
    batch_size: int = Field(32, ge=1, le=65_536)
    optimizer: Literal["sgd", "adam"] | None = Field(
        None, description="default: SGD with momentum under DP-SGD, Adam without"
    )
    learning_rate: float | None = Field(
        None, gt=0, le=10, description="the peak under a schedule; default: 0.04 SGD, 0.001 Adam"
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="learning rate over the rounds: constant, or cosine from the peak"
    )
    proximal_mu: float = Field(0.01, ge=0)
    assumed_hostile: int = Field(
        1, ge=0, description="krum, multi-krum: hostile sites to guard against"
    )
    trim_fraction: float = Field(
        0.2, ge=0, lt=0.5, description="trimmed-mean: share cut from each end"
    )
    mixing: str = Field("average", description=f"gossip: {MIXING.choices()}")
    honesty: Literal["flag", "exclude"] = Field(
        "flag", description="server-side: flag sites failing honesty checks, or also exclude"
    )
    probe_share: float = Field(
        0.5, gt=0, le=1, description="share of replies whose probe answer is recomputed"
    )
    topology: str = Field("exponential", description="gossip graph: a name or an edge-list file")
    degree: int = Field(3, ge=1, description="neighbours per site in random-regular")
    round_timeout: float = Field(
        1800, gt=0, le=86_400,
        description="seconds each phase of a round waits for the sites' answers; a site "
        "that has not answered by then is named missing and the round goes on without it",
    )  # fmt: skip
    min_sites: int = Field(
        2, ge=1, description="fewest sites that must answer a round for the run to go on "
        "(capped at the number of sites)",
    )  # fmt: skip

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:

        return STRATEGIES.check(name)

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str | None) -> str | None:

        return name if name is None else check_network(name)

    @field_validator("mixing")
    @classmethod
    def _known_mixing(cls, name: str) -> str:

        return MIXING.check(name)

    @field_validator("topology")
    @classmethod
    def _known_topology(cls, name: str) -> str:

        if Path(name).suffix:
            if not Path(name).is_file():
                raise ValueError(f"edge-list file {name} does not exist; pass an existing file")
            return name
        return TOPOLOGIES.check(name)


class DataSettings(_Section):
    """The dataset split across sites in simulation (sites with own ``data`` skip it)."""

    source: str = "synthetic"
    partition: str = "iid"
    alpha: float = Field(0.5, gt=0, description="concentration for dirichlet / quantity skew")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held out where no test split")
    image_size: int | None = Field(
        None, ge=8, le=1024,
        description="pixels per axis images are brought to; default: the source's own "
        "(32 for a manifest)",
    )  # fmt: skip
    augment: bool = Field(
        False, description="training-time flips, small rotations and intensity jitter"
    )

    @field_validator("partition")
    @classmethod
    def _known_partition(cls, name: str) -> str:

        return PARTITIONERS.check(name)


class PrivacySettings(_Section):
    """DP-SGD defaults; a site's own ``epsilon`` overrides the default budget.

    ``epsilon`` is the budget of a site's data set over its whole lifetime,
    every run it takes part in composed; ``run_epsilon`` caps what one run
    may spend (default: the whole budget), and is what each run's noise is
    planned for. ``canaries`` plants that many mislabelled copies of a site's
    own images in its training set, each with probability 1/2, for the one-run
    audit's empirical lower bound on epsilon (``datasets.canaries``); 0 plants
    none. They cost the model a little: 64 among a site's thousands is noise.
    """

    enabled: bool = True
    epsilon: float = Field(8.0, gt=0, le=1000)
    run_epsilon: float | None = Field(None, gt=0, le=1000)
    delta: float = Field(1e-5, gt=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    canaries: int = Field(0, ge=0, le=100_000)


class SiteSettings(_Section):
    """One hospital: its identity, its data, its privacy budget."""

    name: str = Field(pattern=SITE_NAME_PATTERN)
    country: str
    data: str | None = None
    epsilon: float | None = Field(None, gt=0, le=1000)
    supernode_key: str | None = Field(
        None,
        description="deployment: the site's keys/supernode.pub, for the coordinator to register",
    )

    @field_validator("country", mode="before")
    @classmethod
    def _iso_country(cls, code: Any) -> str:
        return country_code(code)


def country_code(code: Any) -> str:
    if not isinstance(code, str) or not is_country_code(code.strip().upper()):
        raise ValueError(
            f"{code!r} is not an ISO 3166-1 alpha-2 country code; use two letters such as DE"
        )
    return code.strip().upper()


class CoordinatorSettings(_Section):
    """The SuperLink + ServerApp: a party with a country, like every site."""

    country: str | None = Field(None, description="default: the first site's country")
    roster: str | None = Field(
        None,
        description="the federation's roster.toml (`flowerbed coordinator roster`), which "
        "every site pins; deployment needs one, simulation writes its own",
    )

    @field_validator("country", mode="before")
    @classmethod
    def _iso_country(cls, code: Any) -> Any:
        return code if code is None else country_code(code)


class FaultSettings(_Section):
    """A hostile or failing site, for simulation only: to test and measure defences.

    A real deployment has no such setting: a site's own ``site.toml`` cannot
    name one, and the coordinator's federation file does not reach the sites.
    """

    kind: str = Field(description=FAULTS.choices())
    rounds: list[int] | None = Field(None, description="rounds it acts in; default: every one")
    factor: float = Field(10.0, gt=0, description="sign-flip, scale: how far the update goes")

    @field_validator("kind")
    @classmethod
    def _known_fault(cls, name: str) -> str:

        return FAULTS.check(name)


class Federation(BaseSettings):
    """A whole federation: run, shared data, privacy defaults and the site list."""

    model_config = SettingsConfigDict(
        env_prefix="FLOWERBED_", env_nested_delimiter="__", extra="forbid"
    )

    run: RunSettings = RunSettings()
    data: DataSettings = DataSettings()
    privacy: PrivacySettings = PrivacySettings()
    coordinator: CoordinatorSettings = CoordinatorSettings()
    residency: dict[str, list[str]] = Field(
        default_factory=dict,
        description="country -> countries that may receive its sites' model updates "
        "(a country not listed may send anywhere)",
    )
    sites: list[SiteSettings] = Field(min_length=1)
    faults: dict[str, FaultSettings] = Field(
        default_factory=dict, description="simulation only: site name -> its fault"
    )

    @field_validator("residency", mode="before")
    @classmethod
    def _iso_countries(cls, policy: Any) -> Any:
        if not isinstance(policy, dict):
            return policy
        return {
            country_code(sender): [country_code(c) for c in receivers]
            if isinstance(receivers, list)
            else receivers
            for sender, receivers in policy.items()
        }

    @model_validator(mode="after")
    def _training_for_the_privacy_mode(self) -> Federation:
        """DP-SGD's clipped, noised gradients want another model and optimiser than plain
        training."""
        if self.run.optimizer is None:
            self.run.optimizer = DEFAULT_OPTIMIZER[self.privacy.enabled]
        return self

    @model_validator(mode="after")
    def _unique_site_names(self) -> Federation:
        seen: set[str] = {COORDINATOR}
        for site in self.sites:
            if site.name in seen:
                raise ValueError(
                    f"site name {site.name!r} appears twice or names the coordinator; "
                    "give each site its own"
                )
            seen.add(site.name)
        return self

    @model_validator(mode="after")
    def _faults_name_sites(self) -> Federation:
        names = {site.name for site in self.sites}
        for name in self.faults:
            if name not in names:
                raise ValueError(f"faults.{name}: no site is called {name!r}; name a listed site")
        return self

    @property
    def coordinator_country(self) -> str:
        return self.coordinator.country or self.sites[0].country

    def country_of(self, party: str) -> str | None:
        """A site's or the coordinator's country; None for a party this federation does not list."""
        if party == COORDINATOR:
            return self.coordinator_country
        return next((site.country for site in self.sites if site.name == party), None)

    def network_for(self, task: str) -> str:
        """The network this run trains on data of ``task``: ``[run] model`` or the default."""
        return self.run.model or DEFAULT_MODEL[task][self.privacy.enabled]

    def learning_rate_for(self, task: str) -> float:
        """The (peak) learning rate for data of ``task``: ``[run] learning_rate`` or the
        default of the task and optimiser."""
        optimizer = str(self.run.optimizer)  # set by the validator
        return self.run.learning_rate or DEFAULT_LEARNING_RATE[task][optimizer]

    def builds(self, network: str) -> bool:
        """Whether this party may build ``network`` when an instruction names it.

        Built-ins, always; an own network only if this party's own file names
        it, since building it imports and runs its code.
        """
        return not is_own_network(network) or network == self.run.model

    @property
    def min_sites(self) -> int:
        """Fewest answering sites a round needs: ``[run] min_sites``, at most every site."""
        return min(self.run.min_sites, len(self.sites))

    def lifetime_budget_of(self, site: SiteSettings) -> float:
        """The epsilon budget of the site's data set, over every run."""
        return site.epsilon if site.epsilon is not None else self.privacy.epsilon

    def budget_of(self, site: SiteSettings) -> float:
        """What one run may spend at the site: its per-run cap, at most its lifetime budget."""
        lifetime = self.lifetime_budget_of(site)
        cap = self.privacy.run_epsilon
        return lifetime if cap is None else min(cap, lifetime)

    def shared_sites(self) -> list[SiteSettings]:
        """Sites that take a share of ``[data]`` rather than bringing their own."""
        return [site for site in self.sites if site.data is None]


def default_sites(count: int, countries: tuple[str, ...] = DEFAULT_COUNTRIES) -> list[dict]:
    """``count`` hospitals spread round-robin over ``countries`` (the ``--sites N`` default)."""
    if count < 1:
        raise ConfigError(f"--sites must be at least 1, got {count}")
    return [
        {"name": f"hospital-{i + 1:02d}", "country": countries[i % len(countries)]}
        for i in range(count)
    ]


def load_federation(
    path: Path | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Federation:
    """Read, merge and validate a federation.

    ``path`` None means the embedded default: four hospitals in two countries on
    synthetic data. ``overrides`` maps a section to field values (from the
    command line) and wins over the file. ``overrides["sites"]`` replaces the list.

    Paths are resolved once, here, where they enter: a field of the file against
    the file's folder, a flag against the working directory. The federation
    holds them absolute, so a later process (a Ray worker, a SuperNode, a
    resumed run) reading the saved ``config.toml`` opens the same files.
    """
    raw: dict[str, Any] = (
        anchor_paths(read_toml(path), Path(path).parent) if path else {"sites": default_sites(4)}
    )
    flags = anchor_paths(
        {section: dict(values) if isinstance(values, Mapping) else values
         for section, values in (overrides or {}).items()},
        Path.cwd(),
    )  # fmt: skip
    for section, values in flags.items():
        if section == "sites":
            raw["sites"] = values
        else:
            raw.setdefault(section, {}).update(values)
    source = str(path) if path else "federation"
    try:
        return Federation(**raw)
    except ValidationError as err:
        raise ConfigError(one_line(source, err)) from None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning a missing or malformed file into one line."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass an existing federation TOML") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; pass a federation TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); fix the syntax") from None


def is_path(value: Any) -> bool:
    """Whether a data source or topology names a file rather than a built-in.

    Built-ins (``synthetic``, ``ring``) are bare words; a file has a suffix or a folder.
    """
    return isinstance(value, str) and bool(Path(value).suffix or "/" in value)


def resolve_path(value: Any, base: Path) -> Any:
    """``value`` as an absolute path against ``base`` if it names a file; else unchanged."""
    if not is_path(value):
        return value
    return str((Path(base) / Path(value).expanduser()).resolve())


def anchor_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Every path field of a federation (file or flags), resolved against ``base``."""
    data, run, coordinator = raw.get("data"), raw.get("run"), raw.get("coordinator")
    if isinstance(coordinator, dict) and isinstance(coordinator.get("roster"), str):
        coordinator["roster"] = str((base / Path(coordinator["roster"])).resolve())
    if isinstance(data, dict) and "source" in data:
        data["source"] = resolve_path(data["source"], base)
    if isinstance(run, dict) and "topology" in run:
        run["topology"] = resolve_path(run["topology"], base)
    sites = raw.get("sites")
    for site in sites if isinstance(sites, list) else []:
        if not isinstance(site, dict):
            continue
        if "data" in site:
            site["data"] = resolve_path(site["data"], base)
        if isinstance(site.get("supernode_key"), str):  # always a file, whatever its name
            site["supernode_key"] = str((base / Path(site["supernode_key"])).resolve())
    return raw


def save_federation(federation: Federation, path: Path) -> None:
    """Write the resolved federation; ``load_federation(path)`` reads it back unchanged."""
    data = federation.model_dump(mode="json", exclude_none=True)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


def one_line(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = re.sub(r"^Value error, ", "", first["msg"])
    if first["type"] == "extra_forbidden":
        message = "unknown field; check its spelling against docs/data.md (the federation file)"
    elif first["type"] == "missing":
        message = "required field is missing; add it"
    elif first["type"] == "string_pattern_mismatch":
        message = "use lower-case letters, digits, '-' or '_' (at most 63 characters)"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {where}: {message}{more}"
