"""Write a benchmark's Markdown tables where the README shows them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def markdown_table(caption: str, header: list[str], rows: list[str]) -> str:
    """``caption``, then the table; ``rows`` are Markdown table lines."""
    return "\n".join(
        [caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows]
    )


def write_table(
    out: Path, caption: str, header: list[str], rows: list[str], after: Sequence[str] = ()
) -> None:
    """The table, then each of ``after`` (further tables, notes), printed and written to ``out``."""
    text = "\n\n".join([markdown_table(caption, header, rows), *after])
    print(f"\n{text}\n\nwritten to {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
