"""
The query catalogue on a real PostgreSQL 18: each function answers its
question (pages cover everything exactly once), and at a scale where the
planner has a choice, every plan, custom or generic, reads indexes only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from conference import db, queries
from conference.devdata.generate import generate
from conference.devdata.target import table_names
from conference.queries import Query, RecordingCursor, TimelineCursor

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONFERENCE_TABLES = table_names()


@pytest.fixture
async def pool(connection: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """The default pool, open for one test; a raw connection; tables emptied afterwards."""
    await db.start_pool()
    yield connection
    await db.close_pool()


async def _meeting(
    connection: asyncpg.Connection,
    room_name: str,
    created_at: datetime = T0,
    ended_at: datetime | None = None,
) -> uuid.UUID:
    return await connection.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO meetings (room_name, created_at, ended_at) VALUES ($1, $2, $3) RETURNING id",
        room_name,
        created_at,
        ended_at,
    )


async def _participant(
    connection: asyncpg.Connection,
    meeting_id: uuid.UUID,
    identity: str,
    joined_at: datetime,
    left_at: datetime | None = None,
) -> uuid.UUID:
    return await connection.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO participants (meeting_id, identity, joined_at, left_at, metadata) "
        "VALUES ($1, $2, $3, $4, $5::text::jsonb) RETURNING id",
        meeting_id,
        identity,
        joined_at,
        left_at,
        json.dumps({"name": identity.title()}),
    )


# --- Active participants and meetings -------------------------------------------


async def test_active_participants_are_those_still_in_the_meeting_in_join_order(
    pool: asyncpg.Connection,
) -> None:
    meeting = await _meeting(pool, "standup")
    other = await _meeting(pool, "other")
    await _participant(pool, meeting, "carol", T0 + timedelta(minutes=3))
    await _participant(pool, meeting, "alice", T0 + timedelta(minutes=1))
    await _participant(pool, meeting, "bob", T0, left_at=T0 + timedelta(minutes=2))
    await _participant(pool, other, "dave", T0)

    active = await queries.active_participants(meeting)

    assert [p.identity for p in active] == ["alice", "carol"]
    assert json.loads(active[0].metadata) == {"name": "Alice"}
    assert active[0].joined_at == T0 + timedelta(minutes=1)
    assert await queries.active_participants(uuid.uuid4()) == []


async def test_active_meetings_are_the_running_ones_newest_first(
    pool: asyncpg.Connection,
) -> None:
    await _meeting(pool, "standup", T0, ended_at=T0 + timedelta(minutes=15))
    older = await _meeting(pool, "standup", T0 + timedelta(minutes=1))
    newer = await _meeting(pool, "standup", T0 + timedelta(minutes=5))
    other = await _meeting(pool, "design", T0 + timedelta(minutes=3))

    assert [m.id for m in await queries.active_meetings()] == [newer, other, older]
    assert [m.id for m in await queries.active_meetings("standup")] == [newer, older]
    assert [m.id for m in await queries.active_meetings(limit=1)] == [newer]
    assert await queries.active_meetings("nowhere") == []
    (meeting,) = await queries.active_meetings("design")
    assert (meeting.room_name, meeting.created_at, meeting.metadata) == (
        "design",
        T0 + timedelta(minutes=3),
        "{}",
    )


async def test_the_catalogue_sees_the_callers_transaction(pool: asyncpg.Connection) -> None:
    async with db.transaction():
        await db.query("INSERT INTO meetings (room_name) VALUES ('uncommitted')")
        assert [m.room_name for m in await queries.active_meetings()] == ["uncommitted"]


@pytest.mark.parametrize("limit", [0, -1, queries.MAX_PAGE_SIZE + 1])
async def test_a_limit_out_of_range_is_refused_before_querying(limit: int) -> None:
    with pytest.raises(ValueError, match="limit must be between 1 and 10000"):
        await queries.active_meetings(limit=limit)
    with pytest.raises(ValueError, match="limit must be between"):
        await queries.event_timeline(uuid.uuid4(), limit=limit)


# --- Timeline -------------------------------------------------------------------


async def _timeline_meeting(connection: asyncpg.Connection) -> tuple[uuid.UUID, list[Any]]:
    """A meeting with 23 events, several sharing a timestamp, plus another meeting's."""
    meeting = await _meeting(connection, "timeline")
    other = await _meeting(connection, "other")
    moments = [T0 + timedelta(seconds=i // 3) for i in range(23)]  # ties of three
    await connection.executemany(
        "INSERT INTO analytics (meeting_id, event_type, created_at, event_data) "
        "VALUES ($1, $2, $3, $4::text::jsonb)",
        [(meeting, f"e{i}", moment, json.dumps({"i": i})) for i, moment in enumerate(moments)]
        + [(other, "elsewhere", T0, "{}")],
    )
    rows = await connection.fetch(
        "SELECT id, created_at FROM analytics WHERE meeting_id = $1 ORDER BY created_at, id",
        meeting,
    )
    return meeting, [row["id"] for row in rows]


async def test_timeline_pages_cover_every_event_once_in_order(pool: asyncpg.Connection) -> None:
    meeting, expected = await _timeline_meeting(pool)

    seen: list[uuid.UUID] = []
    pages = 0
    page = await queries.event_timeline(meeting, limit=5)
    while True:
        pages += 1
        seen += [event.id for event in page.events]
        if page.next is None:
            break
        page = await queries.event_timeline(meeting, after=page.next, limit=5)

    assert seen == expected
    assert pages == 5


async def test_timeline_keeps_to_the_half_open_time_range(pool: asyncpg.Connection) -> None:
    meeting, expected = await _timeline_meeting(pool)

    page = await queries.event_timeline(
        meeting, since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=4)
    )

    # Seconds 2 and 3 (three events each), ties in id order.
    assert [event.id for event in page.events] == expected[6:12]
    assert sorted(e.event_type for e in page.events) == sorted(f"e{i}" for i in range(6, 12))
    assert page.next is None
    assert json.loads(page.events[0].event_data)["i"] in range(6, 9)


async def test_a_full_last_page_has_no_next_cursor(pool: asyncpg.Connection) -> None:
    meeting, expected = await _timeline_meeting(pool)

    page = await queries.event_timeline(meeting, limit=len(expected))

    assert len(page.events) == len(expected) and page.next is None


# --- Recordings -------------------------------------------------------------------


async def test_recordings_pages_are_newest_first_not_started_first_and_complete(
    pool: asyncpg.Connection,
) -> None:
    meeting = await _meeting(pool, "recorded")
    starts: list[datetime | None] = [None, None, None] + [
        T0 + timedelta(minutes=i // 2) for i in range(9)
    ]
    for i, started in enumerate(starts):
        await pool.execute(
            "INSERT INTO recordings (meeting_id, egress_id, status, started_at) "
            "VALUES ($1, $2, 'active', $3)",
            meeting,
            f"EG_{i}",
            started,
        )
    await pool.execute(
        "INSERT INTO recordings (meeting_id, egress_id, status, started_at, duration) "
        "VALUES ($1, 'EG_done', 'complete', $2, 60)",
        meeting,
        T0,
    )

    seen = []
    page = await queries.recordings_by_status("active", limit=2)
    while True:
        seen += page.recordings
        if page.next is None:
            break
        page = await queries.recordings_by_status("active", after=page.next, limit=2)

    assert sorted(r.egress_id for r in seen) == sorted(f"EG_{i}" for i in range(12))
    assert len({r.id for r in seen}) == 12
    assert [r.started_at for r in seen[:3]] == [None, None, None]
    start_times = [r.started_at for r in seen[3:] if r.started_at is not None]
    assert len(start_times) == 9 and start_times == sorted(start_times, reverse=True)
    (done,) = (await queries.recordings_by_status(queries.RecordingStatus.complete)).recordings
    assert (done.egress_id, done.duration) == ("EG_done", 60.0)


async def test_an_unknown_recording_status_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown recording status 'done'; one of starting, "):
        await queries.recordings_by_status("done")


# --- Statistics ---------------------------------------------------------------------


async def test_meeting_stats_count_participants_recordings_and_events(
    pool: asyncpg.Connection,
) -> None:
    meeting = await _meeting(pool, "stats")
    other = await _meeting(pool, "other")
    alice = await _participant(pool, meeting, "alice", T0)
    await _participant(pool, meeting, "alice", T0, left_at=T0 + timedelta(minutes=1))
    await _participant(pool, meeting, "bob", T0, left_at=T0 + timedelta(minutes=2))
    await _participant(pool, other, "carol", T0)
    for egress, duration in (("EG_a", 61.5), ("EG_b", 30.25), ("EG_c", None)):
        await pool.execute(
            "INSERT INTO recordings (meeting_id, egress_id, duration) VALUES ($1, $2, $3)",
            meeting,
            egress,
            duration,
        )
    await pool.executemany(
        "INSERT INTO analytics (meeting_id, participant_id, event_type) VALUES ($1, $2, $3)",
        [(meeting, alice, "participant_joined")] * 3
        + [(meeting, None, "room_started")]
        + [(other, None, "room_started")],
    )

    stats = await queries.meeting_stats(meeting)

    assert stats is not None
    assert (stats.participants_total, stats.participants_active) == (3, 1)
    assert (stats.recordings, stats.recording_seconds) == (3, 91.75)
    assert stats.events_by_type == {"participant_joined": 3, "room_started": 1}
    assert stats.events_total == 4


async def test_stats_of_an_empty_meeting_are_zero_and_of_no_meeting_none(
    pool: asyncpg.Connection,
) -> None:
    meeting = await _meeting(pool, "empty")

    stats = await queries.meeting_stats(meeting)

    assert stats == queries.MeetingStats(meeting, 0, 0, 0, 0.0, {})
    assert await queries.meeting_stats(uuid.uuid4()) is None


# --- Plans at scale -------------------------------------------------------------------

UNTIL = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# Realistic rows from the generator (their JSON makes analytics wide: many
# pages), then more ended meetings with participants, recordings and
# events, written by the server: enough rows that a sequential scan would
# be the planner's choice for a query no index serves.
PADDING_SQL = [
    """
    INSERT INTO meetings (room_name, created_at, ended_at)
    SELECT 'padding-' || (g % 300), t, t + interval '40 minutes'
    FROM generate_series(1, 4000) AS g,
         LATERAL (SELECT $1::timestamptz - interval '3 days' - g * interval '5 minutes' AS t) AS x
    """,
    """
    INSERT INTO participants (meeting_id, identity, joined_at, left_at)
    SELECT m.id, 'person-' || k, m.created_at, m.ended_at
    FROM meetings AS m, generate_series(1, 3) AS k
    WHERE m.room_name LIKE 'padding-%'
    """,
    """
    INSERT INTO recordings (meeting_id, egress_id, status, started_at, completed_at, duration)
    SELECT m.id, 'EG_pad_' || m.id, s.status, m.created_at, m.ended_at, 2400
    FROM meetings AS m,
         LATERAL (SELECT CASE WHEN random() < 0.9 THEN 'complete' ELSE 'failed' END AS status) s
    WHERE m.room_name LIKE 'padding-%'
    """,
    """
    INSERT INTO analytics (meeting_id, event_type, created_at)
    SELECT m.id, 'track_published', m.created_at + k * interval '10 seconds'
    FROM meetings AS m, generate_series(1, 2) AS k
    WHERE m.room_name LIKE 'padding-%'
    """,
]


@pytest.fixture
async def data_at_scale(connection: asyncpg.Connection) -> asyncpg.Connection:
    """Generated and padded rows, analysed; tables emptied afterwards."""
    await generate(meetings=200, seed=11, days=2, until=UNTIL, replace=True)
    for statement in PADDING_SQL:
        await connection.execute(statement, *([UNTIL] if "$1" in statement else []))
    await connection.execute("VACUUM ANALYZE " + ", ".join(CONFERENCE_TABLES))
    return connection


async def _plan(connection: asyncpg.Connection, query: Query, mode: str) -> str:
    """
    The JSON plan of ``query`` as a prepared statement runs it: planned for
    these values (custom), or for any values (generic: what PostgreSQL may
    switch to after five runs).
    """
    await connection.execute(f"PREPARE catalogue_probe AS {query.sql}")
    try:
        await connection.execute(f"SET plan_cache_mode = {mode}")
        # EXECUTE takes no bind parameters: the values go in as literals,
        # typed by the prepared statement.
        values = ", ".join(_literal(value) for value in query.args)
        return await connection.fetchval(  # type: ignore[no-any-return]
            f"EXPLAIN (FORMAT JSON) EXECUTE catalogue_probe({values})"
        )
    finally:
        await connection.execute("DEALLOCATE catalogue_probe; RESET plan_cache_mode")


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every node of a plan reading a table."""
    found = []
    if "Relation Name" in plan:
        found.append((plan["Node Type"], plan["Relation Name"]))
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


async def _catalogue(connection: asyncpg.Connection) -> dict[str, Query]:
    """Every query shape of the catalogue, with parameters from the data."""
    running = await connection.fetchrow(
        "SELECT id, room_name FROM meetings WHERE ended_at IS NULL ORDER BY created_at LIMIT 1"
    )
    busy = await connection.fetchval(
        "SELECT meeting_id FROM participants GROUP BY meeting_id ORDER BY count(*) DESC LIMIT 1"
    )
    event = await connection.fetchrow(
        "SELECT created_at, id FROM analytics WHERE meeting_id = $1 ORDER BY created_at, id "
        "OFFSET 10 LIMIT 1",
        busy,
    )
    recording = await connection.fetchrow(
        "SELECT started_at, id FROM recordings WHERE status = 'complete' "
        "ORDER BY started_at DESC, id DESC OFFSET 100 LIMIT 1"
    )
    assert running is not None and event is not None and recording is not None
    start = await connection.fetchval("SELECT created_at FROM meetings WHERE id = $1", busy)
    return {
        "active participants": queries.active_participants_query(running["id"]),
        "active meetings": queries.active_meetings_query(),
        "active meetings in room": queries.active_meetings_query(running["room_name"]),
        "active meetings in padded room": queries.active_meetings_query("padding-7"),
        "timeline": queries.event_timeline_query(busy),
        "timeline in range": queries.event_timeline_query(
            busy, start, start + timedelta(minutes=30)
        ),
        "timeline next page": queries.event_timeline_query(
            busy, after=TimelineCursor(event["created_at"], event["id"])
        ),
        "timeline next page in range": queries.event_timeline_query(
            busy,
            start,
            start + timedelta(hours=1),
            TimelineCursor(event["created_at"], event["id"]),
        ),
        "recordings complete": queries.recordings_by_status_query("complete"),
        "recordings failed": queries.recordings_by_status_query("failed"),
        "recordings next page": queries.recordings_by_status_query(
            "complete", RecordingCursor(recording["started_at"], recording["id"])
        ),
        "recordings after not started": queries.recordings_by_status_query(
            "complete", RecordingCursor(None, recording["id"])
        ),
        "meeting stats": queries.meeting_stats_query(busy),
    }


async def test_every_catalogue_query_reads_indexes_only_at_scale(
    data_at_scale: asyncpg.Connection,
) -> None:
    connection = data_at_scale
    pages = dict(
        await connection.fetch(
            "SELECT relname, relpages FROM pg_class WHERE relname = ANY($1::text[])",
            list(CONFERENCE_TABLES),
        )
    )
    # Big enough that reading a whole table costs more than a few index
    # lookups, so that the planner has a real choice.
    assert min(pages.values()) >= 40, pages

    problems = []
    for name, query in (await _catalogue(connection)).items():
        plans = [("custom", await _plan(connection, query, "force_custom_plan"))]
        plans.append(("generic", await _plan(connection, query, "force_generic_plan")))
        for kind, plan in plans:
            scans = _scans(json.loads(plan)[0]["Plan"])
            assert scans, f"{name}: no table read at all?"
            sequential = [table for node, table in scans if node == "Seq Scan"]
            if sequential:
                problems.append(f"{name} ({kind} plan): Seq Scan on {', '.join(sequential)}")

    assert problems == []
