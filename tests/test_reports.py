"""
Usage reports (``conference.reports``): the rollups answer exactly what a
brute-force SQL over the raw tables answers, after a rebuild and after
incremental refreshes with late, out-of-order and deleted rows, on
generated data with meetings that span midnight.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from conference import reports
from conference.devdata.generate import generate
from conference.devdata.seed import seed
from conference.devdata.target import truncate_sql
from conference.errors import QueryTimeout
from conference.reports.model import Report
from tests.support import run_piccolo

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
NIGHT_ROOM = "night-shift"


async def _insert_meeting(
    connection: asyncpg.Connection, room: str, created: datetime, ended: datetime | None
) -> uuid.UUID:
    return await connection.fetchval(
        "INSERT INTO meetings (room_name, created_at, ended_at) VALUES ($1, $2, $3) RETURNING id",
        room,
        created,
        ended,
    )


async def _insert_session(
    connection: asyncpg.Connection,
    meeting: uuid.UUID,
    identity: str,
    joined: datetime,
    left: datetime | None,
) -> uuid.UUID:
    return await connection.fetchval(
        "INSERT INTO participants (meeting_id, identity, joined_at, left_at) "
        "VALUES ($1, $2, $3, $4) RETURNING id",
        meeting,
        identity,
        joined,
        left,
    )


async def _insert_event(
    connection: asyncpg.Connection,
    meeting: uuid.UUID,
    participant: uuid.UUID | None,
    event_type: str,
    at: datetime,
) -> None:
    await connection.execute(
        "INSERT INTO analytics (meeting_id, participant_id, event_type, created_at) "
        "VALUES ($1, $2, $3, $4)",
        meeting,
        participant,
        event_type,
        at,
    )


async def _assert_rollups_match_brute_force(rooms: list[str | None]) -> Report:
    """Every grain, several rooms and a DST zone: rollups == raw SQL, bucket by bucket."""
    start, end = TODAY - timedelta(days=5), TODAY + timedelta(days=1)
    checked = None
    for room in rooms:
        for grain, tz in [
            ("hour", "UTC"),
            ("day", "UTC"),
            ("week", "UTC"),
            ("day", "Europe/Paris"),
        ]:
            fast = await reports.usage_report(start, end, grain=grain, room_name=room, tz=tz)
            assert fast.as_of is not None
            slow = await reports.brute_force_report(
                start, end, as_of=fast.as_of, grain=grain, room_name=room, tz=tz
            )
            assert fast.buckets == slow.buckets, (room, grain, tz)
            if room is None and grain == "day" and tz == "UTC":
                checked = fast
    assert checked is not None
    return checked


async def test_rollups_equal_brute_force_through_late_out_of_order_and_deleted_rows(
    connection: asyncpg.Connection,
) -> None:
    await generate(meetings=120, seed=17, days=4, until=TODAY)
    yesterday_2330 = TODAY - timedelta(minutes=30)
    night = await _insert_meeting(connection, NIGHT_ROOM, yesterday_2330, None)
    across = await _insert_session(
        connection,
        night,
        "ana",
        yesterday_2330 + timedelta(minutes=5),
        TODAY + timedelta(minutes=20),
    )
    still_open = await _insert_session(
        connection, night, "bo", yesterday_2330 + timedelta(minutes=10), None
    )
    await _insert_event(connection, night, across, "participant_joined", yesterday_2330)
    await connection.execute(
        "INSERT INTO recordings (meeting_id, egress_id, status, started_at) "
        "VALUES ($1, 'EG_night', 'active', $2)",
        night,
        yesterday_2330 + timedelta(minutes=1),
    )
    generated_room = await connection.fetchval(
        "SELECT room_name FROM meetings WHERE room_name <> $1 "
        "GROUP BY room_name ORDER BY count(*) DESC, room_name LIMIT 1",
        NIGHT_ROOM,
    )

    first = await reports.refresh()
    assert first.rebuilt and not first.skipped
    report = await _assert_rollups_match_brute_force([None, NIGHT_ROOM, generated_room])
    yesterday = report.buckets[-2]
    assert yesterday.start == TODAY - timedelta(days=1)
    assert yesterday.meetings_started > 0 and yesterday.peak_participants > 0

    # Late and out of order, as webhooks arrive: a participant_left for
    # yesterday, a session of two days ago reported now, an event of three
    # days ago, a room renamed, a meeting and a participant deleted.
    await connection.execute(
        "UPDATE participants SET left_at = $2 WHERE id = $1",
        still_open,
        yesterday_2330 + timedelta(minutes=25),
    )
    old_meeting, old_start = await connection.fetchrow(
        "SELECT id, created_at FROM meetings WHERE created_at < $1 ORDER BY created_at LIMIT 1",
        TODAY - timedelta(days=2),
    )
    late = await _insert_session(
        connection,
        old_meeting,
        "late",
        old_start + timedelta(minutes=1),
        old_start + timedelta(hours=3),
    )
    await _insert_event(
        connection, old_meeting, late, "participant_left", old_start + timedelta(hours=3)
    )
    renamed = await connection.fetchval(
        "SELECT id FROM meetings WHERE room_name = $1 ORDER BY created_at LIMIT 1", generated_room
    )
    await connection.execute(
        "UPDATE meetings SET room_name = $2 WHERE id = $1", renamed, "renamed-room"
    )
    await connection.execute(
        "DELETE FROM meetings WHERE id = (SELECT id FROM meetings WHERE room_name <> $1 "
        "AND id <> $2 AND id <> $3 ORDER BY created_at DESC LIMIT 1)",
        NIGHT_ROOM,
        old_meeting,
        renamed,
    )
    await connection.execute(
        "DELETE FROM participants WHERE id = (SELECT id FROM participants "
        "WHERE meeting_id NOT IN ($1, $2) ORDER BY joined_at LIMIT 1)",
        night,
        old_meeting,
    )

    second = await reports.refresh()
    assert not second.rebuilt
    # Only the changed meetings are recomputed (a few more when another
    # database's transactions on the shared test server hold the watermark).
    assert 0 < second.meetings < first.meetings
    await _assert_rollups_match_brute_force([None, NIGHT_ROOM, generated_room, "renamed-room"])

    third = await reports.refresh()
    assert not third.rebuilt
    await _assert_rollups_match_brute_force([None, NIGHT_ROOM])


async def test_a_session_across_midnight_counts_its_minutes_in_each_day(
    connection: asyncpg.Connection,
) -> None:
    meeting = await _insert_meeting(
        connection, NIGHT_ROOM, TODAY - timedelta(hours=2), TODAY + timedelta(hours=1)
    )
    await _insert_session(
        connection, meeting, "ana", TODAY - timedelta(minutes=90), TODAY + timedelta(minutes=30)
    )
    await _insert_session(
        connection, meeting, "bo", TODAY - timedelta(minutes=10), TODAY + timedelta(minutes=10)
    )
    await reports.refresh()

    report = await reports.usage_report(TODAY - timedelta(days=1), TODAY + timedelta(days=1))
    before, after = report.buckets
    assert (before.participant_minutes, after.participant_minutes) == (100.0, 40.0)
    assert (before.peak_participants, after.peak_participants) == (2, 2)
    assert (before.meetings_started, after.meetings_started) == (1, 0)
    assert (before.participant_sessions, after.participant_sessions) == (2, 0)


async def test_a_session_without_left_at_counts_up_to_the_refresh(
    connection: asyncpg.Connection,
) -> None:
    joined = datetime.now(UTC) - timedelta(minutes=30)
    meeting = await _insert_meeting(connection, NIGHT_ROOM, joined, None)
    await _insert_session(connection, meeting, "ana", joined, None)

    first = await reports.refresh()
    second = await reports.refresh()

    assert first.as_of is not None and second.as_of is not None
    report = await reports.usage_report(joined, second.as_of + timedelta(seconds=1), grain="week")
    total_us = sum(bucket.participant_us for bucket in report.buckets)
    assert total_us == (second.as_of - joined) // timedelta(microseconds=1)


async def test_a_truncate_makes_the_next_refresh_rebuild(connection: asyncpg.Connection) -> None:
    await seed(force=True)
    assert (await reports.refresh()).rebuilt
    assert not (await reports.refresh()).rebuilt
    await seed(force=True)  # TRUNCATE and insert again
    assert (await reports.refresh()).rebuilt


async def _until_one_waits_for_a_lock(connection: asyncpg.Connection) -> None:
    for _ in range(200):
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("nobody waited for a lock within 10 s")


async def _refresh_during_a_truncate(
    connection: asyncpg.Connection, database_url: str, first: str, truncate: str
) -> reports.RefreshResult:
    """
    ``seed --force`` while a server's timer refreshes: the TRUNCATE has taken
    ``first`` when the refresh starts, then takes the rest one at a time and
    holds each to its commit. The refresh's result; raises if either failed.
    """
    await seed(force=True)
    truncating = await asyncpg.connect(database_url)
    try:
        async with truncating.transaction():
            await truncating.execute(f"LOCK TABLE {first} IN ACCESS EXCLUSIVE MODE")
            refreshing = asyncio.ensure_future(reports.refresh())
            await _until_one_waits_for_a_lock(connection)
            await truncating.execute(truncate)
        return await asyncio.wait_for(refreshing, 30)
    finally:
        await truncating.close()


async def test_a_refresh_waits_for_a_truncate_of_the_raw_tables_instead_of_deadlocking(
    connection: asyncpg.Connection, database_url: str
) -> None:
    result = await _refresh_during_a_truncate(connection, database_url, "analytics", truncate_sql())

    # It waited, then saw the TRUNCATE: nothing to count, rollups rebuilt empty.
    assert result.rebuilt and result.meetings == 0
    assert await connection.fetchval("SELECT count(*) FROM report_meetings") == 0


async def test_a_truncate_in_another_order_is_not_a_deadlock_victim_either(
    connection: asyncpg.Connection, database_url: str
) -> None:
    # Parents first (as TRUNCATE ... CASCADE takes them): the refresh, holding
    # analytics while it waits for meetings, lets go within LOCK_ATTEMPT_MS.
    truncate = "TRUNCATE meetings, participants, recordings, analytics"
    result = await _refresh_during_a_truncate(connection, database_url, "meetings", truncate)

    assert result.rebuilt and result.meetings == 0


async def test_a_refresh_gives_up_with_a_clear_error_while_a_raw_table_stays_locked(
    database_url: str,
) -> None:
    holding = await asyncpg.connect(database_url)
    try:
        async with holding.transaction():
            await holding.execute("LOCK TABLE participants IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(QueryTimeout, match=r"stayed locked for 0\.5 s .* try again"):
                await reports.refresh(lock_wait=0.5)
    finally:
        await holding.close()
    assert (await reports.refresh()).rebuilt  # and works once it is free


async def test_invalidate_recounts_events_deleted_on_their_own(
    connection: asyncpg.Connection,
) -> None:
    start = TODAY - timedelta(days=1)
    meeting = await _insert_meeting(connection, NIGHT_ROOM, start, start + timedelta(hours=1))
    for minute in range(3):
        await _insert_event(
            connection, meeting, None, "track_published", start + timedelta(minutes=minute)
        )
    await reports.refresh()
    await connection.execute("DELETE FROM analytics WHERE created_at = $1", start)

    assert await reports.invalidate(start, TODAY) == 1
    await reports.refresh()
    fresh = await reports.usage_report(start, TODAY)
    assert fresh.buckets[0].events == {"track_published": 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grain": "month"}, "unknown grain 'month'"),
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"tz": "Asia/Kolkata"}, "whole UTC hours"),
        ({"end": TODAY - timedelta(days=9)}, "must be after start"),
        ({"start": datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
async def test_a_bad_report_request_says_what_is_wrong(
    kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"start": TODAY - timedelta(days=7), "end": TODAY, **kwargs}
    with pytest.raises(ValueError, match=message):
        await reports.usage_report(**arguments)  # type: ignore[arg-type]


async def test_refresh_inside_a_transaction_is_refused() -> None:
    from conference import db

    async with db.transaction():
        with pytest.raises(ValueError, match="outside one"):
            await reports.refresh()


async def test_the_rollup_command_rebuilds_then_refreshes(
    connection: asyncpg.Connection, database_url: str
) -> None:
    await seed(force=True)

    first = await asyncio.to_thread(run_piccolo, ["conference", "rollup"], database_url)
    second = await asyncio.to_thread(run_piccolo, ["conference", "rollup"], database_url)

    assert "Rollups rebuilt as of" in first.stdout
    assert "Rollups refreshed as of" in second.stdout
    assert await connection.fetchval("SELECT count(*) FROM report_hours WHERE room_name = ''") > 0


async def test_a_refresh_that_finds_another_running_skips_and_changes_nothing(
    connection: asyncpg.Connection,
) -> None:
    from conference.reports.rollup import LOCK_KEY

    await seed(force=True)
    await reports.refresh()
    before = await connection.fetch("SELECT * FROM report_hours ORDER BY room_name, hour")
    await connection.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)  # "another refresh"
    try:
        skipped = await reports.refresh()
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)

    assert skipped.skipped and skipped.as_of is None
    assert await connection.fetch("SELECT * FROM report_hours ORDER BY room_name, hour") == before
    assert not (await reports.refresh()).skipped


async def test_the_apps_timer_refreshes_the_rollups_until_its_block_ends(
    connection: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conference.reports import schedule

    monkeypatch.setattr(schedule, "FIRST_REFRESH_DELAY", 0.0)
    rolled_up = "SELECT count(*) FROM report_meetings WHERE room_name = $1"
    joined = datetime.now(UTC) - timedelta(minutes=5)
    await _insert_session(
        connection, await _insert_meeting(connection, NIGHT_ROOM, joined, None), "ana", joined, None
    )

    async with schedule.refresh_periodically(0):  # 0: no timer
        await asyncio.sleep(0.3)
    assert await connection.fetchval(rolled_up, NIGHT_ROOM) == 0

    async with schedule.refresh_periodically(0.1):
        for _ in range(100):
            if await connection.fetchval(rolled_up, NIGHT_ROOM):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("no refresh within 5 s of a 0.1 s timer")
    late = await _insert_meeting(connection, "after-the-block", joined, None)
    await asyncio.sleep(0.3)
    assert late and await connection.fetchval(rolled_up, "after-the-block") == 0  # timer gone
