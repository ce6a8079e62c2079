"""
Bulk ingestion on a real PostgreSQL 18: events land as given (defaults
where left out), in the caller's transaction when there is one, and an
invalid event rejects the whole batch with an error that names it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from conference import db
from conference.errors import InvalidEvent
from conference.ingest import NewEvent, record_events

MOMENT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Room:
    """A meeting with two participants, to hang events on."""

    meeting_id: uuid.UUID
    alice: uuid.UUID
    bob: uuid.UUID


@pytest.fixture
async def room(connection: asyncpg.Connection) -> AsyncIterator[Room]:
    """A meeting with participants; the pool is open; tables emptied afterwards."""
    meeting_id = await connection.fetchval(
        "INSERT INTO meetings (room_name) VALUES ('bulk') RETURNING id"
    )
    alice, bob = [
        await connection.fetchval(
            "INSERT INTO participants (meeting_id, identity) VALUES ($1, $2) RETURNING id",
            meeting_id,
            identity,
        )
        for identity in ("alice", "bob")
    ]
    await db.start_pool()
    yield Room(meeting_id, alice, bob)
    await db.close_pool()


async def _events(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    return await connection.fetch(
        "SELECT id, meeting_id, participant_id, event_type, event_data::text AS event_data, "
        "created_at, webhook_event_id FROM analytics ORDER BY created_at, event_type"
    )


async def _count(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval("SELECT count(*) FROM analytics"))


async def test_record_events_stores_every_event_as_given(
    room: Room, connection: asyncpg.Connection
) -> None:
    events = [
        NewEvent(
            meeting_id=room.meeting_id,
            participant_id=room.alice if i % 2 else room.bob,
            event_type="track_published",
            event_data=f'{{"n": {i}}}',
            created_at=MOMENT + timedelta(seconds=i),
            webhook_event_id=f"EV_{i:04d}",
        )
        for i in range(2500)
    ]

    assert await record_events(events) == 2500

    rows = await _events(connection)
    assert len(rows) == 2500
    first, last = rows[0], rows[-1]
    assert (first["participant_id"], json.loads(first["event_data"])) == (room.bob, {"n": 0})
    assert first["created_at"] == MOMENT and first["webhook_event_id"] == "EV_0000"
    assert (last["participant_id"], json.loads(last["event_data"])) == (room.alice, {"n": 2499})
    assert len({row["id"] for row in rows}) == 2500


async def test_fields_left_out_get_the_column_defaults(
    room: Room, connection: asyncpg.Connection
) -> None:
    async with db.transaction():
        now = (await db.query("SELECT now() AS now"))[0]["now"]
        await record_events([NewEvent(meeting_id=room.meeting_id, event_type="room_started")])

    (row,) = await _events(connection)
    assert row["id"] is not None
    assert row["participant_id"] is None and row["webhook_event_id"] is None
    assert json.loads(row["event_data"]) == {}
    # As for a row inserted without it: the time of the transaction.
    assert row["created_at"] == now


async def test_mappings_dicts_and_uuid_strings_are_accepted(
    room: Room, connection: asyncpg.Connection
) -> None:
    own_id = uuid.uuid4()
    count = await record_events(
        [
            {
                "meeting_id": str(room.meeting_id),
                "participant_id": str(room.alice),
                "event_type": "participant_joined",
                "event_data": {"identity": "alice", "tags": ["a", "ü"]},
                "created_at": MOMENT,
                "id": str(own_id),
            },
            NewEvent(room.meeting_id, "room_started", created_at=MOMENT - timedelta(minutes=1)),
        ]
    )

    assert count == 2
    started, joined = await _events(connection)
    assert started["event_type"] == "room_started"
    assert joined["id"] == own_id and joined["participant_id"] == room.alice
    assert json.loads(joined["event_data"]) == {"identity": "alice", "tags": ["a", "ü"]}


async def test_events_with_and_without_ids_and_times_are_all_recorded(
    room: Room, connection: asyncpg.Connection
) -> None:
    given = uuid.uuid4()
    events = [
        NewEvent(room.meeting_id, "a", created_at=MOMENT),
        NewEvent(room.meeting_id, "b"),
        NewEvent(room.meeting_id, "c", id=given, created_at=MOMENT),
        NewEvent(room.meeting_id, "d", id=uuid.uuid4()),
        NewEvent(room.meeting_id, "e", created_at=MOMENT),
    ]

    assert await record_events(iter(events)) == 5

    rows = {row["event_type"]: row for row in await _events(connection)}
    assert sorted(rows) == ["a", "b", "c", "d", "e"]
    assert rows["c"]["id"] == given
    assert rows["a"]["created_at"] == rows["e"]["created_at"] == MOMENT


async def test_an_empty_batch_records_nothing(room: Room) -> None:
    assert await record_events([]) == 0


async def test_events_join_the_callers_transaction(
    room: Room, connection: asyncpg.Connection
) -> None:
    class Abandon(Exception):
        pass

    with pytest.raises(Abandon):
        async with db.transaction():
            await record_events([NewEvent(room.meeting_id, "room_started")] * 3)
            inside = await db.query("SELECT count(*) AS n FROM analytics")
            assert inside[0]["n"] == 3  # visible in the transaction ...
            assert await _count(connection) == 0  # ... and nowhere else yet
            raise Abandon

    assert await _count(connection) == 0


async def test_a_rejected_batch_leaves_the_callers_transaction_usable(
    room: Room, connection: asyncpg.Connection
) -> None:
    async with db.transaction():
        await record_events([NewEvent(room.meeting_id, "kept")])
        with pytest.raises(InvalidEvent):
            await record_events(
                [NewEvent(room.meeting_id, "ok"), NewEvent(uuid.uuid4(), "unknown meeting")]
            )
        await record_events([NewEvent(room.meeting_id, "kept too")])

    assert [row["event_type"] for row in await _events(connection)] == ["kept", "kept too"]


# --- Invalid events: the error names the event, nothing is written ------------


def _valid(room: Room, **changes: Any) -> dict[str, Any]:
    return {"meeting_id": room.meeting_id, "event_type": "track_published", **changes}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"meeting_id": None}, "meeting_id", "is missing"),
        ({"meeting_id": "not-a-uuid"}, "meeting_id", "is not a UUID"),
        ({"meeting_id": 42}, "meeting_id", "must be a UUID, not int"),
        ({"participant_id": "nope"}, "participant_id", "is not a UUID"),
        ({"event_type": "   "}, "event_type", "is blank"),
        ({"event_type": ""}, "event_type", "is blank"),
        ({"event_type": None}, "event_type", "is missing"),
        ({"event_type": "x" * 65}, "event_type", "is 65 characters long; at most 64"),
        ({"event_type": 7}, "event_type", "must be a str, not int"),
        ({"event_data": ["a", "list"]}, "event_data", "must be a JSON object"),
        ({"event_data": {"when": object()}}, "event_data", "is not JSON serialisable"),
        ({"created_at": datetime(2026, 3, 2, 15, 0)}, "created_at", "has no timezone"),
        ({"created_at": "2026-03-02"}, "created_at", "must be a datetime, not str"),
        ({"webhook_event_id": " "}, "webhook_event_id", "is blank"),
        (
            {"webhook_event_id": "E" * 256},
            "webhook_event_id",
            "is 256 characters long; at most 255",
        ),
        ({"id": "123"}, "id", "is not a UUID"),
    ],
)
async def test_a_malformed_event_rejects_the_batch_and_is_named(
    room: Room, connection: asyncpg.Connection, changes: dict[str, Any], field: str, words: str
) -> None:
    batch: list[Any] = [NewEvent(**_valid(room)) for _ in range(3)]
    batch.insert(2, NewEvent(**_valid(room, **changes)))

    with pytest.raises(InvalidEvent) as caught:
        await record_events(batch)

    assert (caught.value.index, caught.value.field) == (2, field)
    assert str(caught.value).startswith(f"event 2 of the batch (from 0): {field} {words}")
    assert "nothing was recorded" in str(caught.value)
    assert await _count(connection) == 0


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ("a string", "is a str; pass NewEvent objects or mappings"),
        ({"meeting_id": uuid.uuid4(), "event_typo": "x"}, "unknown field(s) event_typo"),
        ({"event_type": "x"}, "meeting_id is missing"),
    ],
)
async def test_an_event_that_is_not_an_event_is_named(
    room: Room, connection: asyncpg.Connection, event: Any, words: str
) -> None:
    with pytest.raises(InvalidEvent, match=r"^event 1 of the batch") as caught:
        await record_events([NewEvent(**_valid(room)), event])

    assert caught.value.index == 1
    assert words in str(caught.value)
    assert await _count(connection) == 0


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ({"meeting_id": uuid.uuid4()}, "meeting_id", 'foreign key "analytics_meeting_id_fkey"'),
        ({"participant_id": uuid.uuid4()}, "participant_id", "analytics_participant_id_fkey"),
        ({"event_data": "[1, 2]"}, None, "analytics_event_data_is_object"),
        ({"event_data": "{not json"}, "event_data", "invalid input syntax for type json"),
        ({"webhook_event_id": "EV_1"}, None, "analytics_webhook_event_id_key"),
    ],
)
async def test_an_event_the_database_rejects_is_named_too(
    room: Room,
    connection: asyncpg.Connection,
    bad: dict[str, Any],
    field: str | None,
    words: str,
) -> None:
    # Many good events around the bad one: the error still points at it.
    batch = [NewEvent(**_valid(room, webhook_event_id=f"EV_{i}")) for i in range(1, 600)]
    batch.insert(417, NewEvent(**_valid(room, **bad)))

    with pytest.raises(InvalidEvent) as caught:
        await record_events(batch)

    message = str(caught.value)
    assert caught.value.index == 417
    assert message.startswith("event 417 of the batch (from 0) was rejected by the database")
    assert words in message, message
    if field is not None:
        assert caught.value.field == field
    assert await _count(connection) == 0


async def test_a_webhook_id_recorded_before_rejects_the_batch(
    room: Room, connection: asyncpg.Connection
) -> None:
    await record_events([NewEvent(**_valid(room, webhook_event_id="EV_seen"))])

    with pytest.raises(InvalidEvent, match="event 1 of the batch") as caught:
        await record_events(
            [NewEvent(**_valid(room, webhook_event_id=f"EV_{n}")) for n in ("new", "seen")]
        )

    assert "already has a row with this value" in str(caught.value)
    assert "EV_seen" not in str(caught.value)  # values stay out of messages
    assert await _count(connection) == 1
