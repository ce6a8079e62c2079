"""
Reads on a real streaming replica (``tests/replication.py``): routed there,
measured, and sent back to the primary when the replica is down or behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from conference import queries, replicas
from conference.app import readyz
from conference.db import Database
from conference.engine import ConferenceEngine, create_engine, replica_urls
from conference.errors import ConfigurationError
from conference.replicas import ReplicaRouter, parse_lsn
from conference.settings import Settings
from conference.tables import Meeting
from tests.replication import StreamingReplica

WHERE = "SELECT pg_is_in_recovery() AS on_replica"


@pytest.fixture
async def engine(streaming_replica: StreamingReplica) -> AsyncIterator[ConferenceEngine]:
    """The engine of a deployment with DATABASE_REPLICA_URLS, its pools started."""
    settings = Settings(
        database_url=streaming_replica.database_url,
        database_replica_urls=streaming_replica.replica_url,
        database_pool_max_size=4,
    )
    engine = create_engine(settings)
    database = Database(engine, settings)
    await database.start_pool()
    yield engine
    await database.close_pool()


async def insert_meeting(engine: ConferenceEngine, room: str) -> str:
    rows = await Database(engine).query(
        "INSERT INTO meetings (room_name) VALUES ($1) RETURNING id::text", room
    )
    return str(rows[0]["id"])


def test_replica_urls_come_from_the_comma_separated_setting() -> None:
    settings = Settings(database_replica_urls=" postgresql://r1/db , ,postgresql://r2/db")
    assert replica_urls(settings) == ["postgresql://r1/db", "postgresql://r2/db"]
    assert replica_urls(Settings(database_replica_urls="")) == []
    with pytest.raises(ConfigurationError, match="DATABASE_REPLICA_URLS names no database"):
        replica_urls(Settings(database_replica_urls="postgresql://replica-1:5432"))


def test_a_wal_position_reads_as_a_byte_offset() -> None:
    assert parse_lsn("0/3000148") == 0x3000148
    assert parse_lsn("1/0") == 1 << 32


async def test_without_replicas_every_read_runs_on_the_primary(database_url: str) -> None:
    router = ReplicaRouter(ConferenceEngine(url=database_url, connect_timeout=5))
    assert await router.read_node() is None
    assert await router.status() == []
    assert (await router.read_query(WHERE))[0]["on_replica"] is False
    # The module-level API: the suite's engine (piccolo_conf), no replicas.
    assert await replicas.read_node() is None
    assert (await replicas.read_query(WHERE))[0]["on_replica"] is False
    assert await replicas.read(Meeting.count().where(Meeting.room_name == "nowhere")) == 0


async def test_rows_written_on_the_primary_are_read_back_through_the_replica(
    engine: ConferenceEngine, streaming_replica: StreamingReplica
) -> None:
    assert list(engine.extra_nodes) == ["replica_1"]
    meeting_id = await insert_meeting(engine, "replicated-standup")
    await streaming_replica.wait_for_replay()
    router = ReplicaRouter(engine, check_interval=0)

    rows = await router.read_query(
        "SELECT room_name, pg_is_in_recovery() AS on_replica FROM meetings WHERE id = $1::uuid",
        meeting_id,
    )

    assert [(row["room_name"], row["on_replica"]) for row in rows] == [("replicated-standup", True)]
    [status] = await router.status()
    assert status.node == "replica_1" and status.usable
    assert status.wal_behind == 0
    assert status.lag is not None and status.lag < router.max_lag


async def test_orm_queries_run_on_the_replica_through_piccolo_extra_nodes(
    engine: ConferenceEngine, streaming_replica: StreamingReplica, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Meeting._meta, "_db", engine)
    meeting_id = await insert_meeting(engine, "orm-on-replica")
    await streaming_replica.wait_for_replay()
    router = ReplicaRouter(engine, check_interval=0)

    found = await router.read(Meeting.select(Meeting.room_name).where(Meeting.id == meeting_id))
    where = await router.read(Meeting.raw(WHERE))

    assert found == [{"room_name": "orm-on-replica"}]
    assert where == [{"on_replica": True}]


async def test_transactions_and_primary_reads_stay_on_the_primary(
    engine: ConferenceEngine,
) -> None:
    router = ReplicaRouter(engine, check_interval=0)
    database = Database(engine)

    async with database.transaction():
        meeting_id = await insert_meeting(engine, "read-your-own-write")
        in_transaction = await router.read_query(
            "SELECT count(*) AS n, pg_is_in_recovery() AS on_replica FROM meetings "
            "WHERE id = $1::uuid",
            meeting_id,
        )
    with replicas.primary_reads():
        in_block = await router.read_query(WHERE)

    assert (in_transaction[0]["n"], in_transaction[0]["on_replica"]) == (1, False)
    assert in_block[0]["on_replica"] is False
    assert (await router.read_query(WHERE))[0]["on_replica"] is True


async def test_a_replica_whose_replay_is_paused_is_measured_lagging_and_skipped(
    engine: ConferenceEngine,
    streaming_replica: StreamingReplica,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = ReplicaRouter(engine, max_lag=0.5, check_interval=0)
    await streaming_replica.wait_for_replay()
    assert (await router.status())[0].usable
    caplog.set_level(logging.INFO, logger="conference.replicas")

    await streaming_replica.on_replica("SELECT pg_wal_replay_pause()")
    try:
        await insert_meeting(engine, "written-while-replay-is-paused")
        await asyncio.sleep(0.8)  # longer than max_lag: the replica now misses 0.8 s
        [lagging] = await router.status()
        read_while_lagging = await router.read_query(WHERE)
    finally:
        await streaming_replica.on_replica("SELECT pg_wal_replay_resume()")
    await streaming_replica.wait_for_replay()
    [caught_up] = await router.status()

    assert not lagging.usable
    assert lagging.wal_behind is not None and lagging.wal_behind > 0
    assert lagging.lag is not None and lagging.lag > 0.5
    assert "DATABASE_REPLICA_MAX_LAG is 0.5 s" in (lagging.reason or "")
    assert read_while_lagging[0]["on_replica"] is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("replica_1" in message and "lags" in message for message in warnings)
    assert caught_up.usable and caught_up.wal_behind == 0
    assert any("is back" in record.getMessage() for record in caplog.records)


async def test_a_stopped_replica_falls_back_to_the_primary_with_a_warning(
    engine: ConferenceEngine,
    streaming_replica: StreamingReplica,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Meeting._meta, "_db", engine)
    meeting_id = await insert_meeting(engine, "survives-a-replica-outage")
    await streaming_replica.wait_for_replay()
    checked_once = ReplicaRouter(engine, check_interval=3600)
    checked_always = ReplicaRouter(engine, check_interval=0)
    assert await checked_once.read_node() == "replica_1"  # healthy when checked
    caplog.set_level(logging.WARNING, logger="conference.replicas")

    streaming_replica.stop_replica()
    try:
        # Chosen before it stopped: the read fails there and runs on the primary.
        mid_read = await checked_once.read_query(
            "SELECT room_name, pg_is_in_recovery() AS on_replica FROM meetings WHERE id = $1::uuid",
            meeting_id,
        )
        # Checked now: skipped before any read is sent.
        [down] = await checked_always.status()
        checked = await checked_always.read_query(WHERE)
        orm = await checked_always.read(Meeting.count().where(Meeting.id == meeting_id))
    finally:
        streaming_replica.start_replica()

    assert [(row["room_name"], row["on_replica"]) for row in mid_read] == [
        ("survives-a-replica-outage", False)
    ]
    assert not down.usable and "unreachable" in (down.reason or "")
    assert checked[0]["on_replica"] is False
    assert orm == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("a read failed there" in message for message in warnings)
    assert any("unreachable" in message for message in warnings)
    await streaming_replica.wait_for_replay()
    assert (await checked_always.status())[0].usable


async def test_a_replica_down_at_startup_does_not_stop_the_engine(
    streaming_replica: StreamingReplica, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        database_url=streaming_replica.database_url,
        database_replica_urls="postgresql://postgres@/nowhere?host=/nonexistent-socket-dir",
    )
    caplog.set_level(logging.WARNING, logger="conference.engine")

    engine = create_engine(settings)
    router = ReplicaRouter(engine, check_interval=0)

    assert any("replica unreachable" in record.getMessage() for record in caplog.records)
    assert await router.read_node() is None
    assert (await router.read_query(WHERE))[0]["on_replica"] is False


async def test_the_query_catalogue_reads_from_a_replica_unless_told_otherwise(
    engine: ConferenceEngine,
    streaming_replica: StreamingReplica,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = ReplicaRouter(engine, max_lag=60, check_interval=0)
    monkeypatch.setattr(replicas, "get_router", lambda database=None: router)
    meeting_id = await insert_meeting(engine, "catalogue-on-replica")
    await streaming_replica.wait_for_replay()

    # Replay paused, the meeting ends on the primary only: the replica (well
    # within the 60 s bound) still shows it active, the primary does not.
    await streaming_replica.on_replica("SELECT pg_wal_replay_pause()")
    try:
        await Database(engine).query(
            "UPDATE meetings SET ended_at = now() WHERE id = $1::uuid", meeting_id
        )
        routed = await queries.active_meetings("catalogue-on-replica")
        with replicas.primary_reads():
            on_primary = await queries.active_meetings("catalogue-on-replica")
        given = await queries.active_meetings("catalogue-on-replica", database=Database(engine))
    finally:
        await streaming_replica.on_replica("SELECT pg_wal_replay_resume()")

    assert [str(meeting.id) for meeting in routed] == [meeting_id]
    assert on_primary == [] and given == []


async def test_readyz_names_each_replica_and_why_it_is_skipped_but_stays_ready(
    engine: ConferenceEngine,
    streaming_replica: StreamingReplica,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = ReplicaRouter(engine, max_lag=0.5, check_interval=0)
    monkeypatch.setattr(replicas, "get_router", lambda database=None: router)
    app = Starlette(routes=[Route("/readyz", readyz)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://conference") as client:
        await streaming_replica.wait_for_replay()
        current = await client.get("/readyz")

        await streaming_replica.on_replica("SELECT pg_wal_replay_pause()")
        try:
            await insert_meeting(engine, "readyz-while-replay-is-paused")
            await asyncio.sleep(0.8)
            lagging = await client.get("/readyz")
        finally:
            await streaming_replica.on_replica("SELECT pg_wal_replay_resume()")

    assert current.status_code == 200
    [replica] = current.json()["replicas"]
    assert replica["node"] == "replica_1" and replica["usable"] is True
    assert replica["reason"] is None and replica["lag"] < 0.5
    # A lagging replica is named with the reason; reads go to the primary,
    # so the service stays ready.
    assert lagging.status_code == 200 and lagging.json()["status"] == "ready"
    [replica] = lagging.json()["replicas"]
    assert replica["usable"] is False
    assert "DATABASE_REPLICA_MAX_LAG is 0.5 s" in replica["reason"]


async def test_readyz_says_nothing_about_replicas_when_there_are_none() -> None:
    app = Starlette(routes=[Route("/readyz", readyz)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://conference") as client:
        response = await client.get("/readyz")
    assert response.status_code == 200 and "replicas" not in response.json()
