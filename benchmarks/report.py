"""
What the benchmarks share: the machine they ran on, medians, and their
sections of ``docs/benchmarks.md``.

Each benchmark owns one section of that file, between
``<!-- begin NAME -->`` and ``<!-- end NAME -->``, and rewrites only its
own; the rest of the file stays as it is.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent

#: The file the benchmarks write their results to.
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"

_TITLE = """# Benchmarks

The sections between `begin` and `end` markers are written by the benchmark
scripts (`make bench`, `python -m benchmarks.<name>`): the next run of a
script replaces its section, so change the scripts, not those sections.
Notes outside the markers are written by hand and stay. Compare the figures
of one section (one run, one machine), not figures across machines.
"""


def median(values: Sequence[float]) -> float:
    """The median; 0 for no values."""
    return statistics.median(values) if values else 0.0


def percentile(values: Sequence[float], fraction: float) -> float:
    """A percentile by the nearest-rank method (``0.5``: the median); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def load_average() -> str:
    """The 1-minute load average, or ``"?"`` where the OS does not say."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


async def server_facts(connection: asyncpg.Connection) -> str:
    """The server's version and the settings that matter for these figures."""
    version_text = await connection.fetchval("SHOW server_version")
    settings = await connection.fetch(
        "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name",
        ["shared_buffers", "synchronous_commit", "max_wal_size", "work_mem"],
    )
    shown = []
    for row in settings:
        value = row["setting"]
        if row["unit"] == "8kB":
            value = f"{int(value) * 8 // 1024} MB"
        elif row["unit"] in ("MB", "kB"):
            value = f"{value} {row['unit']}"
        shown.append(f"{row['name']} {value}")
    return f"PostgreSQL {version_text} ({', '.join(shown)})"


def machine_description(server: str, load_before: str, load_after: str) -> str:
    """One paragraph: CPU, memory, OS, Python and library versions, load."""
    memory = _memory_gib()
    memory_text = f", {memory:.0f} GiB RAM" if memory else ""
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores{memory_text}, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"asyncpg {version('asyncpg')}, Piccolo {version('piccolo')}; {server}. "
        f"Load average (1 min) {load_before} before, {load_after} after: other work "
        "shared the machine, so compare the figures within this section only."
    )


def timestamp() -> str:
    """Now, for a report: ``2026-11-30 07:12 UTC``."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_section(name: str, content: str, path: Path = BENCHMARKS_MD) -> None:
    """
    Replace the section ``name`` of ``path`` with ``content`` (append it
    when missing), creating the file with its title when needed.
    """
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{content.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else _TITLE
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
