"""What the console says about sites that failed a round, for `simulate` and `run` alike."""

from __future__ import annotations

from rich.markup import escape


def failed_sites(failed: dict[str, str]) -> str:
    """The round line's tail naming each failed or missing site with why; "" if none."""
    if not failed:
        return ""
    named = "; ".join(f"{site}: {why}" for site, why in sorted(failed.items()))
    return f" [red]· failed or missing: {escape(named)}[/]"
