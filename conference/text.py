"""Plain text for a terminal, shared by the commands' summaries."""

from __future__ import annotations

from collections.abc import Mapping


def rows_per_table(counts: Mapping[str, int]) -> str:
    """Rows per table as a small text table, numbers right-aligned with separators."""
    width = max(len(name) for name in counts)
    digits = max(len(f"{rows:,}") for rows in counts.values())
    lines = [f"{'table':<{width}}  {'rows':>{digits}}"]
    lines += [f"{name:<{width}}  {rows:>{digits},}" for name, rows in counts.items()]
    return "\n".join(lines)
