"""Short terminal tables."""

from __future__ import annotations

from scrub.data.promptset import PromptSet


def preview(ps: PromptSet, rows: int = 5) -> str:
    """A few rows of ``ps`` with their names and positions, for a terminal."""
    frame = ps.to_frame().head(rows)
    cols = ["text", "order", "io", "s1", "s2", "pos_IO", "pos_S1", "pos_S2", "pos_END"]
    frame = frame[cols].copy()
    frame["text"] = frame["text"].str.slice(0, 70)
    head = (
        f"{len(ps)} prompts, {ps.tokens.shape[1]} tokens wide; lineage: {' -> '.join(ps.lineage)}"
    )
    return head + "\n" + frame.to_string(index=False)
