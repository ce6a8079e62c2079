"""
A primary PostgreSQL 18 cluster with a streaming replica of it, made the
way an operator makes one: ``pg_basebackup -R`` from the running primary,
then ``pg_ctl start`` on the copy, listening on a socket directory of its
own. The embedded server's binaries do both; as root they run as the OS
user that owns the primary's cluster, as PostgreSQL requires.

For the failover drills the replica can be made a synchronous standby
(:meth:`StreamingReplica.make_synchronous`), the primary killed the way a
machine dies (:meth:`StreamingReplica.kill_primary`: SIGKILL to the
postmaster and every server process) and the standby promoted
(:meth:`StreamingReplica.promote`: ``pg_ctl promote``, as an HA manager
such as Patroni does). :meth:`StreamingReplica.failover_url` is the
libpq multi-host URL that lists both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg

from conference import embedded
from conference.engine import database_name

#: The standby's name: its ``cluster_name``, which its walreceiver sends
#: as ``application_name``, the name ``synchronous_standby_names`` lists.
STANDBY_NAME = "standby1"


class StreamingReplica:
    """
    ``root/primary/pgdata`` (an embedded cluster) and ``root/replica/pgdata``
    (its streaming replica). Databases made on the primary before
    :meth:`create_replica` are copied, later ones stream like any change.

    :attr database_url:
        The database the tests use on the primary (set by the fixture).
    """

    def __init__(self, root: Path) -> None:
        self.primary_dir = root / "primary" / "pgdata"
        self.replica_home = root / "replica"
        self.replica_dir = self.replica_home / "pgdata"
        self.replica_socket_dir = self.replica_home / "socket"
        self.server_url = embedded.start(self.primary_dir, "postgres")
        self.os_user = embedded._server_os_user(self.primary_dir)
        self.primary_socket_dir = parse_qs(urlsplit(self.server_url).query)["host"][0]
        self.database_url = ""

    @property
    def replica_url(self) -> str:
        """The URL of :attr:`database_url`'s database on the replica."""
        database = database_name(self.database_url)
        return f"postgresql://postgres@/{database}?host={self.replica_socket_dir}"

    def create_replica(self) -> None:
        """``pg_basebackup -R`` from the primary, then start the copy."""
        self.replica_socket_dir.mkdir(parents=True, exist_ok=True)
        if self.os_user is not None:
            for directory in (self.replica_home, self.replica_socket_dir):
                shutil.chown(directory, self.os_user, self.os_user)
        self._run(
            "pg_basebackup",
            "--pgdata", str(self.replica_dir),
            "--write-recovery-conf",  # -R: standby.signal and primary_conninfo
            "--wal-method=stream",
            "--checkpoint=fast",
            "--host", self.primary_socket_dir,
            "--username", "postgres",
        )  # fmt: skip
        # The primary's socket lives in its data directory, so the copy
        # holds the primary's socket lock file: drop it, and listen on a
        # Unix socket in a directory of the replica's own.
        for lock in self.replica_dir.glob(".s.PGSQL.*"):
            lock.unlink()
        with (self.replica_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = ''\nunix_socket_directories = '{self.replica_socket_dir}'\n"
                f"cluster_name = '{STANDBY_NAME}'\n"
            )
        self.start_replica()

    def start_replica(self) -> None:
        """Start the replica (it catches up from the primary on its own)."""
        log = self.replica_home / "log"
        self._run(
            "pg_ctl", "--pgdata", str(self.replica_dir), "--log", str(log), "--wait", "start"
        )  # fmt: skip

    def stop_replica(self, mode: str = "fast") -> None:
        """Stop the replica; fine if it is not running."""
        if (self.replica_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "--pgdata", str(self.replica_dir), "-m", mode, "--wait", "stop")

    def failover_url(self, database: str | None = None) -> str:
        """
        A libpq multi-host URL listing the primary, then the standby, that
        asks for the one taking writes (``target_session_attrs=read-write``):
        the primary now, the standby once it is promoted.
        """
        database = database or database_name(self.database_url)
        return (
            f"postgresql://postgres@/{database}?host={self.primary_socket_dir},"
            f"{self.replica_socket_dir}&target_session_attrs=read-write"
        )

    async def make_synchronous(self, commit: str = "on") -> None:
        """
        Make the replica a synchronous standby: the primary acknowledges a
        commit only once the standby has it (``on``: flushed to its disk;
        ``remote_apply``: replayed, visible to its readers).
        """
        primary = await asyncpg.connect(self.database_url)
        try:
            await primary.execute(
                f"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({STANDBY_NAME})'"
            )
            await primary.execute(f"ALTER SYSTEM SET synchronous_commit = '{commit}'")
            await primary.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            while (
                await primary.fetchval(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
                    STANDBY_NAME,
                )
                != "sync"
            ):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{STANDBY_NAME} did not become a synchronous standby")
                await asyncio.sleep(0.05)
        finally:
            await primary.close()

    def kill_primary(self) -> None:
        """
        SIGKILL the primary's postmaster and every process of its server at
        once, as if its machine had died: no shutdown checkpoint, nothing
        sent to the standby that it did not have already.
        """
        postmaster = int((self.primary_dir / "postmaster.pid").read_text().split()[0])
        children = [
            int(stat.parent.name)
            for stat in Path("/proc").glob("[0-9]*/stat")
            if _parent_pid(stat) == postmaster
        ]
        for pid in (postmaster, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{postmaster}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def promote(self) -> None:
        """``pg_ctl promote``: the standby ends recovery and takes writes."""
        self._run("pg_ctl", "--pgdata", str(self.replica_dir), "--wait", "promote")

    async def wait_for_replay(self, timeout: float = 30.0) -> None:
        """Wait until the replica has replayed everything the primary wrote so far."""
        primary = await asyncpg.connect(self.database_url)
        try:
            target = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
        finally:
            await primary.close()
        replica = await asyncpg.connect(self.replica_url)
        try:
            deadline = time.monotonic() + timeout
            while not await replica.fetchval(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target
            ):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the replica did not replay up to {target} in {timeout}s")
                await replica.execute("SELECT pg_sleep(0.02)")
        finally:
            await replica.close()

    async def on_replica(self, sql: str) -> None:
        """Run ``sql`` on the replica (e.g. ``SELECT pg_wal_replay_pause()``)."""
        connection = await asyncpg.connect(self.replica_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def close(self) -> None:
        """Stop both servers."""
        self.stop_replica(mode="immediate")
        embedded.stop(self.primary_dir)

    def _run(self, program: str, *args: str) -> None:
        run_program(program, *args, user=self.os_user)


def _parent_pid(stat: Path) -> int | None:
    try:
        # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
        return int(stat.read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def run_program(program: str, *args: str, user: str | None = None, timeout: float = 120) -> str:
    """
    Run one of the embedded server's programs (``pg_ctl``, ``pg_dump`` ...)
    as ``user`` (the clusters' OS user when running as root); return its
    output, or fail with it.
    """
    result = subprocess.run(
        [str(embedded.BIN_DIR / program), *args],
        capture_output=True,
        text=True,
        user=user,
        cwd="/",  # the server's OS user may not be allowed into ours
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{program} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout
