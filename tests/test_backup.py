"""
Backups with PostgreSQL's own tools, on real PostgreSQL 18 clusters (the
embedded binaries), as docs/operations.md tells an operator to run them:

- point-in-time recovery: continuous WAL archiving (``archive_command``)
  plus a ``pg_basebackup``, restored into a fresh data directory up to a
  ``recovery_target_time`` just before a destructive mistake;
- moving from the embedded server to another PostgreSQL 18 with
  ``pg_dump --format=custom`` and ``pg_restore``.

Both end with ``piccolo conference verify`` passing on the copy.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from conference import embedded
from conference.engine import database_name, with_database
from tests import support
from tests.conftest import StoppableServer
from tests.replication import run_program
from tests.support import LiveServer
from tests.webhook_sessions import WEBHOOK_ENV, product_sync, sign

logger = logging.getLogger(__name__)


class ArchivingCluster:
    """
    An embedded cluster of its own that archives every WAL segment into
    ``root/archive`` (``archive_mode = on``; ``archive_command`` copies,
    refusing to overwrite), with a migrated database.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "pgdata"
        self.archive_dir = root / "archive"
        self.server_url = embedded.start(self.data_dir, "postgres")
        self.os_user = embedded._server_os_user(self.data_dir)
        self.archive_dir.mkdir()
        chown(root, self.os_user)
        self.database_url = ""

    async def enable_archiving(self) -> None:
        """Turn archiving on; ``archive_mode`` needs a restart."""
        connection = await asyncpg.connect(self.server_url)
        try:
            await connection.execute("ALTER SYSTEM SET archive_mode = 'on'")
            await connection.execute(
                "ALTER SYSTEM SET archive_command = "
                f"'test ! -f {self.archive_dir}/%f && cp %p {self.archive_dir}/%f'"
            )
        finally:
            await connection.close()
        run_program(
            "pg_ctl", "--pgdata", str(self.data_dir), "-m", "fast", "--wait", "restart",
            "--log", str(self.root / "log"), user=self.os_user,
        )  # fmt: skip

    def base_backup(self, target: Path) -> None:
        """``pg_basebackup``: a consistent copy of the running cluster."""
        run_program(
            "pg_basebackup",
            "--pgdata", str(target),
            "--wal-method=stream",
            "--checkpoint=fast",
            "--host", str(self.data_dir),
            "--username", "postgres",
            user=self.os_user,
        )  # fmt: skip

    async def archive_current_wal(self, timeout: float = 30.0) -> None:
        """Close the current WAL segment and wait until it is archived."""
        connection = await asyncpg.connect(self.server_url)
        try:
            segment = await connection.fetchval("SELECT pg_walfile_name(pg_switch_wal())")
        finally:
            await connection.close()
        deadline = time.monotonic() + timeout
        while not (self.archive_dir / segment).exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"{segment} was not archived within {timeout} s")
            await asyncio.sleep(0.05)

    def close(self) -> None:
        embedded.stop(self.data_dir)


def chown(path: Path, user: str | None) -> None:
    """Hand ``path`` to the clusters' OS user (when running as root)."""
    if user is not None:
        subprocess.run(["chown", "-R", f"{user}:{user}", str(path)], check=True)


def restore(backup: Path, archive: Path, data_dir: Path, target_time: str, user: str | None) -> str:
    """
    Point-in-time recovery into the fresh ``data_dir``: the base backup,
    WAL from the archive (``restore_command``) up to ``target_time``, then
    promotion. Returns the server's URL (``postgres`` database) once it
    takes writes.
    """
    subprocess.run(["cp", "-a", str(backup), str(data_dir)], check=True)
    socket_dir = data_dir.parent / "socket"
    socket_dir.mkdir()
    chown(data_dir.parent, user)
    for lock in data_dir.glob(".s.PGSQL.*"):  # the original's socket lock
        lock.unlink()
    with (data_dir / "postgresql.auto.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = ''\n"
            f"unix_socket_directories = '{socket_dir}'\n"
            "archive_mode = 'off'\n"
            f"restore_command = 'cp {archive}/%f %p'\n"
            f"recovery_target_time = '{target_time}'\n"
            "recovery_target_action = 'promote'\n"
        )
    (data_dir / "recovery.signal").touch()
    chown(data_dir, user)
    run_program(
        "pg_ctl", "--pgdata", str(data_dir), "--log", str(data_dir.parent / "log"),
        "--wait", "start", user=user,
    )  # fmt: skip
    return f"postgresql://postgres@/postgres?host={socket_dir}"


