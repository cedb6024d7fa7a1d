"""What the ``flowerbed`` command prints through, and what its command groups share.

One Rich console for every command (so progress bars and lines never
interleave from two), the round line's tail naming failed sites, and the
one check of the TLS flags that ``site launch`` and ``run`` both take.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from flowerbed.errors import ConfigError

console = Console()


def failed_sites(failed: dict[str, str]) -> str:
    """The round line's tail naming each failed or missing site with why; "" if none."""
    if not failed:
        return ""
    named = "; ".join(f"{site}: {why}" for site, why in sorted(failed.items()))
    return f" [red]· failed or missing: {escape(named)}[/]"


def check_tls_flags(root_certificates: Path | None, insecure: bool) -> None:
    """Exactly one of TLS (the federation's CA) and ``--insecure`` (a trial)."""
    if insecure == (root_certificates is not None):
        raise ConfigError(
            "pass --root-certificates ca.pem (TLS, the default) or --insecure, not both or neither"
        )
