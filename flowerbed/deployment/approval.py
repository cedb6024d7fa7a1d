"""Which apps a site runs: only bundles whose sha256 its operator approved in ``site.toml``.

Flower's SuperNode has one mechanism for this: started with
``--trusted-entities``, it runs a bundle (FAB) only if the bundle carries a
valid Ed25519 signature over its sha256 by one of the trusted keys;
otherwise it answers the run with an error ("The FAB could not be
verified") and never starts the ClientApp. Flower expects those
signatures from its Hub; a federation of hospitals has none, so the site
signs for itself. ``flowerbed site launch`` wraps the one step of the
SuperNode that fetches a bundle: a bundle whose hash the site approved is
signed there with the site's own Ed25519 key, the only trusted entity; any
other bundle stays unsigned and Flower's own verification refuses it. Each
refusal is also written, signed, to the site's ledger.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from logging import ERROR, INFO
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from flwr.common.logger import log
from flwr.supercore.fab import Fab
from flwr.supercore.primitives.asymmetric_ed25519 import create_message_to_sign
from flwr.supernode import start_client_internal

from flowerbed.audit.ledger import Ledger
from flowerbed.audit.schema import app_refused_entry
from flowerbed.hospital_client.site_folder import SiteFolder, write_private

SITE_ENTITY = "fpk_flowerbed_site"  # the trusted-entity id of the site's own key
TRUSTED_ENTITIES_FILE = "trusted-entities.yaml"
VALID_LICENSE = "valid_license"  # Flower's marker that verification data is present


def trusted_entities_file(folder: SiteFolder) -> Path:
    """The YAML Flower's ``--trusted-entities`` reads: the site's own Ed25519 public key."""
    public = folder.ledger_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path = folder.keys / TRUSTED_ENTITIES_FILE
    write_private(path, f"{SITE_ENTITY}: '{public.decode()} {folder.config.site.name}'\n".encode())
    return path


def endorse(fab: Fab, folder: SiteFolder, run_id: int) -> Fab:
    """``fab`` signed by the site if its hash is approved; unsigned (to be refused) if not."""
    digest = hashlib.sha256(fab.content)
    if digest.hexdigest() in folder.config.policy.approved_apps:
        signed_at = int(time.time())
        signature = folder.ledger_key.sign(create_message_to_sign(digest.digest(), signed_at))
        encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
        log(INFO, "app %s is approved by this site; running it", digest.hexdigest())
        verification = json.dumps({"signature": encoded, "signed_at": signed_at})
        return Fab(fab.hash_str, fab.content, {VALID_LICENSE: "Valid", SITE_ENTITY: verification})
    reason = (
        f"app {digest.hexdigest()} (run {run_id}) is not approved in {folder.site_file}; "
        "refused. If the coordinator's app is the one you reviewed, approve it with "
        "`flowerbed site approve SITE_TOML HASH`"
    )
    log(ERROR, "%s", reason)
    site = folder.config.site
    ledger = Ledger.open(folder.ledger_path, site.name, site.country, folder.ledger_key)
    ledger.append(app_refused_entry(digest.hexdigest(), run_id, reason), sign=True)
    return Fab(fab.hash_str, fab.content, {VALID_LICENSE: "Valid"})


def require_approval(folder: SiteFolder) -> None:
    """Make this process's SuperNode endorse (or leave unsigned) every bundle it fetches."""
    connect = start_client_internal._init_connection

    @contextmanager
    def approving_connection(*args: Any, **kwargs: Any) -> Iterator[tuple]:
        with connect(*args, **kwargs) as connection:
            node_id, receive, send, get_run, get_fab, *rest = connection
            yield (node_id, receive, send, get_run, _endorsing(get_fab, folder), *rest)

    start_client_internal._init_connection = approving_connection


def _endorsing(get_fab: Callable[[str, int], Fab], folder: SiteFolder) -> Callable:
    def fetch(fab_hash: str, run_id: int) -> Fab:
        return endorse(get_fab(fab_hash, run_id), folder, run_id)

    return fetch
