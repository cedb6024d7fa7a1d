"""Write a benchmark's Markdown table where the README shows it."""

from __future__ import annotations

from pathlib import Path


def write_table(out: Path, caption: str, header: list[str], rows: list[str]) -> None:
    """``rows`` are Markdown table lines; the table is printed and written to ``out``."""
    table = "\n".join(
        [caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows]
    )
    print(f"\n{table}\n\nwritten to {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
