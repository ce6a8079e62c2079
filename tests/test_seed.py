"""
Development data: what ``seed`` leaves in the database, that it is
consistent in time, stable when repeated, all-or-nothing, and that it
refuses a database that looks like production.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from conference.db import Database
from conference.devdata import seed as seed_module
from conference.devdata.seed import (
    SEED_ROOM_NAMES,
    SeedRows,
    build_seed_rows,
    seed,
    seed_if_empty,
)
from conference.devdata.target import ensure_not_production
from conference.engine import ConferenceEngine, database_name
from conference.errors import CheckViolation, ProductionDatabaseError
from conference.tables import TABLES, AnalyticsEvent
from tests import support
from tests.consistency import broken_rules, latest_time, table_dump

EXPECTED_COUNTS = {"meetings": 3, "participants": 8, "recordings": 1, "analytics": 19}


async def test_seed_inserts_three_meetings_eight_participants_one_recording(
    connection: asyncpg.Connection,
) -> None:
    result = await seed()

    assert result.counts == EXPECTED_COUNTS
    assert result.database == await connection.fetchval("SELECT current_database()")
    meetings = await connection.fetch(
        "SELECT room_name, ended_at, room_sid FROM meetings ORDER BY created_at"
    )
    assert [row["room_name"] for row in meetings] == list(SEED_ROOM_NAMES)
    assert [row["ended_at"] is None for row in meetings] == [False, True, True]
    assert all(row["room_sid"].startswith("RM_") for row in meetings)
    per_meeting = await connection.fetch(
        "SELECT m.room_name, count(p.id) AS people, count(p.left_at) AS gone "
        "FROM meetings m LEFT JOIN participants p ON p.meeting_id = m.id "
        "GROUP BY m.room_name"
    )
    people = {row["room_name"]: (row["people"], row["gone"]) for row in per_meeting}
    assert people == {
        SEED_ROOM_NAMES[0]: (3, 3),
        SEED_ROOM_NAMES[1]: (3, 1),
        SEED_ROOM_NAMES[2]: (2, 0),
    }


async def test_the_seeded_recording_is_complete_with_file_size_and_duration(
    connection: asyncpg.Connection,
) -> None:
    await seed()

    recording = await connection.fetchrow(
        "SELECT r.*, m.room_name FROM recordings r JOIN meetings m ON m.id = r.meeting_id"
    )
    assert recording["room_name"] == SEED_ROOM_NAMES[0]
    assert recording["status"] == "complete"
    assert recording["egress_id"].startswith("EG_")
    assert recording["storage_path"].endswith(f"/{recording['egress_id']}.mp4")
    assert recording["file_size"] > 100_000_000  # bytes: half an hour of 720p
    elapsed = (recording["completed_at"] - recording["started_at"]).total_seconds()
    assert recording["duration"] == pytest.approx(elapsed)


async def test_seeded_analytics_cover_joins_leaves_and_the_recording_lifecycle(
    connection: asyncpg.Connection,
) -> None:
    await seed()

    rows = await connection.fetch(
        "SELECT event_type, count(*) AS n FROM analytics GROUP BY event_type"
    )
    assert {row["event_type"]: row["n"] for row in rows} == {
        "room_started": 3,
        "participant_joined": 8,
        "participant_left": 4,
        "egress_started": 1,
        "egress_updated": 1,
        "egress_ended": 1,
        "room_finished": 1,
    }


async def test_seeded_data_is_consistent_in_time_and_in_its_references(
    connection: asyncpg.Connection,
) -> None:
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    await seed(now=now)

    assert await broken_rules(connection) == {}
    assert await latest_time(connection) <= now


async def test_seeding_twice_gives_the_same_counts_and_ids(
    connection: asyncpg.Connection,
) -> None:
    first = await seed()
    ids = await connection.fetch("SELECT id FROM meetings UNION ALL SELECT id FROM participants")

    second = await seed()

    assert second.counts == first.counts == EXPECTED_COUNTS
    again = await connection.fetch("SELECT id FROM meetings UNION ALL SELECT id FROM participants")
    assert sorted(row["id"] for row in again) == sorted(row["id"] for row in ids)


async def test_seed_replaces_existing_conference_data(connection: asyncpg.Connection) -> None:
    await connection.execute("INSERT INTO meetings (room_name) VALUES ('left-over')")

    await seed()

    assert await connection.fetchval("SELECT count(*) FROM meetings") == 3
    assert not await connection.fetchval("SELECT 1 FROM meetings WHERE room_name = 'left-over'")


def _with_a_row_the_database_rejects(now: datetime) -> SeedRows:
    rows = build_seed_rows(now)
    meeting_id = rows.meetings[0].id
    # The last insert of the seed: a blank event type breaks a CHECK.
    rows.analytics.append(AnalyticsEvent(meeting_id=meeting_id, event_type=" "))
    return rows


async def _fail_after_inserting(database: object) -> dict[str, int]:
    raise RuntimeError("the process failed after inserting everything")


@pytest.mark.parametrize("failure", ["database rejects the last row", "failure after inserts"])
async def test_a_seed_failing_midway_leaves_the_previous_data_intact(
    connection: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    await seed(now=datetime.now(UTC) - timedelta(days=3))
    await connection.execute(
        "INSERT INTO meetings (room_name, metadata) VALUES ('added-later', '{\"by\": \"dev\"}')"
    )
    before = await table_dump(connection)

    if failure == "database rejects the last row":
        monkeypatch.setattr(seed_module, "build_seed_rows", _with_a_row_the_database_rejects)
        expected: type[Exception] = CheckViolation
    else:
        monkeypatch.setattr(seed_module, "count_rows", _fail_after_inserting)
        expected = RuntimeError
    with pytest.raises(expected):
        await seed()

    assert await table_dump(connection) == before


async def test_seed_refuses_a_production_environment_without_force(
    connection: asyncpg.Connection, production_env: None
) -> None:
    await connection.execute("INSERT INTO meetings (room_name) VALUES ('real-customer-call')")

    with pytest.raises(ProductionDatabaseError) as refused:
        await seed()

    message = str(refused.value)
    assert "CONFERENCE_ENV is 'production'" in message
    assert "--force" in message
    assert await connection.fetchval("SELECT room_name FROM meetings") == "real-customer-call"


async def test_seed_with_force_seeds_even_a_production_environment(
    connection: asyncpg.Connection, production_env: None
) -> None:
    result = await seed(force=True)

    assert result.counts == EXPECTED_COUNTS


def test_the_guard_refuses_a_database_named_like_production() -> None:
    with pytest.raises(ProductionDatabaseError, match="'livekit_prod' contains 'prod'"):
        ensure_not_production("livekit_prod", "wipe and seed")
    ensure_not_production("livekit_prod", "wipe and seed", force=True)
    ensure_not_production("livekit_conference", "wipe and seed")


async def test_the_cli_refuses_a_production_environment_and_seeds_with_force(
    connection: asyncpg.Connection, database_url: str, production_env: None
) -> None:
    await connection.execute("INSERT INTO meetings (room_name) VALUES ('real-customer-call')")

    refused = support.run_piccolo(["conference", "seed"], database_url, check=False)

    assert refused.returncode == 1
    assert "refusing to wipe and seed" in refused.stderr
    assert "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert await connection.fetchval("SELECT count(*) FROM meetings") == 1

    forced = support.run_piccolo(["conference", "seed", "--force"], database_url)

    assert "meetings         3" in forced.stdout
    assert "analytics       19" in forced.stdout
    assert await connection.fetchval("SELECT count(*) FROM meetings") == 3


async def test_the_cli_refuses_a_database_whose_name_says_prod(server_url: str) -> None:
    url = await support.create_database(server_url, prefix="conference_prod")
    try:
        refused = support.run_piccolo(["conference", "seed"], url, check=False)
    finally:
        await support.drop_database(server_url, url)

    assert refused.returncode == 1
    assert "contains 'prod'" in refused.stderr


async def test_seed_if_empty_seeds_an_empty_database(connection: asyncpg.Connection) -> None:
    result = await seed_if_empty()

    assert result is not None
    assert result.counts == EXPECTED_COUNTS
    assert result.summary() == "meetings 3, participants 8, recordings 1, analytics 19"


async def test_seed_if_empty_never_touches_existing_data(connection: asyncpg.Connection) -> None:
    await connection.execute("INSERT INTO meetings (room_name) VALUES ('someone-elses-room')")

    assert await seed_if_empty() is None

    assert await connection.fetchval("SELECT room_name FROM meetings") == "someone-elses-room"
    assert await connection.fetchval("SELECT count(*) FROM analytics") == 0


async def test_seed_if_empty_leaves_a_production_database_empty(
    connection: asyncpg.Connection, production_env: None
) -> None:
    assert await seed_if_empty() is None

    assert await connection.fetchval("SELECT count(*) FROM meetings") == 0


async def test_seed_writes_into_the_database_it_is_given_and_no_other(
    connection: asyncpg.Connection, fresh_database_url: str
) -> None:
    other = Database(ConferenceEngine(url=fresh_database_url, connect_timeout=10))
    for table in TABLES:
        for statement in table.create_table().ddl:
            await other.query(statement)

    result = await seed(database=other)

    assert result.counts == EXPECTED_COUNTS
    assert result.database == database_name(fresh_database_url)
    assert (await other.query("SELECT count(*) AS n FROM analytics"))[0]["n"] == 19
    assert await connection.fetchval("SELECT count(*) FROM meetings") == 0
    assert await seed_if_empty(database=other) is None  # it holds the seed now
