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


def per_round_and_start_up(walls: dict[int, float]) -> tuple[float, float]:
    """Seconds per round and start-up seconds, from wall times at two round counts.

    The difference over the rounds between cancels everything paid once
    (engine start, roll call, data loading), so the per-round figures of two
    apps compare their rounds alone.
    """
    (few, at_few), (many, at_many) = sorted(walls.items())
    per_round = (at_many - at_few) / (many - few)
    return per_round, at_few - few * per_round
