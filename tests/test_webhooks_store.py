"""
Writing webhooks on a real PostgreSQL 18, without HTTP: a batch written
by :func:`record_batch` (set-based statements, rows merged in Python) ends
exactly where :func:`record_event` (one SQL statement per event, the
reference) ends, for orders LiveKit can deliver; duplicates, inside a
batch or from before, are recognised.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from conference import db
from conference.errors import CheckViolation
from conference.webhooks.event import decode_event
from conference.webhooks.mapping import EventChanges, changes_for
from conference.webhooks.store import Outcome, RecordResult, record_batch, record_event
from tests.webhook_sessions import (
    EMPTY_TABLES,
    Recorded,
    State,
    fetch_state,
    product_sync,
    queues,
)

RECEIVED = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
SESSIONS = [product_sync(tag="a"), product_sync(tag="b")]


def _mapped(events: list[Recorded]) -> list[tuple[EventChanges, str]]:
    return [
        (changes_for(decode_event(e.body), RECEIVED, body=e.body.encode()), e.body) for e in events
    ]


def _livekit_order(rng: random.Random) -> list[Recorded]:
    """
    Both sessions' queues, each in its own order, interleaved at random;
    ``room_started`` anywhere in its room's queue; a few retries later on.
    """
    by_queue: dict[str, list[Recorded]] = {}
    for session in SESSIONS:
        by_queue.update(queues(session))
    for name, events in by_queue.items():
        if name.startswith("room:"):
            started = events.pop(0)
            events.insert(rng.randint(0, len(events)), started)
    labels = [name for name, events in by_queue.items() for _ in events]
    rng.shuffle(labels)
    cursors = {name: iter(events) for name, events in by_queue.items()}
    stream = [next(cursors[label]) for label in labels]
    for _ in range(3):
        index = rng.randrange(len(stream))
        stream.insert(rng.randint(index + 1, len(stream)), stream[index])
    return stream


@pytest.fixture
async def database(connection: asyncpg.Connection, database_url: str) -> AsyncIterator[str]:
    """The session database with the pool open; tables emptied afterwards."""
    await db.start_pool()
    yield database_url
    await db.close_pool()


async def _empty(connection: asyncpg.Connection) -> None:
    await connection.execute(EMPTY_TABLES)


async def _one_by_one(events: list[tuple[EventChanges, str]], database_url: str) -> State:
    for changes, body in events:
        await record_event(changes, body)
    return await fetch_state(database_url)


@pytest.mark.parametrize("seed", range(8))
async def test_a_batch_ends_exactly_where_the_events_one_by_one_end(
    database: str, connection: asyncpg.Connection, seed: int
) -> None:
    rng = random.Random(seed)
    events = _mapped(_livekit_order(rng))
    expected = await _one_by_one(events, database)
    await _empty(connection)

    # Seed 0: everything in one batch; the others: batches of random sizes.
    position = 0
    while position < len(events):
        size = len(events) if seed == 0 else rng.randint(1, 24)
        await record_batch(events[position : position + size])
        position += size
    assert await fetch_state(database) == expected


async def test_a_duplicate_inside_a_batch_and_one_recorded_before_are_both_duplicates(
    database: str,
) -> None:
    first, second, third = _mapped(SESSIONS[0][:3])
    (result,) = await record_batch([first])
    assert isinstance(result, RecordResult) and result.outcome is Outcome.recorded
    results = await record_batch([second, first, second, third])
    outcomes = [r.outcome for r in results if isinstance(r, RecordResult)]
    assert outcomes == [Outcome.recorded, Outcome.duplicate, Outcome.duplicate, Outcome.recorded]
    state = await fetch_state(database)
    assert [row[0] for row in state["analytics"]] == ["EV_a001", "EV_a002", "EV_a003"]


async def test_an_event_the_database_rejects_fails_alone_and_the_rest_of_its_batch_is_recorded(
    database: str, connection: asyncpg.Connection
) -> None:
    events = _mapped(SESSIONS[0][:5])
    rejected = events[2][0].event_id
    await connection.execute(
        "ALTER TABLE analytics ADD CONSTRAINT test_rejects_one "
        f"CHECK (webhook_event_id <> '{rejected}')"
    )
    try:
        results = await record_batch(events)
    finally:
        await connection.execute("ALTER TABLE analytics DROP CONSTRAINT test_rejects_one")
    assert isinstance(results[2], CheckViolation)
    assert "test_rejects_one" in str(results[2])
    assert all(isinstance(r, RecordResult) for i, r in enumerate(results) if i != 2)
    state = await fetch_state(database)
    recorded = [row[0] for row in state["analytics"]]
    assert rejected not in recorded and len(recorded) == 4
