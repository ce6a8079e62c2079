"""
Group commit and database faults over real HTTP: uvicorn started by the
test, webhooks signed as LiveKit signs them, a real PostgreSQL 18 of the
test's own (a fresh database, or the cluster the test may stop).

The server collects webhooks for 0.3 s before it writes a batch, so
webhooks posted together are written in one transaction.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests import support
from tests.support import LiveServer
from tests.webhook_sessions import (
    API_KEY,
    API_SECRET,
    EMPTY_TABLES,
    WEBHOOK_ENV,
    Recorded,
    product_sync,
    read_state,
    sign,
)

BATCHING = {
    **WEBHOOK_ENV,
    "LIVEKIT_WEBHOOK_BATCH_MAX_WAIT": "0.3",
    "LIVEKIT_WEBHOOK_BATCH_MAX_EVENTS": "50",
    "LIVEKIT_WEBHOOK_BATCH_WRITERS": "2",
    # One connection, so that a test can hold it and see the next webhook wait.
    "DATABASE_POOL_MAX_SIZE": "1",
    "DATABASE_POOL_MIN_SIZE": "1",
    "DATABASE_POOL_ACQUIRE_TIMEOUT": "1",
}


def _event(number: int, event_type: str = "room_started") -> str:
    """A signed-able body of its own room, with its own id."""
    return json.dumps(
        {
            "event": event_type,
            "id": f"EV_gc{number}",
            "createdAt": "1795528800",
            "room": {"sid": f"RM_gc{number}", "name": f"room-{number}"},
        }
    )


async def _post_together(base_url: str, bodies: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(
                        "/webhooks/livekit",
                        content=body,
                        headers={"Authorization": sign(body, API_KEY, API_SECRET)},
                    )
                    for body in bodies
                )
            )
        )


def post_together(server: LiveServer, bodies: list[str]) -> list[httpx.Response]:
    """POST every body at once (one batch) and return the answers in order."""
    return asyncio.run(_post_together(server.base_url, bodies))


def execute(database_url: str, *statements: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def recorded_ids(database_url: str) -> list[str]:
    return [row[0] for row in read_state(database_url)["analytics"]]


@pytest.fixture(scope="module")
def database(server_url: str) -> Iterator[str]:
    """A fresh database of this module (the server migrates it on start)."""
    url = asyncio.run(support.create_database(server_url))
    yield url
    asyncio.run(support.drop_database(server_url, url))


@pytest.fixture(scope="module")
def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(database, env=BATCHING, state_dir=tmp_path_factory.mktemp("batching"))
    live.wait_until_serving(timeout=120)
    yield live
    live.close()


@pytest.fixture
def tables(server: LiveServer, database: str) -> Iterator[str]:
    execute(database, EMPTY_TABLES)
    yield database
    execute(database, EMPTY_TABLES)


def test_a_duplicate_inside_one_batch_is_recorded_once(server: LiveServer, tables: str) -> None:
    first, again, other = post_together(server, [_event(1), _event(1), _event(2)])
    assert [r.status_code for r in (first, again, other)] == [200, 200, 200]
    assert sorted([first.json()["status"], again.json()["status"]]) == ["duplicate", "recorded"]
    assert other.json()["status"] == "recorded"
    assert recorded_ids(tables) == ["EV_gc1", "EV_gc2"]


def test_an_event_the_database_rejects_gets_422_alone_and_its_batch_is_recorded(
    server: LiveServer, tables: str
) -> None:
    execute(
        tables,
        "ALTER TABLE analytics ADD CONSTRAINT test_rejects CHECK (webhook_event_id <> 'EV_gc4')",
    )
    try:
        answers = post_together(server, [_event(3), _event(4), _event(5)])
    finally:
        execute(tables, "ALTER TABLE analytics DROP CONSTRAINT test_rejects")
    assert [r.status_code for r in answers] == [200, 422, 200], [r.text for r in answers]
    assert answers[1].json()["status"] == "rejected" and "test_rejects" in answers[1].text
    assert recorded_ids(tables) == ["EV_gc3", "EV_gc5"]


def test_a_failed_commit_answers_503_to_every_event_of_its_batch_and_stores_none(
    server: LiveServer, tables: str
) -> None:
    # A deferred constraint trigger: the statements succeed, the COMMIT fails.
    execute(
        tables,
        """CREATE FUNCTION test_refuse_commit() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'the test refuses this commit'; END $$""",
        """CREATE CONSTRAINT TRIGGER test_refuse_commit AFTER INSERT ON analytics
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
           WHEN (NEW.event_type = 'test_refuse_commit') EXECUTE FUNCTION test_refuse_commit()""",
    )
    bodies = [_event(6), _event(7, "test_refuse_commit"), _event(8)]
    try:
        answers = post_together(server, bodies)
    finally:
        execute(
            tables,
            "DROP TRIGGER test_refuse_commit ON analytics",
            "DROP FUNCTION test_refuse_commit()",
        )
    assert [r.status_code for r in answers] == [503, 503, 503], [r.text for r in answers]
    assert all(r.headers["retry-after"] == "1" for r in answers)
    assert recorded_ids(tables) == []
    # LiveKit retries: now all of them are recorded.
    assert [r.status_code for r in post_together(server, bodies)] == [200, 200, 200]
    assert recorded_ids(tables) == ["EV_gc6", "EV_gc7", "EV_gc8"]


def test_with_the_only_connection_held_the_next_webhook_gets_503_within_the_bound(
    server: LiveServer, tables: str
) -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response, float]:
        locker = await asyncpg.connect(tables)
        try:
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE meetings IN ACCESS EXCLUSIVE MODE")
            # The first webhook's batch takes the pool's one connection and
            # waits for the lock.
            stuck = asyncio.ensure_future(_post_together(server.base_url, [_event(9)]))
            await asyncio.sleep(1.0)
            started = time.monotonic()
            (refused,) = await _post_together(server.base_url, [_event(10)])
            waited = time.monotonic() - started
            await transaction.rollback()
            (held,) = await stuck
            return held, refused, waited
        finally:
            await locker.close()

    held, refused, waited = asyncio.run(scenario())
    assert refused.status_code == 503, refused.text
    assert refused.json()["status"] == "unavailable" and refused.headers["retry-after"] == "1"
    # DATABASE_POOL_ACQUIRE_TIMEOUT is 1 s and the batch window 0.3 s; the
    # rest is slack for a busy machine. Without the bound it waits forever.
    assert waited < 5, waited
    assert held.status_code == 200, held.text
    assert recorded_ids(tables) == ["EV_gc9"]


# --- A database restart under load ---------------------------------------------


async def _deliver_until(
    base_url: str, connections: int, stop: asyncio.Event, sent: dict[str, Recorded]
) -> list[tuple[str, int]]:
    """
    Post fresh room sessions' events on ``connections`` connections, each
    session in order, until ``stop``: the load lasts as long as the test
    needs however fast the server answers. Every event posted goes into
    ``sent``.
    """
    answers: list[tuple[str, int]] = []

    async def deliver(connection: int) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            for round_ in itertools.count():
                for event in product_sync(tag=f"o{connection}x{round_}"):
                    if stop.is_set():
                        return
                    sent[event.event_id] = event
                    try:
                        response = await http.post(
                            "/webhooks/livekit",
                            content=event.body,
                            headers={"Authorization": sign(event.body, API_KEY, API_SECRET)},
                        )
                    except httpx.TransportError:
                        answers.append((event.event_id, 0))
                        continue
                    answers.append((event.event_id, response.status_code))

    await asyncio.gather(*(deliver(connection) for connection in range(connections)))
    return answers


def test_a_database_restart_under_concurrent_webhooks_gives_no_500_and_loses_no_200(
    stoppable_server: Any, stoppable_database_url: str, tmp_path: Path
) -> None:
    env = {**WEBHOOK_ENV, "DATABASE_POOL_MAX_SIZE": "8"}
    live = LiveServer(stoppable_database_url, env=env, state_dir=tmp_path)
    try:
        live.wait_until_serving(timeout=120)
        events: dict[str, Recorded] = {}

        async def under_load() -> list[tuple[str, int]]:
            stop = asyncio.Event()
            load = asyncio.ensure_future(_deliver_until(live.base_url, 12, stop, events))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(stoppable_server.stop)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(stoppable_server.start)
            await asyncio.sleep(1.0)  # webhooks keep coming after the restart
            stop.set()
            return await load

        answers = asyncio.run(under_load())
        statuses = {status for _, status in answers}
        assert 500 not in statuses and statuses <= {200, 503}, statuses
        assert 503 in statuses, "the restart fell between two webhooks; nothing was tested"
        ok = {event_id for event_id, status in answers if status == 200}
        assert ok <= set(recorded_ids(stoppable_database_url))

        with httpx.Client(base_url=live.base_url, timeout=60) as http:
            # The pool is healthy again: LiveKit's retries are recorded.
            for event_id, status in answers:
                if status != 200:
                    body = events[event_id].body
                    retry = http.post(
                        "/webhooks/livekit",
                        content=body,
                        headers={"Authorization": sign(body, API_KEY, API_SECRET)},
                    )
                    assert retry.status_code == 200, retry.text
            assert http.get("/readyz").status_code == 200
        assert set(recorded_ids(stoppable_database_url)) == {e for e, _ in answers}
    finally:
        live.close()
