"""The conference.db overhead benchmark runs end to end at a tiny scale (no timing asserted)."""

from __future__ import annotations

import re

from benchmarks.db_overhead import measure
from conference.db import Database
from conference.engine import ConferenceEngine


async def test_a_tiny_run_compares_both_sides_and_states_the_paired_overhead(
    database_url: str,
) -> None:
    database = Database(ConferenceEngine(url=database_url, connect_timeout=5))

    section = await measure(blocks=2, database=database)

    assert section.startswith("## What conference.db adds to a statement")
    assert "`python -m benchmarks.db_overhead --blocks 2`" in section
    assert "Load average (1 min)" in section
    rows = re.findall(
        r"^\| (asyncpg pool|conference\.db) \| [\d.]+ \| [\d.]+ \| \d+ \|$", section, re.M
    )
    assert rows == ["asyncpg pool", "conference.db"]
    assert re.search(
        r"paired: \*\*[+-][\d.]+ µs wall, [+-][\d.]+ µs CPU, [+-]\d+ Python calls", section
    )
    assert database.engine.pool is None  # its pool closed again
