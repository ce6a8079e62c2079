"""
Erasure of a participant on a real PostgreSQL 18: afterwards no row and no
event body contains the identity, everyone else's data is as it was, the
recordings of their meetings are listed, the record holds no personal
data, a dry run changes nothing, a room limits it, and a production
database is refused unless forced.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from conference import db
from conference.devdata.generate import generate
from conference.errors import ProductionDatabaseError
from conference.lifecycle.erasure import REDACTED, erase_participant, scrub
from tests.support import run_piccolo

UNTIL = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
async def generated(connection: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """About 6,000 generated events; the pool open."""
    await generate(150, seed=41, days=10, until=UNTIL, replace=True, force=True)
    await db.start_pool()
    yield connection
    await db.close_pool()


async def _busiest_identity(connection: asyncpg.Connection) -> str:
    return str(
        await connection.fetchval(
            "SELECT identity FROM participants GROUP BY identity "
            "ORDER BY count(DISTINCT meeting_id) DESC, identity LIMIT 1"
        )
    )


async def _carry_identity_elsewhere(connection: asyncpg.Connection, identity: str) -> str:
    """
    Put the identity where LiveKit (or an app) puts it outside the person's
    own events: a room event listing participants, an egress request naming
    them, a file path; and an event about them that lost its link. Returns
    the identity of the other participant listed next to them.
    """
    meeting_id, room = await connection.fetchrow(
        "SELECT m.id, m.room_name FROM meetings m JOIN participants p ON p.meeting_id = m.id "
        "WHERE p.identity = $1 ORDER BY m.created_at LIMIT 1",
        identity,
    )
    them, other = await connection.fetch(
        "SELECT * FROM (SELECT DISTINCT ON (identity) identity, participant_sid, metadata "
        "FROM participants WHERE meeting_id = $1 ORDER BY identity) p "
        "ORDER BY identity <> $2, identity LIMIT 2",
        meeting_id,
        identity,
    )
    assert them["identity"] == identity and other["identity"] != identity

    def info(row: asyncpg.Record) -> dict[str, Any]:
        return {
            "sid": row["participant_sid"],
            "identity": row["identity"],
            "name": json.loads(row["metadata"])["name"],
            "metadata": '{"team": "platform"}',
            "attributes": {"desk": "4F"},
            "state": "ACTIVE",
        }

    listing = {
        "event": "room_finished",
        "room": {"name": room, "numParticipants": 2},
        "participants": [info(them), info(other)],
    }
    egress = {
        "event": "egress_started",
        "egressInfo": {
            "roomName": room,
            "participant": {"identity": identity, "screenShare": True},
            "fileResults": [{"location": f"s3://recordings/{room}/{identity}-screen.mp4"}],
        },
    }
    lost_link = {"event": "participant_left", "participant": info(them)}
    for body in (listing, egress, lost_link):
        await connection.execute(
            "INSERT INTO analytics (meeting_id, event_type, event_data, created_at) "
            "VALUES ($1, $2, $3::jsonb, $4)",
            meeting_id,
            body["event"],
            json.dumps(body),
            UNTIL,
        )
    return str(other["identity"])


async def _rows(connection: asyncpg.Connection, table: str) -> dict[uuid.UUID, dict[str, Any]]:
    return {row["id"]: dict(row) for row in await connection.fetch(f"SELECT * FROM {table}")}


def test_scrub_clears_the_person_and_keeps_everything_else() -> None:
    body = {
        "participants": [
            {"identity": "alice", "name": "Alice A", "metadata": "x", "attributes": {"a": "1"}},
            {"identity": "bob", "name": "Bob B", "metadata": "y"},
        ],
        "note": "alice joined late",
        "count": 2,
    }
    assert scrub(body, "alice") == {
        "participants": [
            {"identity": REDACTED, "name": REDACTED, "metadata": REDACTED, "attributes": {}},
            {"identity": "bob", "name": "Bob B", "metadata": "y"},
        ],
        "note": f"{REDACTED} joined late",
        "count": 2,
    }


async def test_erasure_leaves_no_row_or_body_with_the_identity_and_others_unchanged(
    generated: asyncpg.Connection,
) -> None:
    connection = generated
    identity = await _busiest_identity(connection)
    other = await _carry_identity_elsewhere(connection, identity)
    before = {table: await _rows(connection, table) for table in ("meetings", "recordings")}
    participants = await _rows(connection, "participants")
    analytics = await _rows(connection, "analytics")
    theirs = {i for i, row in participants.items() if row["identity"] == identity}
    names = {json.loads(participants[i]["metadata"])["name"] for i in theirs}
    about_them = {
        i
        for i, row in analytics.items()
        if row["participant_id"] in theirs
        or json.loads(row["event_data"]).get("participant", {}).get("identity") == identity
    }
    meetings = {participants[i]["meeting_id"] for i in theirs}
    assert len(meetings) >= 2

    result = await erase_participant(identity, erased_by="test operator")

    # Nothing anywhere holds the identity any more.
    assert not await connection.fetchval(
        "SELECT count(*) FROM participants WHERE identity = $1", identity
    )
    assert not await connection.fetchval(
        "SELECT count(*) FROM analytics WHERE strpos(event_data::text, $1) > 0", identity
    )
    # Everyone else's rows are as they were; bodies that named the person
    # changed only where they did.
    for table, rows in before.items():
        assert await _rows(connection, table) == rows
    assert await _rows(connection, "participants") == {
        i: row for i, row in participants.items() if i not in theirs
    }
    after = await _rows(connection, "analytics")
    assert set(after) == set(analytics) - about_them
    scrubbed = 0
    for event_id, row in after.items():
        original = analytics[event_id]
        if identity in original["event_data"]:
            scrubbed += 1
            expected = scrub(json.loads(original["event_data"]), identity)
            assert json.loads(row["event_data"]) == expected
            assert {**row, "event_data": None} == {**original, "event_data": None}
        else:
            assert row == original
    listing = await connection.fetchval(
        "SELECT event_data FROM analytics WHERE event_type = 'room_finished' "
        "AND event_data ? 'participants'"
    )
    listed = json.loads(listing)["participants"]
    assert listed[0]["identity"] == REDACTED and listed[0]["name"] == REDACTED
    assert listed[1]["identity"] == other and listed[1]["name"] not in (REDACTED, "")

    assert result.meetings == len(meetings)
    assert result.counts == {
        "participants": len(theirs),
        "analytics": len(about_them),
        "analytics_scrubbed": scrubbed,
    }
    assert scrubbed >= 2
    recordings = await connection.fetch(
        "SELECT egress_id FROM recordings WHERE meeting_id = ANY($1::uuid[])", list(meetings)
    )
    assert {r.egress_id for r in result.recordings} == {r["egress_id"] for r in recordings}

    # The record says who, when and how much; nothing about the person.
    record = await connection.fetchrow("SELECT * FROM erasures WHERE id = $1", result.erasure_id)
    assert record["erased_by"] == "test operator"
    assert record["finished_at"] is not None
    assert json.loads(record["counts"]) == result.counts
    assert record["meetings"] == len(meetings)
    assert record["recordings_listed"] == len(recordings)
    text = await connection.fetchval(
        "SELECT row_to_json(e)::text FROM erasures e WHERE id = $1", result.erasure_id
    )
    for personal in (identity, *names, *(name.split()[0] for name in names)):
        assert personal not in text


async def test_a_dry_run_counts_the_same_and_changes_and_records_nothing(
    generated: asyncpg.Connection,
) -> None:
    connection = generated
    identity = await _busiest_identity(connection)
    await _carry_identity_elsewhere(connection, identity)
    analytics = await _rows(connection, "analytics")

    dry = await erase_participant(identity, erased_by="ops", dry_run=True)

    assert dry.erasure_id is None
    assert await _rows(connection, "analytics") == analytics
    assert not await connection.fetchval("SELECT count(*) FROM erasures")
    real = await erase_participant(identity, erased_by="ops")
    assert real.counts == dry.counts and real.meetings == dry.meetings
    again = await erase_participant(identity, erased_by="ops")
    assert again.meetings == 0 and not any(again.counts.values())
    assert await connection.fetchval("SELECT count(*) FROM erasures") == 2


async def test_a_room_limits_the_erasure_to_that_rooms_meetings(
    generated: asyncpg.Connection,
) -> None:
    connection = generated
    identity = await _busiest_identity(connection)
    rooms = await connection.fetch(
        "SELECT m.room_name, count(*) AS sessions FROM participants p "
        "JOIN meetings m ON m.id = p.meeting_id WHERE p.identity = $1 "
        "GROUP BY m.room_name ORDER BY m.room_name",
        identity,
    )
    assert len(rooms) >= 2
    room = rooms[0]["room_name"]

    result = await erase_participant(identity, erased_by="ops", room=room)

    assert result.counts["participants"] == rooms[0]["sessions"]
    left = await connection.fetch(
        "SELECT DISTINCT m.room_name FROM participants p JOIN meetings m ON m.id = p.meeting_id "
        "WHERE p.identity = $1",
        identity,
    )
    assert {row["room_name"] for row in left} == {row["room_name"] for row in rooms[1:]}
    scope = await connection.fetchval("SELECT scope FROM erasures WHERE id = $1", result.erasure_id)
    assert room not in scope and json.loads(scope)["room"] is True


async def test_erasure_refuses_a_production_database_unless_forced(
    generated: asyncpg.Connection, production_env: None
) -> None:
    connection = generated
    identity = await _busiest_identity(connection)

    with pytest.raises(ProductionDatabaseError, match="--force"):
        await erase_participant(identity, erased_by="ops")
    assert await connection.fetchval(
        "SELECT count(*) FROM participants WHERE identity = $1", identity
    )

    await erase_participant(identity, erased_by="ops", force=True)
    assert not await connection.fetchval(
        "SELECT count(*) FROM participants WHERE identity = $1", identity
    )


async def test_the_command_erases_and_lists_the_recordings_to_review(
    generated: asyncpg.Connection, database_url: str
) -> None:
    connection = generated
    identity = await connection.fetchval(
        "SELECT p.identity FROM participants p JOIN recordings r USING (meeting_id) "
        "ORDER BY p.identity LIMIT 1"
    )

    dry = run_piccolo(["conference", "erase", f"--identity={identity}", "--dry_run"], database_url)
    assert "Dry run" in dry.stdout and "participants" in dry.stdout
    assert await connection.fetchval(
        "SELECT count(*) FROM participants WHERE identity = $1", identity
    )

    run = run_piccolo(["conference", "erase", f"--identity={identity}"], database_url)
    assert "Erased" in run.stdout and "Review them" in run.stdout
    assert not await connection.fetchval(
        "SELECT count(*) FROM participants WHERE identity = $1", identity
    )

    bad = run_piccolo(["conference", "erase", "--identity= "], database_url, check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("conference: error: the identity to erase is empty")

    # Without '=', targ would take the room's name for the identity: refused.
    other = await connection.fetchval("SELECT identity FROM participants LIMIT 1")
    room = await connection.fetchval("SELECT room_name FROM meetings LIMIT 1")
    sessions = await connection.fetchval("SELECT count(*) FROM participants")
    spaced = run_piccolo(
        ["conference", "erase", f"--identity={other}", "--room", room], database_url, check=False
    )
    assert spaced.returncode == 1
    assert "--room needs a value: write --room=VALUE" in spaced.stderr
    assert await connection.fetchval("SELECT count(*) FROM participants") == sessions
