"""
Retention on a real PostgreSQL 18: it deletes exactly the rows past the
cut-off (nothing newer, also rows written while it runs), whole ended
meetings only when asked, resumes after an interruption, counts the same
in a dry run, and refuses a production database unless forced.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from conference import db
from conference.devdata.generate import generate
from conference.errors import ProductionDatabaseError
from conference.lifecycle.retention import (
    RetentionProgress,
    cutoff_for,
    parse_period,
    plan_retention,
    run_retention,
)
from tests.support import run_piccolo

UNTIL = datetime(2026, 11, 1, tzinfo=UTC)
CUTOFF = UNTIL - timedelta(days=10)


@pytest.fixture
async def generated(connection: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """About 8,000 generated events over 20 days before UNTIL; the pool open."""
    await generate(240, seed=14, days=20, until=UNTIL, replace=True, force=True)
    await db.start_pool()
    yield connection
    await db.close_pool()


async def _ids(connection: asyncpg.Connection, sql: str, *args: object) -> set[uuid.UUID]:
    return {row[0] for row in await connection.fetch(sql, *args)}


async def _old_events(connection: asyncpg.Connection) -> int:
    return int(
        await connection.fetchval("SELECT count(*) FROM analytics WHERE created_at < $1", CUTOFF)
    )


def test_a_period_is_days_hours_or_weeks_and_anything_else_is_refused() -> None:
    assert parse_period("90d") == timedelta(days=90)
    assert parse_period("12h") == timedelta(hours=12)
    assert parse_period("2w") == timedelta(weeks=2)
    assert parse_period("30") == timedelta(days=30)
    assert cutoff_for(timedelta(days=1), UNTIL) == UNTIL - timedelta(days=1)
    for bad in ("", "0d", "-3d", "90x", "d", "1.5d"):
        with pytest.raises(ValueError, match="90d"):
            parse_period(bad)


async def test_retention_deletes_exactly_the_events_older_than_the_cutoff(
    generated: asyncpg.Connection,
) -> None:
    connection = generated
    newer = await _ids(connection, "SELECT id FROM analytics WHERE created_at >= $1", CUTOFF)
    older = await _old_events(connection)
    meetings = await _ids(connection, "SELECT id FROM meetings")
    participants = await _ids(connection, "SELECT id FROM participants")
    assert older > 1_000 and len(newer) > 1_000

    result = await run_retention(CUTOFF, batch_size=500, pause=0)

    assert result.counts == {"meetings": 0, "participants": 0, "recordings": 0, "analytics": older}
    assert await _ids(connection, "SELECT id FROM analytics") == newer
    # Without --meetings, every meeting and participant stays.
    assert await _ids(connection, "SELECT id FROM meetings") == meetings
    assert await _ids(connection, "SELECT id FROM participants") == participants
    assert result.batches >= older // 500


async def test_rows_written_while_retention_runs_are_kept(generated: asyncpg.Connection) -> None:
    connection = generated
    newer = await _ids(connection, "SELECT id FROM analytics WHERE created_at >= $1", CUTOFF)
    # Old meetings, which the run visits: new events land in them meanwhile.
    targets = [
        row["id"]
        for row in await connection.fetch(
            "SELECT id FROM meetings WHERE created_at < $1 ORDER BY id DESC LIMIT 40", CUTOFF
        )
    ]
    written: set[uuid.UUID] = set()
    batches_seen = asyncio.Event()
    batches_after_writes = []

    def progress(state: RetentionProgress) -> None:
        batches_seen.set()
        if len(written) == len(targets):
            batches_after_writes.append(state.done)

    async def write_meanwhile() -> None:
        await batches_seen.wait()
        for number, meeting_id in enumerate(targets):
            written.add(
                await connection.fetchval(
                    "INSERT INTO analytics (meeting_id, event_type, event_data, created_at) "
                    "VALUES ($1, 'track_published', '{}', $2) RETURNING id",
                    meeting_id,
                    CUTOFF + timedelta(seconds=number),  # the oldest a row may be to stay
                )
            )
            await asyncio.sleep(0.005)

    result, _ = await asyncio.gather(
        run_retention(CUTOFF, batch_size=100, pause=0.01, progress=progress), write_meanwhile()
    )

    assert len(written) == len(targets)
    assert batches_after_writes, "the writes should have happened while retention ran"
    assert await _ids(connection, "SELECT id FROM analytics") == newer | written
    assert await _old_events(connection) == 0
    assert result.counts["analytics"] > 0


async def test_an_interrupted_run_keeps_its_batches_and_the_next_run_finishes(
    generated: asyncpg.Connection,
) -> None:
    connection = generated
    newer = await _ids(connection, "SELECT id FROM analytics WHERE created_at >= $1", CUTOFF)
    older = await _old_events(connection)

    def interrupt_after_three(state: RetentionProgress) -> None:
        if state.done >= 3 * 200:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await run_retention(CUTOFF, batch_size=200, pause=0, progress=interrupt_after_three)
    left = await _old_events(connection)
    assert 0 < left <= older - 3 * 200  # three batches committed, the rest waits

    resumed = await run_retention(CUTOFF, batch_size=200, pause=0)

    assert resumed.counts["analytics"] == left
    assert await _old_events(connection) == 0
    assert await _ids(connection, "SELECT id FROM analytics") == newer


async def test_with_meetings_ended_meetings_before_the_cutoff_go_whole_and_others_lose_old_events(
    generated: asyncpg.Connection,
) -> None:
    connection = generated
    ended = await _ids(connection, "SELECT id FROM meetings WHERE ended_at < $1", CUTOFF)
    kept = await _ids(connection, "SELECT id FROM meetings WHERE NOT (ended_at < $1)", CUTOFF)
    kept |= await _ids(connection, "SELECT id FROM meetings WHERE ended_at IS NULL")
    expected = {
        "meetings": len(ended),
        "participants": await connection.fetchval(
            "SELECT count(*) FROM participants WHERE meeting_id = ANY($1::uuid[])", list(ended)
        ),
        "recordings": await connection.fetchval(
            "SELECT count(*) FROM recordings WHERE meeting_id = ANY($1::uuid[])", list(ended)
        ),
        "analytics": await connection.fetchval(
            "SELECT count(*) FROM analytics WHERE meeting_id = ANY($1::uuid[]) OR created_at < $2",
            list(ended),
            CUTOFF,
        ),
    }
    kept_participants = await _ids(
        connection, "SELECT id FROM participants WHERE meeting_id = ANY($1::uuid[])", list(kept)
    )
    kept_events = await _ids(
        connection,
        "SELECT id FROM analytics WHERE meeting_id = ANY($1::uuid[]) AND created_at >= $2",
        list(kept),
        CUTOFF,
    )
    assert ended and kept and expected["recordings"] > 0

    planned = await plan_retention(CUTOFF, meetings=True)
    result = await run_retention(CUTOFF, meetings=True, batch_size=300, pause=0)

    assert planned == expected
    assert result.counts == expected
    assert await _ids(connection, "SELECT id FROM meetings") == kept
    assert await _ids(connection, "SELECT id FROM participants") == kept_participants
    assert await _ids(connection, "SELECT id FROM analytics") == kept_events


async def test_a_dry_run_counts_what_the_run_deletes_and_changes_nothing(
    generated: asyncpg.Connection,
) -> None:
    connection = generated
    before = await connection.fetchval("SELECT count(*) FROM analytics")

    dry = await run_retention(CUTOFF, meetings=True, dry_run=True)

    assert dry.dry_run and dry.batches == 0
    assert await connection.fetchval("SELECT count(*) FROM analytics") == before
    real = await run_retention(CUTOFF, meetings=True, pause=0)
    assert real.counts == dry.counts
    assert real.rows > 0


async def test_retention_refuses_a_production_database_unless_forced(
    generated: asyncpg.Connection, production_env: None
) -> None:
    connection = generated
    older = await _old_events(connection)

    with pytest.raises(ProductionDatabaseError, match="--force"):
        await run_retention(CUTOFF)
    assert await _old_events(connection) == older

    result = await run_retention(CUTOFF, force=True, pause=0)
    assert result.counts["analytics"] == older


async def test_the_command_deletes_with_keep_and_says_what_went(
    generated: asyncpg.Connection, database_url: str
) -> None:
    connection = generated
    older = await _old_events(connection)
    keep = (datetime.now(UTC) - CUTOFF).days  # a cut-off within a day of CUTOFF

    dry = run_piccolo(["conference", "retention", f"--keep={keep}d", "--dry_run"], database_url)
    assert "Dry run" in dry.stdout and "analytics" in dry.stdout
    assert await _old_events(connection) == older

    run = run_piccolo(["conference", "retention", f"--keep={keep}d"], database_url)
    assert "Deleted from" in run.stdout and "rows/s" in run.stdout
    left_before = await connection.fetchval(
        "SELECT count(*) FROM analytics WHERE created_at < now() - $1::interval",
        timedelta(days=keep),
    )
    assert left_before == 0

    bad = run_piccolo(["conference", "retention", "--keep=90x"], database_url, check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("conference: error: a retention period")
    spaced = run_piccolo(
        ["conference", "retention", "--before", "2026-10-01T00:00:00+00:00"],
        database_url,
        check=False,
    )
    assert spaced.returncode == 1
    assert "--before needs a value: write --before=VALUE" in spaced.stderr
