"""The partitioning benchmark runs end to end (a tiny run; no timing asserted)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from benchmarks.partitioning import CURRENT, PARTITIONED, run, store_meetings
from tests import support


async def test_a_tiny_partitioning_run_measures_both_tables_on_the_same_rows(
    fresh_database_url: str,
) -> None:
    support.run_piccolo(["migrations", "forwards", "all"], fresh_database_url)
    connection = await asyncpg.connect(fresh_database_url)
    try:
        await store_meetings(connection, 30, seed=3, until=datetime(2026, 3, 2, tzinfo=UTC))
        await store_meetings(
            connection, 30, seed=4, until=datetime(2026, 4, 20, tzinfo=UTC), analytics=True
        )
        await store_meetings(
            connection, 30, seed=5, until=datetime(2026, 5, 20, tzinfo=UTC), analytics=True
        )

        result = await run(
            fresh_database_url, repeat=1, samples=5, ingest_meetings=5, single_rows=10
        )

        counts = await connection.fetchrow(
            f"SELECT (SELECT count(*) FROM {CURRENT}) AS current, "
            f"(SELECT count(*) FROM {PARTITIONED}) AS partitioned"
        )
        unique_keys = await connection.fetch(
            "SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint "
            "WHERE conrelid = $1::regclass AND contype IN ('p', 'u') ORDER BY 1",
            PARTITIONED,
        )
    finally:
        await connection.close()

    assert counts["current"] == counts["partitioned"] == result.events > 0
    assert [row["definition"] for row in unique_keys] == [
        "PRIMARY KEY (id, created_at)",
        "UNIQUE (webhook_event_id, created_at)",
    ]
    assert result.partitions >= 3  # April, May, and one ahead
    assert all(len(s.runs[CURRENT]) == len(s.runs[PARTITIONED]) > 0 for s in result.scenarios)
    assert "| retention:" in result.table()
