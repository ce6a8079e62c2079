"""
The client API on a real PostgreSQL 18: pool, queries, transactions shared
with the ORM, errors that name the constraint, health within a deadline,
and a pool that survives a server restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from piccolo.columns import Varchar
from piccolo.table import Table

import conference.pool
from conference import db
from conference.db import Database, HealthResult
from conference.engine import ConferenceEngine, parse_server_version
from conference.errors import (
    CheckViolation,
    ConfigurationError,
    DatabaseUnavailable,
    ForeignKeyViolation,
    NotNullViolation,
    UniqueViolation,
)
from conference.settings import Settings
from conference.tables import Meeting, Recording
from tests.conftest import StoppableServer

INJECTION = "'); DROP TABLE meetings; --"


@pytest.fixture
async def pool(connection: asyncpg.Connection) -> AsyncIterator[None]:
    """The default pool, open for one test; the tables are emptied afterwards."""
    await db.start_pool()
    yield
    await db.close_pool()


async def _room_names(connection: asyncpg.Connection) -> list[str]:
    rows = await connection.fetch("SELECT room_name FROM meetings ORDER BY room_name")
    return [row["room_name"] for row in rows]


# --- Queries ------------------------------------------------------------------


async def test_query_takes_positional_parameters_and_returns_rows(pool: None) -> None:
    rows = await db.query("SELECT $1::int + $2::int AS total, $3::text AS word", 2, 3, "hi")
    assert [(row["total"], row["word"]) for row in rows] == [(5, "hi")]


async def test_sql_in_parameters_is_stored_literally(
    pool: None, connection: asyncpg.Connection
) -> None:
    await db.query("INSERT INTO meetings (room_name) VALUES ($1)", INJECTION)
    await Meeting(room_name=INJECTION + " orm").save()

    assert await _room_names(connection) == [INJECTION, INJECTION + " orm"]
    assert await connection.fetchval("SELECT to_regclass('meetings') IS NOT NULL")


async def test_query_logs_statement_and_duration_but_never_parameter_values(
    pool: None, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    with caplog.at_level(logging.DEBUG, logger="conference.db"):
        await db.query("SELECT length($1::text) AS n", secret)

    messages = [record.getMessage() for record in caplog.records]
    assert any("SELECT length($1::text) AS n" in m and " ms" in m for m in messages), messages
    assert not any(secret in m for m in messages)


async def test_slow_statements_are_logged_as_warnings(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(
        ConferenceEngine(url=database_url, connect_timeout=5),
        Settings(database_slow_query_threshold=0.05),
    )
    with caplog.at_level(logging.DEBUG, logger="conference.db"):
        await database.query("SELECT pg_sleep(0.2)")
        await database.query("SELECT 1")

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "slow query" in warnings[0] and "pg_sleep(0.2)" in warnings[0]


# --- Transactions ---------------------------------------------------------------


async def test_orm_and_raw_queries_share_the_transaction_and_commit_together(
    pool: None, connection: asyncpg.Connection
) -> None:
    async with db.transaction():
        meeting = Meeting(room_name="orm")
        await meeting.save()
        await db.query("INSERT INTO meetings (room_name) VALUES ($1)", "raw")
        # The raw query sees the ORM's uncommitted row: the same connection.
        seen = await db.query("SELECT room_name FROM meetings ORDER BY room_name")
        assert [row["room_name"] for row in seen] == ["orm", "raw"]
        # Nobody else does yet.
        assert await _room_names(connection) == []

    assert await _room_names(connection) == ["orm", "raw"]


async def test_an_error_rolls_back_orm_and_raw_queries(
    pool: None, connection: asyncpg.Connection
) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with db.transaction():
            await Meeting(room_name="orm").save()
            await db.query("INSERT INTO meetings (room_name) VALUES ($1)", "raw")
            raise RuntimeError("changed my mind")

    assert await _room_names(connection) == []


async def test_a_nested_transaction_is_a_savepoint(
    pool: None, connection: asyncpg.Connection
) -> None:
    async with db.transaction():
        await Meeting(room_name="before").save()
        with pytest.raises(CheckViolation):
            async with db.transaction():
                await db.query("INSERT INTO meetings (room_name) VALUES ($1)", "inner")
                await Meeting(room_name="   ").save()  # rejected: blank
        await db.query("INSERT INTO meetings (room_name) VALUES ($1)", "after")

    assert await _room_names(connection) == ["after", "before"]


async def test_transactions_work_without_a_pool(connection: asyncpg.Connection) -> None:
    async with db.transaction():
        await Meeting(room_name="no pool").save()
        assert len(await db.query("SELECT 1 FROM meetings")) == 1
    assert await _room_names(connection) == ["no pool"]


# --- Errors -------------------------------------------------------------------


async def test_constraint_violations_name_the_constraint_but_not_the_values(
    pool: None,
) -> None:
    meeting = Meeting(room_name="errors")
    await meeting.save()
    egress = "EG_" + uuid.uuid4().hex
    await db.query(
        "INSERT INTO recordings (meeting_id, egress_id) VALUES ($1, $2)", meeting.id, egress
    )

    with pytest.raises(UniqueViolation) as unique:
        await db.query(
            "INSERT INTO recordings (meeting_id, egress_id) VALUES ($1, $2)", meeting.id, egress
        )
    assert 'unique constraint "recordings_egress_id_key" on recordings (egress_id)' in str(
        unique.value
    )
    assert egress not in str(unique.value)
    assert unique.value.constraint == "recordings_egress_id_key"

    with pytest.raises(ForeignKeyViolation) as foreign:
        await db.query(
            "INSERT INTO participants (meeting_id, identity) VALUES ($1, 'x')", uuid.uuid4()
        )
    assert '"participants_meeting_id_fkey"' in str(foreign.value)
    assert "does not exist in meetings" in str(foreign.value)

    with pytest.raises(CheckViolation) as check:
        await db.query("INSERT INTO meetings (room_name) VALUES ('  ')")
    assert '"meetings_room_name_not_blank" on meetings' in str(check.value)

    with pytest.raises(NotNullViolation) as not_null:
        await db.query("INSERT INTO meetings (room_name) VALUES (NULL)")
    assert 'column "room_name" of meetings needs a value' in str(not_null.value)


async def test_orm_errors_inside_a_transaction_are_translated_too(pool: None) -> None:
    meeting = Meeting(room_name="orm errors")
    await meeting.save()
    await Recording(meeting_id=meeting.id, egress_id="EG_dup").save()

    with pytest.raises(UniqueViolation, match="recordings_egress_id_key"):
        async with db.transaction():
            await Recording(meeting_id=meeting.id, egress_id="EG_dup").save()


# --- The pool -----------------------------------------------------------------


async def test_the_pool_holds_20_connections_unless_configured(
    pool: None, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert db.get_database().engine.pool.get_max_size() == 20

    monkeypatch.setenv("DATABASE_POOL_MAX_SIZE", "3")
    database = Database(ConferenceEngine(url=database_url, connect_timeout=5), Settings())
    await database.start_pool()
    try:
        assert database.engine.pool.get_max_size() == 3
    finally:
        await database.close_pool()


async def test_closing_the_pool_waits_for_work_in_flight_and_refuses_new_work(
    connection: asyncpg.Connection,
) -> None:
    await db.start_pool()
    started, release = asyncio.Event(), asyncio.Event()

    async def in_flight() -> None:
        async with db.transaction():
            await db.query("INSERT INTO meetings (room_name) VALUES ('in flight')")
            started.set()
            await release.wait()

    worker = asyncio.create_task(in_flight())
    await started.wait()
    closing = asyncio.create_task(db.close_pool(timeout=60))
    await asyncio.sleep(0.1)

    with pytest.raises(DatabaseUnavailable, match="pool is closed or closing"):
        await db.query("SELECT 1")
    assert not closing.done()

    release.set()
    assert await closing is True
    await worker  # committed, not cut off
    assert await _room_names(connection) == ["in flight"]
    assert db.get_database().engine.pool is None


async def test_closing_the_pool_cuts_off_work_that_outlasts_the_timeout(
    connection: asyncpg.Connection,
) -> None:
    await db.start_pool()
    started, release = asyncio.Event(), asyncio.Event()

    async def stuck() -> None:
        async with db.transaction():
            await db.query("INSERT INTO meetings (room_name) VALUES ('stuck')")
            started.set()
            await release.wait()

    worker = asyncio.create_task(stuck())
    await started.wait()

    assert await db.close_pool(timeout=0.5) is False
    release.set()
    with pytest.raises(DatabaseUnavailable):
        await worker
    assert await _room_names(connection) == []


def test_without_an_importable_piccolo_conf_the_error_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PICCOLO_CONF", "no_such_piccolo_conf")
    with pytest.raises(ConfigurationError, match=r"run from the directory of piccolo_conf\.py"):
        db.get_database()


# --- Health -------------------------------------------------------------------


async def test_check_connection_reports_a_healthy_server(pool: None) -> None:
    health = await db.check_connection(deadline=5)

    assert health.ok, health.error
    assert health.error is None
    assert health.server_version is not None
    assert parse_server_version(health.server_version) >= (18, 1)
    assert health.latency_ms is not None and health.latency_ms >= 0
    assert health.pending_migrations == []


async def test_check_connection_works_without_a_pool_and_lists_pending_migrations(
    fresh_database_url: str,
) -> None:
    database = Database(ConferenceEngine(url=fresh_database_url, connect_timeout=5))
    health = await database.check_connection(deadline=5)

    assert health.ok, health.error
    assert "conference:2026-11-30T05:24:44:962618" in health.pending_migrations
    assert any(name.startswith("user:") for name in health.pending_migrations)


class OutageProbe(Table, tablename="outage_probe"):
    """An ORM table on the stoppable server (bound to its engine in the test)."""

    name = Varchar(length=50)


async def test_a_stopped_server_is_reported_within_the_deadline_and_the_same_pool_recovers(
    stoppable_server: StoppableServer, stoppable_database_url: str
) -> None:
    database = Database(ConferenceEngine(url=stoppable_database_url, connect_timeout=5))
    OutageProbe._meta.db = database.engine
    await database.start_pool(min_size=2)
    try:
        await OutageProbe.create_table().run()
        await OutageProbe.insert(OutageProbe(name="before")).run()
        pool = database.engine.pool

        stoppable_server.stop()
        started = time.monotonic()
        health = await database.check_connection(deadline=2)
        elapsed = time.monotonic() - started

        assert elapsed < 3.0  # the deadline, plus slack for a loaded machine
        assert health == HealthResult(ok=False, error=health.error)
        assert health.error and "PostgreSQL at" in health.error
        with pytest.raises(DatabaseUnavailable):
            await database.query("SELECT 1")

        stoppable_server.start()
        assert (await database.check_connection(deadline=10)).ok
        assert (await database.query("SELECT count(*) AS n FROM outage_probe"))[0]["n"] == 1
        assert await OutageProbe.select(OutageProbe.name).run() == [{"name": "before"}]
        assert database.engine.pool is pool
    finally:
        await database.close_pool()
        OutageProbe._meta.db = None  # type: ignore[assignment]


async def test_a_restart_behind_the_pools_back_fails_no_query(
    stoppable_server: StoppableServer,
    stoppable_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every pooled connection is now "idle long enough" to be checked: a
    # restart on a fast machine can take less than the real window.
    monkeypatch.setattr(conference.pool, "VALIDATE_AFTER_IDLE", 0.0)
    database = Database(ConferenceEngine(url=stoppable_database_url, connect_timeout=5))
    OutageProbe._meta.db = database.engine
    await database.start_pool(min_size=3)
    try:
        await OutageProbe.create_table().run()
        # Three connections in use at once, so the pool holds three.
        await asyncio.gather(*(database.query("SELECT pg_sleep(0.1)") for _ in range(3)))

        # Stop and start without letting the event loop run: the pool has
        # not seen its sockets close, and would hand out dead connections.
        stoppable_server.stop()
        stoppable_server.start()

        assert await database.query("SELECT 1 AS one") == [(1,)]
        assert await OutageProbe.select().run() == []
        async with database.transaction():
            await OutageProbe.insert(OutageProbe(name="after")).run()
        assert (await database.query("SELECT name FROM outage_probe"))[0]["name"] == "after"
    finally:
        await database.close_pool()
        OutageProbe._meta.db = None  # type: ignore[assignment]


async def test_a_restart_under_concurrent_load_fails_only_with_database_unavailable(
    stoppable_server: StoppableServer, stoppable_database_url: str
) -> None:
    # Issue 12: under load, a restart used to surface asyncpg's raw
    # "InternalClientError: cannot switch to state 15; another operation (2)
    # is in progress" (a webhook 500): the server's FATAL at shutdown reaches
    # idle connections before their socket closes.
    database = Database(
        ConferenceEngine(url=stoppable_database_url, connect_timeout=5, acquire_timeout=5)
    )
    await database.start_pool(min_size=4, max_size=8)
    try:
        await database.query("CREATE TABLE load (id int PRIMARY KEY)")
        answered: list[int] = []
        failures: list[BaseException] = []
        running = True

        async def writer(first: int) -> None:
            number = first
            while running:
                number += 1000
                try:
                    if number % 2:
                        await database.query("INSERT INTO load (id) VALUES ($1)", number)
                    else:
                        async with database.transaction():
                            await database.query("INSERT INTO load (id) VALUES ($1)", number)
                    answered.append(number)
                except Exception as error:
                    failures.append(error)
                    await asyncio.sleep(0.01)

        writers = [asyncio.create_task(writer(first)) for first in range(64)]
        for _ in range(2):
            await asyncio.sleep(1.0)
            await asyncio.to_thread(stoppable_server.stop)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(stoppable_server.start)
        await asyncio.sleep(1.0)
        running = False
        await asyncio.gather(*writers)

        assert failures, "the restarts should have failed some statements"
        unexpected = [error for error in failures if not isinstance(error, DatabaseUnavailable)]
        assert unexpected == []
        # Nothing that was answered as done is missing.
        stored = {row["id"] for row in await database.query("SELECT id FROM load")}
        assert set(answered) <= stored
        # And the pool is healthy afterwards.
        assert (await database.check_connection(deadline=10)).ok
        assert await asyncio.gather(*(database.query("SELECT 1") for _ in range(16)))
        assert database.engine.pool.get_size() <= 8
    finally:
        await database.close_pool()


async def test_connection_joins_the_transaction_and_translate_errors_names_the_constraint(
    pool: None, connection: asyncpg.Connection
) -> None:
    database = db.get_database()
    async with database.transaction() as transaction:
        async with database.connection() as inside:
            assert inside is transaction.connection
        async with database.connection(join_transaction=False) as apart:
            assert apart is not transaction.connection

    await connection.execute("INSERT INTO meetings (room_name) VALUES ('copied')")
    with pytest.raises(CheckViolation):
        with db.translate_errors():
            async with db.connection() as pooled:
                await pooled.execute("INSERT INTO meetings (room_name) VALUES ('')")
    # Without a pool, a connection of its own, closed afterwards.
    await db.close_pool()
    async with db.connection() as own:
        assert await own.fetchval("SELECT count(*) FROM meetings") == 1
    assert own.is_closed()
    await db.start_pool()
