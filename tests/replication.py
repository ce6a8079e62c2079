"""
A primary PostgreSQL 18 cluster with a streaming replica of it, made the
way an operator makes one: ``pg_basebackup -R`` from the running primary,
then ``pg_ctl start`` on the copy, listening on a socket directory of its
own. The embedded server's binaries do both; as root they run as the OS
user that owns the primary's cluster, as PostgreSQL requires.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg

from conference import embedded
from conference.engine import database_name


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
        result = subprocess.run(
            [str(embedded.BIN_DIR / program), *args],
            capture_output=True,
            text=True,
            user=self.os_user,
            cwd="/",  # the server's OS user may not be allowed into ours
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{program} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
