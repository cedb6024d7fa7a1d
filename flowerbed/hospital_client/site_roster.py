"""A site holds every instruction to the roster its operator pinned.

In deployment the relay passes on what the sites said at the roll call:
their sealing keys and countries. A relay that hands out its own key for a
peer could read that peer's payloads; one that moves a peer into an allowed
country would make this site's guard approve a transfer its residency
policy forbids. So a site takes peers' keys and countries only from its
pinned roster (``flowerbed site pin``), and refuses, signed into its ledger,
any instruction that says otherwise, or a roll call for another roster. A
deployed site with no pinned roster joins nothing. A simulated site holds
the roster the simulation wrote into the run folder, by the same check.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message

from flowerbed.audit.roster import PinnedRoster, read_roster
from flowerbed.config import Federation
from flowerbed.errors import ConfigError, SiteRefused
from flowerbed.hospital_client.site_folder import SiteFolder, deployed_site, write_private
from flowerbed.protocol import records as R


class RosterRefused(SiteRefused):
    """An instruction contradicts the site's pinned roster, or the site pinned none."""


@lru_cache(maxsize=4)
def _read(path: str) -> PinnedRoster:
    return read_roster(Path(path))


def site_roster(context: Context, federation: Federation) -> PinnedRoster | None:
    """The roster this site holds instructions to; None for a simulated site run without one
    (a unit test); ``RosterRefused`` for a deployed site that pinned none."""
    folder = deployed_site(context)
    if folder is not None:
        pinned = folder.pinned_roster
        if pinned is None:
            raise RosterRefused(
                f"{folder.site_file}: this site has pinned no roster; pin the federation's "
                "with `flowerbed site pin SITE_FILE ROSTER_FILE SHA256`; refused"
            )
        return pinned
    path = federation.coordinator.roster
    return None if path is None else _read(path)


def check_roster(instruction: Message, pinned: PinnedRoster) -> None:
    """``RosterRefused`` naming the first thing ``instruction`` says against ``pinned``."""
    config = instruction.content.config_records.get(R.CONFIG, ConfigRecord())
    named = config.get(R.ROSTER_SHA256)
    joining = instruction.metadata.message_type == f"query.{R.IDENTITY_QUERY}"
    if (joining or named is not None) and named != pinned.sha256:
        said = f"roster {str(named)[:12]}" if named else "no roster"
        raise RosterRefused(
            f"the run names {said}, this site pinned roster {pinned.sha256[:12]}; refused "
            "(pin the federation's roster, or ask the coordinator which it runs)"
        )
    content = instruction.content.config_records
    keys = {k: bytes(v) for k, v in content.get(R.PEER_KEYS, ConfigRecord()).items()}
    countries = {k: str(v) for k, v in content.get(R.PEER_COUNTRIES, ConfigRecord()).items()}
    send_to = content.get(R.SEND_TO)
    names = {*content.get(R.INBOX, ConfigRecord()).keys()}
    names |= {str(n) for n in send_to[R.SEND_TO]} if send_to is not None else set()
    for difference in pinned.roster.differences(keys, countries, names):
        raise RosterRefused(f"inbound: {difference}; refused (against the pinned roster)")


def pin_roster(folder: SiteFolder, path: Path, sha256: str) -> PinnedRoster:
    """Pin ``path`` as ``folder``'s roster, if it is the file ``sha256`` names and it lists
    this site with its own keys and country; the coordinator's country becomes the roster's.

    The copy kept in the site folder is what the site reads from then on.
    """
    pinned = read_roster(path)
    if pinned.sha256 != sha256:
        raise ConfigError(
            f"{path}: sha256 {pinned.sha256} is not the {sha256} you were given; ask the "
            "coordinator for the roster again and pin nothing until the two agree"
        )
    own = folder.public_site()
    listed = pinned.roster.site(own.name)
    if listed is None:
        raise ConfigError(f"{path}: does not list this site ({own.name}); ask the coordinator")
    for field in ("country", "ledger_key", "sealing_key"):
        if getattr(listed, field) != getattr(own, field):
            raise ConfigError(
                f"{path}: lists {own.name} with another {field.replace('_', ' ')} than this "
                f"site's ({folder.public_file}); ask the coordinator to rebuild it"
            )
    write_private(folder.roster_file, Path(path).read_bytes())
    folder.config.policy = folder.config.policy.model_copy(update={"roster": sha256})
    folder.config.coordinator = folder.config.coordinator.model_copy(
        update={"country": pinned.roster.coordinator_country}
    )
    folder.save()
    return pinned
