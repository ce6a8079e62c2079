"""
Synthetic data: deterministic for a seed (ids included), whatever the batch
size; consistent like real data; refuses to mix into existing data or into
production unless told to.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from conference.db import Database, get_database
from conference.devdata.generate import GenerateProgress, generate
from conference.devdata.seed import build_seed_rows
from conference.devdata.synthetic import SyntheticData
from conference.devdata.target import truncate_sql
from conference.engine import ConferenceEngine
from conference.errors import DatabaseNotEmpty, ProductionDatabaseError
from conference.tables import TABLES, RecordingStatus
from tests import support
from tests.consistency import broken_rules, latest_time, table_dump

UNTIL = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

# Small, but with all kinds of rows: a day and a half of 80 meetings leaves
# some running at UNTIL (checked below, and stable: the seed is fixed).
SMALL = {"meetings": 80, "seed": 7, "days": 2, "until": UNTIL}


async def test_the_same_seed_generates_identical_rows_whatever_the_batch_size(
    connection: asyncpg.Connection,
) -> None:
    await generate(**SMALL, batch_size=1000, replace=True)
    first = await table_dump(connection)

    await generate(**SMALL, batch_size=7, replace=True)
    second = await table_dump(connection)

    assert second == first
    assert len(first["analytics"]) > 1000


async def test_another_seed_generates_other_rows(connection: asyncpg.Connection) -> None:
    await generate(**SMALL, replace=True)
    first = await table_dump(connection)

    await generate(**{**SMALL, "seed": 8}, replace=True)
    second = await table_dump(connection)

    assert {row[0] for row in second["meetings"]}.isdisjoint(row[0] for row in first["meetings"])


async def test_generated_data_is_consistent_like_real_data(connection: asyncpg.Connection) -> None:
    result = await generate(**SMALL, replace=True)

    assert await broken_rules(connection) == {}
    assert await latest_time(connection) <= UNTIL
    counts = {
        table: await connection.fetchval(f"SELECT count(*) FROM {table}") for table in result.counts
    }
    assert counts == result.counts
    assert counts["meetings"] == SMALL["meetings"]


async def test_generated_data_has_running_meetings_and_every_kind_of_row(
    connection: asyncpg.Connection,
) -> None:
    await generate(**SMALL, replace=True)

    running = await connection.fetchval("SELECT count(*) FROM meetings WHERE ended_at IS NULL")
    present = await connection.fetchval("SELECT count(*) FROM participants WHERE left_at IS NULL")
    assert 0 < running < SMALL["meetings"]
    assert present > 0
    statuses = {row[0] for row in await connection.fetch("SELECT DISTINCT status FROM recordings")}
    assert RecordingStatus.complete.value in statuses
    assert statuses <= {status.value for status in RecordingStatus}
    events = {row[0] for row in await connection.fetch("SELECT DISTINCT event_type FROM analytics")}
    assert {"room_started", "participant_joined", "participant_left", "track_published"} <= events
    assert {"egress_started", "egress_ended", "room_finished"} <= events
    reconnects = await connection.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM participants GROUP BY meeting_id, identity "
        "HAVING count(*) > 1) AS twice"
    )
    assert reconnects > 0


async def test_generate_refuses_a_database_that_holds_data(
    connection: asyncpg.Connection,
) -> None:
    await connection.execute("INSERT INTO meetings (room_name) VALUES ('real-room')")

    with pytest.raises(DatabaseNotEmpty, match="--replace"):
        await generate(**SMALL)

    assert await connection.fetchval("SELECT count(*) FROM meetings") == 1


async def test_generate_with_replace_deletes_the_existing_data(
    connection: asyncpg.Connection,
) -> None:
    await connection.execute("INSERT INTO meetings (room_name) VALUES ('old-room')")

    await generate(**SMALL, replace=True)

    assert not await connection.fetchval("SELECT 1 FROM meetings WHERE room_name = 'old-room'")


async def test_generate_refuses_production_without_force(
    connection: asyncpg.Connection, production_env: None
) -> None:
    with pytest.raises(ProductionDatabaseError, match="--force"):
        await generate(**SMALL, replace=True)

    result = await generate(**SMALL, replace=True, force=True)
    assert result.counts["meetings"] == SMALL["meetings"]


async def test_generate_reports_progress_after_each_batch(connection: asyncpg.Connection) -> None:
    seen: list[GenerateProgress] = []

    await generate(**SMALL, batch_size=30, replace=True, progress=seen.append)

    # Batches of 30, 30 and 20 meetings, committed by two connections in
    # whichever order they finish.
    assert len(seen) == 3
    assert seen[-1].meetings_done == seen[-1].meetings_total == 80
    assert seen[-1].rows["analytics"] > seen[0].rows["analytics"] > 0


async def test_the_cli_generates_and_prints_a_summary(
    connection: asyncpg.Connection, database_url: str
) -> None:
    await connection.execute(truncate_sql())
    args = ["--meetings=20", "--seed=3", "--days=1", f"--until={UNTIL.isoformat()}"]

    done = support.run_piccolo(["conference", "generate", *args], database_url)

    assert "Generated 20 meetings" in done.stdout
    assert "analytics rows/s" in done.stdout
    assert await connection.fetchval("SELECT count(*) FROM meetings") == 20


def _rows(meetings: int, batch_size: int) -> dict[str, list[tuple[Any, ...]]]:
    data = SyntheticData(meetings=meetings, seed=11, days=3, until=UNTIL)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for batch in data.batches(batch_size):
        for table, records in batch.by_table():
            rows.setdefault(table._meta.tablename, []).extend(records)
    return rows


def test_synthetic_rows_do_not_depend_on_the_batch_size() -> None:
    assert _rows(50, 1) == _rows(50, 50) == _rows(50, 17)


def test_meetings_start_in_order_within_the_history() -> None:
    data = SyntheticData(meetings=200, seed=5, days=3, until=UNTIL)
    starts = [row[3] for batch in data.batches(1000) for row in batch.meetings]

    assert starts == sorted(starts)
    assert (UNTIL - starts[0]).days < 3
    assert starts[-1] <= UNTIL


def _shape(value: Any) -> Any:
    """The keys of a JSON value, recursively: its shape without the values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value[:1]]
    return None


