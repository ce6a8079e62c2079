"""
The engine's own pool (``conference.pool``) on a real PostgreSQL 18: a
bounded wait for a connection, only live connections handed out, nothing
leaked or shared when callers are cancelled, and a release that never
turns finished work into an error.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from piccolo.columns import Varchar
from piccolo.table import Table

import conference.pool
from conference.db import Database
from conference.engine import ConferenceEngine
from conference.errors import DatabaseBusy, DatabaseUnavailable
from conference.pool import ConferencePool
from tests.conftest import StoppableServer


class PoolProbe(Table, tablename="pool_probe"):
    """An ORM table bound to a test's engine; never created (no query reaches it)."""

    name = Varchar(length=50)


async def test_an_exhausted_pool_raises_database_busy_within_the_bound(database_url: str) -> None:
    database = Database(ConferenceEngine(url=database_url, connect_timeout=5, acquire_timeout=0.3))
    await database.start_pool(min_size=1, max_size=2)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with database.transaction():
            held.set()
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    try:
        await held.wait()
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(DatabaseBusy, match=r"no database connection became free within 0\.3 s"):
            await database.query("SELECT 1")
        waited = time.monotonic() - started
        assert 0.3 <= waited < 2.0  # the bound, and nowhere near the 5 s connect timeout
        # ORM queries are bounded the same way: they acquire from the same pool.
        PoolProbe._meta.db = database.engine
        with pytest.raises(DatabaseBusy):
            await PoolProbe.select().run()
        assert isinstance(DatabaseBusy("x"), DatabaseUnavailable)  # webhooks answer 503

        release.set()
        await asyncio.gather(*holders)
        assert await database.query("SELECT 1 AS one") == [(1,)]
    finally:
        release.set()
        PoolProbe._meta.db = None  # type: ignore[assignment]
        await database.close_pool()


async def test_the_engine_owns_its_pool_and_the_orm_shares_it(database_url: str) -> None:
    engine = ConferenceEngine(url=database_url, connect_timeout=5, acquire_timeout=0.5)
    database = Database(engine)
    await database.start_pool(min_size=1, max_size=2)
    try:
        assert isinstance(engine.pool, ConferencePool)
        assert engine.pool.acquire_timeout == 0.5
        await database.start_pool()  # already open: the same pool
        pool = engine.pool
        PoolProbe._meta.db = engine
        async with database.connection() as connection:
            pid = await connection.fetchval("SELECT pg_backend_pid()")
        rows = await PoolProbe.raw("SELECT pg_backend_pid() AS pid").run()
        assert rows == [{"pid": pid}]  # the pool's only recently used connection
        assert engine.pool is pool
    finally:
        PoolProbe._meta.db = None  # type: ignore[assignment]
        await database.close_pool()


async def test_a_connection_whose_server_went_away_after_the_statement_loses_no_result(
    stoppable_server: StoppableServer, stoppable_database_url: str
) -> None:
    # The statement succeeded; resetting the connection on release fails.
    # The caller gets its rows, the pool replaces the connection.
    database = Database(ConferenceEngine(url=stoppable_database_url, connect_timeout=5))
    await database.start_pool(min_size=1, max_size=1)
    try:
        async with database.connection() as connection:
            assert await connection.fetchval("SELECT 41 + 1") == 42
            # Stopped without letting the event loop run: the pool learns
            # that the server is gone only while resetting the connection.
            stoppable_server.stop()
        stoppable_server.start()
        assert await database.query("SELECT 1 AS one") == [(1,)]
    finally:
        await database.close_pool()


async def test_requests_cancelled_mid_acquire_leak_no_connection_and_hand_out_none_twice(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every acquisition probes its connection, so cancellations land during
    # probes, waits and statements alike (a client that hung up, a deadline).
    monkeypatch.setattr(conference.pool, "VALIDATE_AFTER_IDLE", 0.0)
    database = Database(ConferenceEngine(url=database_url, connect_timeout=5, acquire_timeout=5))
    await database.start_pool(min_size=1, max_size=2)
    delays = random.Random(12)
    try:
        for _ in range(60):
            tasks = [asyncio.create_task(database.query("SELECT 1")) for _ in range(3)]
            await asyncio.sleep(delays.uniform(0, 0.004))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        pool = database.engine.pool
        # A release interrupted by its caller's cancellation finishes in the
        # background (asyncpg shields it): give those a moment, then nothing
        # may still be checked out.
        for _ in range(100):
            if pool.get_idle_size() == pool.get_size():
                break
            await asyncio.sleep(0.05)
        assert pool.get_idle_size() == pool.get_size() <= 2
        pids = await asyncio.wait_for(
            asyncio.gather(
                *(
                    database.query("SELECT pg_backend_pid() AS pid, pg_sleep(0.05)")
                    for _ in range(6)
                )
            ),
            timeout=10,
        )
        assert len({rows[0]["pid"] for rows in pids}) <= 2
    finally:
        await database.close_pool()