async def wait_for_promotion(server_url: str, timeout: float = 60.0) -> None:
    """Wait until the restored server has reached its target and takes writes."""
    connection = await asyncpg.connect(server_url)
    try:
        deadline = time.monotonic() + timeout
        while await connection.fetchval("SELECT pg_is_in_recovery()"):
            if time.monotonic() > deadline:
                raise AssertionError(f"recovery did not finish within {timeout} s")
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def fetch_set(url: str, sql: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        return {row[0] for row in await connection.fetch(sql)}
    finally:
        await connection.close()


async def table_counts(url: str) -> dict[str, int]:
    """Rows of every table of the ``public`` schema."""
    connection = await asyncpg.connect(url)
    try:
        names = [
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {
            name: int(await connection.fetchval(f'SELECT count(*) FROM "{name}"')) for name in names
        }
    finally:
        await connection.close()


def verify(database_url: str) -> str:
    """``piccolo conference verify`` against ``database_url``; fails unless it passes."""
    return support.run_piccolo(["conference", "verify"], database_url).stdout


# --- Point-in-time recovery -----------------------------------------------------


@pytest.fixture
async def archiving(cluster_root: Path) -> AsyncIterator[ArchivingCluster]:
    root = cluster_root / f"pitr-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    cluster = ArchivingCluster(root)
    try:
        await cluster.enable_archiving()
        cluster.database_url = await support.create_database(cluster.server_url)
        support.run_piccolo(["migrations", "forwards", "all"], cluster.database_url)
        yield cluster
    finally:
        cluster.close()
        restored = root / "restored" / "pgdata"
        if (restored / "postmaster.pid").exists():
            run_program(
                "pg_ctl", "--pgdata", str(restored), "-m", "immediate", "--wait", "stop",
                user=cluster.os_user,
            )  # fmt: skip


@pytest.fixture
def app(archiving: ArchivingCluster, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(archiving.database_url, env=WEBHOOK_ENV, state_dir=tmp_path)
    try:
        live.wait_until_serving()
        yield live
    finally:
        live.close()


def deliver(app: LiveServer, tag: str) -> set[str]:
    """Deliver one LiveKit room session; the ids of the events acknowledged (200)."""
    acknowledged = set()
    with httpx.Client(base_url=app.base_url, timeout=30) as client:
        for event in product_sync(tag=tag):
            headers = {
                "Content-Type": "application/webhook+json",
                "Authorization": sign(
                    event.body, WEBHOOK_ENV["LIVEKIT_API_KEY"], WEBHOOK_ENV["LIVEKIT_API_SECRET"]
                ),
            }
            response = client.post("/webhooks/livekit", content=event.body, headers=headers)
            assert response.status_code == 200, response.text
            acknowledged.add(event.event_id)
    return acknowledged


async def test_a_point_in_time_restore_brings_back_every_event_acknowledged_before_the_target(
    archiving: ArchivingCluster, app: LiveServer
) -> None:
    backup = archiving.root / "base"
    archiving.base_backup(backup)
    before = deliver(app, "before")
    connection = await asyncpg.connect(archiving.database_url)
    try:
        target_time = str(await connection.fetchval("SELECT clock_timestamp()::text"))
        await asyncio.sleep(0.05)
        # The mistake the restore undoes, then more traffic after it.
        await connection.execute("DELETE FROM meetings")
    finally:
        await connection.close()
    after = deliver(app, "after")
    await archiving.archive_current_wal()

    started = time.monotonic()
    restored_dir = archiving.root / "restored" / "pgdata"
    restored_dir.parent.mkdir()
    server_url = restore(
        backup, archiving.archive_dir, restored_dir, target_time, archiving.os_user
    )
    await wait_for_promotion(server_url)
    logger.warning(
        "point-in-time restore: %.2f s from copying the base backup to a promoted server",
        time.monotonic() - started,
    )
    restored_url = with_database(server_url, database_name(archiving.database_url))

    assert "ok" in verify(restored_url)
    recorded = await fetch_set(
        restored_url, "SELECT webhook_event_id FROM analytics WHERE webhook_event_id IS NOT NULL"
    )
    assert before <= recorded
    assert recorded & after == set()
    rooms = await fetch_set(restored_url, "SELECT room_sid FROM meetings")
    assert rooms == {product_sync(tag="before")[0].queue.removeprefix("room:")}


# --- Moving to another PostgreSQL 18 ------------------------------------------------


async def test_pg_dump_and_pg_restore_move_the_embedded_database_to_another_server(
    server_url: str, stoppable_server: StoppableServer, cluster_root: Path
) -> None:
    # The suite's embedded test server plays the embedded database, the
    # separate "stoppable" cluster the operator's own PostgreSQL 18.
    stoppable_server.start()
    source_url = await support.create_database(server_url, prefix="conference_move")
    target_url = with_database(stoppable_server.server_url, database_name(source_url))
    user = embedded._server_os_user(stoppable_server.data_dir)
    work = cluster_root / f"move-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    chown(work, user)
    dump = work / "conference.dump"
    try:
        support.run_piccolo(["migrations", "forwards", "all"], source_url)
        await fill(source_url)
        run_program(
            "pg_dump", "--format=custom", "--file", str(dump),
            "--host", socket_dir(source_url), "--username", "postgres",
            database_name(source_url), user=user,
        )  # fmt: skip
        run_program(
            "pg_restore", "--create", "--exit-on-error", "--no-owner",
            "--host", socket_dir(target_url), "--username", "postgres", "--dbname", "postgres",
            str(dump), user=user,
        )  # fmt: skip

        assert "ok" in verify(target_url)
        source_counts = await table_counts(source_url)
        assert source_counts["meetings"] == 300 and source_counts["analytics"] == 1500
        assert await table_counts(target_url) == source_counts
        # Same schema. CHECK constraints are compared by name: PostgreSQL
        # deparses a restored IN (...) list with different casts.
        source_schema = await support.catalog_snapshot(source_url)
        target_schema = await support.catalog_snapshot(target_url)
        assert [row[:3] for row in target_schema] == [row[:3] for row in source_schema]
        assert [row for row in target_schema if "CHECK" not in row[3]] == [
            row for row in source_schema if "CHECK" not in row[3]
        ]
    finally:
        await support.drop_database(stoppable_server.server_url, target_url)
        await support.drop_database(server_url, source_url)


def socket_dir(url: str) -> str:
    """The Unix socket directory of an embedded server's URL (its ``host=``)."""
    return parse_qs(urlsplit(url).query)["host"][0]


async def fill(database_url: str) -> None:
    """Meetings with participants, recordings and analytics events, in plain SQL."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            """
            INSERT INTO meetings (room_name, room_sid, metadata)
            SELECT 'room-' || n, 'RM_' || n, jsonb_build_object('n', n)
            FROM generate_series(1, 300) AS n;
            INSERT INTO participants (meeting_id, identity, participant_sid)
            SELECT m.id, 'user-' || p, m.room_sid || '-PA_' || p
            FROM meetings m, generate_series(1, 3) AS p;
            INSERT INTO recordings (meeting_id, egress_id, status)
            SELECT id, 'EG_' || room_sid, 'complete' FROM meetings;
            INSERT INTO analytics (meeting_id, event_type, event_data, webhook_event_id)
            SELECT m.id, 'participant_joined', jsonb_build_object('k', 1), m.room_sid || '-EV_' || e
            FROM meetings m, generate_series(1, 5) AS e;
            """
        )
    finally:
        await connection.close()
