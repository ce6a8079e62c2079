"""
The schema in the database: indexes read from ``pg_catalog``, bad rows
rejected by PostgreSQL itself, cascading deletes.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from conference.tables import AnalyticsEvent, Meeting, Participant, Recording

EXPECTED_INDEXES = [
    ("meetings", ["room_name"]),
    ("meetings", ["created_at"]),
    ("participants", ["meeting_id"]),
    ("participants", ["meeting_id", "left_at"]),
    ("recordings", ["meeting_id"]),
    ("recordings", ["egress_id"]),
    ("recordings", ["status"]),
    ("recordings", ["status", "started_at", "id"]),
    ("analytics", ["meeting_id"]),
    ("analytics", ["participant_id"]),
    ("analytics", ["event_type"]),
    # Serves (meeting_id, created_at) lookups too; id makes the timeline's keyset exact.
    ("analytics", ["meeting_id", "created_at", "id"]),
]

INDEX_COLUMNS_SQL = """
SELECT t.relname AS table_name, i.relname AS index_name, ix.indisunique,
       array_agg(a.attname ORDER BY k.ordinality) AS columns
FROM pg_index ix
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ordinality)
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
WHERE n.nspname = 'public'
GROUP BY t.relname, i.relname, ix.indisunique
"""


async def test_every_contract_index_exists_with_its_columns_in_order(
    connection: asyncpg.Connection,
) -> None:
    rows = await connection.fetch(INDEX_COLUMNS_SQL)
    existing = {(row["table_name"], tuple(row["columns"])) for row in rows}
    missing = [
        (table, columns)
        for table, columns in EXPECTED_INDEXES
        if (table, tuple(columns)) not in existing
    ]
    assert missing == []
    unique = {(row["table_name"], tuple(row["columns"])) for row in rows if row["indisunique"]}
    assert ("recordings", ("egress_id",)) in unique


async def test_foreign_keys_cascade_on_delete(connection: asyncpg.Connection) -> None:
    rows = await connection.fetch(
        """
        SELECT conrelid::regclass::text AS table_name, confrelid::regclass::text AS target,
               confdeltype::text AS confdeltype
        FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace
        """
    )
    foreign_keys = {(r["table_name"], r["target"]): r["confdeltype"] for r in rows}
    assert foreign_keys[("participants", "meetings")] == "c"
    assert foreign_keys[("recordings", "meetings")] == "c"
    assert foreign_keys[("analytics", "meetings")] == "c"
    assert foreign_keys[("analytics", "participants")] == "c"


async def test_primary_keys_default_to_gen_random_uuid(
    connection: asyncpg.Connection,
) -> None:
    meeting_id = await connection.fetchval(
        "INSERT INTO meetings (room_name) VALUES ('standup') RETURNING id"
    )
    assert isinstance(meeting_id, uuid.UUID)
    assert meeting_id.version == 4
    row = await connection.fetchrow("SELECT * FROM meetings WHERE id = $1", meeting_id)
    assert row["metadata"] == "{}"
    assert row["created_at"] is not None
    assert row["ended_at"] is None
    status = await connection.fetchval(
        "INSERT INTO recordings (meeting_id, egress_id) VALUES ($1, 'EG_1') RETURNING status",
        meeting_id,
    )
    assert status == "starting"


async def test_analytics_keys_are_time_ordered_uuidv7_from_database_and_orm(
    connection: asyncpg.Connection,
) -> None:
    meeting_id = await connection.fetchval(
        "INSERT INTO meetings (room_name) VALUES ('standup') RETURNING id"
    )
    from_database = [
        await connection.fetchval(
            "INSERT INTO analytics (meeting_id, event_type) VALUES ($1, 'e') RETURNING id",
            meeting_id,
        )
        for _ in range(3)
    ]
    from_orm = [AnalyticsEvent(meeting_id=meeting_id, event_type="e").id for _ in range(3)]

    assert {key.version for key in from_database + from_orm} == {7}
    for keys in (from_database, from_orm):  # each clock's milliseconds never go back
        milliseconds = [key.int >> 80 for key in keys]
        assert milliseconds == sorted(milliseconds)


MEETING = "INSERT INTO meetings (id, room_name) VALUES ('{m}', 'room')"
PARTICIPANT = "INSERT INTO participants (id, meeting_id, identity) VALUES ('{p}', '{m}', 'alice')"

BAD_ROWS = {
    "empty room_name": (
        [],
        "INSERT INTO meetings (room_name) VALUES ('')",
        asyncpg.CheckViolationError,
    ),
    "blank room_name": (
        [],
        "INSERT INTO meetings (room_name) VALUES ('   ')",
        asyncpg.CheckViolationError,
    ),
    "missing room_name": (
        [],
        "INSERT INTO meetings (ended_at) VALUES (NULL)",
        asyncpg.NotNullViolationError,
    ),
    "ended before created": (
        [],
        "INSERT INTO meetings (room_name, created_at, ended_at) "
        "VALUES ('r', now(), now() - interval '1 second')",
        asyncpg.CheckViolationError,
    ),
    "metadata not an object": (
        [],
        "INSERT INTO meetings (room_name, metadata) VALUES ('r', '[1, 2]')",
        asyncpg.CheckViolationError,
    ),
    "empty identity": (
        [MEETING],
        "INSERT INTO participants (meeting_id, identity) VALUES ('{m}', '')",
        asyncpg.CheckViolationError,
    ),
    "missing identity": (
        [MEETING],
        "INSERT INTO participants (meeting_id) VALUES ('{m}')",
        asyncpg.NotNullViolationError,
    ),
    "left before joined": (
        [MEETING],
        "INSERT INTO participants (meeting_id, identity, joined_at, left_at) "
        "VALUES ('{m}', 'a', now(), now() - interval '1 minute')",
        asyncpg.CheckViolationError,
    ),
    "participant of no meeting": (
        [],
        "INSERT INTO participants (meeting_id, identity) VALUES ('{m}', 'a')",
        asyncpg.ForeignKeyViolationError,
    ),
    "completed before started": (
        [MEETING],
        "INSERT INTO recordings (meeting_id, egress_id, started_at, completed_at) "
        "VALUES ('{m}', 'EG_x', now(), now() - interval '1 minute')",
        asyncpg.CheckViolationError,
    ),
    "negative file_size": (
        [MEETING],
        "INSERT INTO recordings (meeting_id, egress_id, file_size) VALUES ('{m}', 'EG_x', -1)",
        asyncpg.CheckViolationError,
    ),
    "negative duration": (
        [MEETING],
        "INSERT INTO recordings (meeting_id, egress_id, duration) VALUES ('{m}', 'EG_x', -0.5)",
        asyncpg.CheckViolationError,
    ),
    "unknown status": (
        [MEETING],
        "INSERT INTO recordings (meeting_id, egress_id, status) VALUES ('{m}', 'EG_x', 'paused')",
        asyncpg.CheckViolationError,
    ),
    "empty egress_id": (
        [MEETING],
        "INSERT INTO recordings (meeting_id, egress_id) VALUES ('{m}', '')",
        asyncpg.CheckViolationError,
    ),
    "duplicate egress_id": (
        [MEETING, "INSERT INTO recordings (meeting_id, egress_id) VALUES ('{m}', 'EG_d')"],
        "INSERT INTO recordings (meeting_id, egress_id) VALUES ('{m}', 'EG_d')",
        asyncpg.UniqueViolationError,
    ),
    "empty event_type": (
        [MEETING],
        "INSERT INTO analytics (meeting_id, event_type) VALUES ('{m}', '')",
        asyncpg.CheckViolationError,
    ),
    "missing event_type": (
        [MEETING],
        "INSERT INTO analytics (meeting_id) VALUES ('{m}')",
        asyncpg.NotNullViolationError,
    ),
    "event of unknown participant": (
        [MEETING],
        "INSERT INTO analytics (meeting_id, participant_id, event_type) "
        "VALUES ('{m}', '{p}', 'joined')",
        asyncpg.ForeignKeyViolationError,
    ),
}


@pytest.mark.parametrize("case", list(BAD_ROWS), ids=list(BAD_ROWS))
async def test_database_rejects_bad_row(connection: asyncpg.Connection, case: str) -> None:
    setup, statement, error = BAD_ROWS[case]
    ids = {"m": uuid.uuid4(), "p": uuid.uuid4()}
    for sql in setup:
        await connection.execute(sql.format(**ids))
    with pytest.raises(error):
        await connection.execute(statement.format(**ids))


async def test_valid_rows_with_the_same_shapes_are_accepted(
    connection: asyncpg.Connection,
) -> None:
    # The control for the cases above: each constraint admits good data.
    ids = {"m": uuid.uuid4(), "p": uuid.uuid4()}
    await connection.execute(MEETING.format(**ids))
    await connection.execute(PARTICIPANT.format(**ids))
    await connection.execute(
        "INSERT INTO recordings (meeting_id, egress_id, status, started_at, "
        "completed_at, file_size, duration) VALUES ($1, 'EG_ok', 'limit_reached', "
        "now() - interval '1 hour', now(), 0, 3600.25)",
        ids["m"],
    )
    await connection.execute(
        "INSERT INTO analytics (meeting_id, participant_id, event_type, event_data) "
        "VALUES ($1, $2, 'participant_joined', '{\"sid\": \"PA_1\"}')",
        ids["m"],
        ids["p"],
    )
    assert await connection.fetchval("SELECT duration FROM recordings") == 3600.25


async def test_deleting_a_meeting_removes_its_participants_recordings_and_analytics(
    connection: asyncpg.Connection,
) -> None:
    doomed, kept = uuid.uuid4(), uuid.uuid4()
    for meeting_id in (doomed, kept):
        await connection.execute(
            "INSERT INTO meetings (id, room_name) VALUES ($1, 'r')", meeting_id
        )
        participant_id = await connection.fetchval(
            "INSERT INTO participants (meeting_id, identity) VALUES ($1, 'a') RETURNING id",
            meeting_id,
        )
        await connection.execute(
            "INSERT INTO recordings (meeting_id, egress_id) VALUES ($1, $2)",
            meeting_id,
            f"EG_{meeting_id}",
        )
        await connection.execute(
            "INSERT INTO analytics (meeting_id, participant_id, event_type) "
            "VALUES ($1, $2, 'joined'), ($1, NULL, 'room_started')",
            meeting_id,
            participant_id,
        )

    await connection.execute("DELETE FROM meetings WHERE id = $1", doomed)

    for table in ("participants", "recordings", "analytics"):
        remaining = await connection.fetch(f"SELECT meeting_id FROM {table}")
        assert remaining, f"{table} lost the other meeting's rows"
        assert {row["meeting_id"] for row in remaining} == {kept}


async def test_orm_writes_and_reads_through_piccolo(
    connection: asyncpg.Connection,
) -> None:
    meeting = Meeting(room_name="design-review", metadata={"topic": "schema"})
    await meeting.save()
    participant = Participant(meeting_id=meeting.id, identity="bob")
    await participant.save()
    await Recording(meeting_id=meeting.id, egress_id="EG_orm").save()
    await AnalyticsEvent(
        meeting_id=meeting.id, participant_id=participant.id, event_type="joined"
    ).save()

    joined = await Participant.select(
        Participant.identity, Participant.meeting_id.room_name
    ).first()
    assert joined == {"identity": "bob", "meeting_id.room_name": "design-review"}
    readable = await Meeting.select(Meeting.get_readable()).first()
    assert readable == {"readable": "design-review"}
    with pytest.raises(asyncpg.CheckViolationError):
        await Meeting(room_name="").save()