def test_generated_event_bodies_have_the_shape_of_the_seeded_ones() -> None:
    seeded = {}
    for event in build_seed_rows(UNTIL).analytics:
        seeded.setdefault(event.event_type, _shape(json.loads(event.event_data)))
    generated = {}
    for batch in SyntheticData(meetings=40, seed=2, days=1, until=UNTIL).batches(100):
        for row in batch.analytics:
            body = json.loads(row[5])
            if row[4] == "egress_ended" and body["egressInfo"]["status"] != "EGRESS_COMPLETE":
                continue  # the seed's recording completed; others end otherwise
            generated.setdefault(row[4], _shape(body))

    for event_type, shape in seeded.items():
        assert generated[event_type] == shape, event_type


async def test_generate_loads_into_the_database_it_is_given_and_no_other(
    connection: asyncpg.Connection, fresh_database_url: str
) -> None:
    other = Database(ConferenceEngine(url=fresh_database_url, connect_timeout=10))
    for table in TABLES:
        for statement in table.create_table().ddl:
            await other.query(statement)

    result = await generate(**{**SMALL, "meetings": 20}, batch_size=7, database=other)

    rows = await other.query("SELECT count(*) AS n FROM meetings")
    assert rows[0]["n"] == result.counts["meetings"] == 20
    assert await connection.fetchval("SELECT count(*) FROM meetings") == 0


async def test_generate_refuses_to_run_inside_a_transaction(
    connection: asyncpg.Connection,
) -> None:
    database = get_database()
    with pytest.raises(ValueError, match="outside any transaction"):
        async with database.transaction():
            await generate(**SMALL, replace=True)

    assert await connection.fetchval("SELECT count(*) FROM meetings") == 0
