"""
Helpers the tests share: the test PostgreSQL server, throwaway databases,
running the real ``piccolo`` CLI, and catalog snapshots.

The test server is never the developer's: it is ``TEST_DATABASE_URL`` (a
server on which the tests may create and drop databases) or a separate
embedded cluster under ``.local/test-pgdata``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

import asyncpg
from piccolo.apps.user.tables import BaseUser

from conference import embedded
from conference.engine import create_database_if_missing, database_name, with_database
from conference.piccolo_app import APP_CONFIG

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA_DIR = ROOT / ".local" / "test-pgdata"
PICCOLO = str(Path(sys.executable).parent / "piccolo")

#: Every table the conference app registers (``tables.TABLES``, the LiveKit
#: data, then the other lists of ``tables.py``), by name: what a test empties.
CONFERENCE_TABLES = tuple(table._meta.tablename for table in APP_CONFIG.table_classes)


def test_server_url() -> str:
    """URL of the server the tests use, on its ``postgres`` database."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return with_database(url, "postgres")
    return embedded.start(TEST_DATA_DIR, "postgres")


async def create_database(server_url: str, prefix: str = "conference_test") -> str:
    """Create an empty database with a unique name; return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await create_database_if_missing(server_url, name)
    return with_database(server_url, name)


async def drop_database(server_url: str, database_url: str) -> None:
    """Drop a test database, disconnecting whoever still uses it."""
    # Parsed, not split on "/": the embedded server's URL names its socket
    # directory in the query (?host=/…/test-pgdata).
    name = database_name(database_url)
    if not name or name == database_name(server_url):
        raise ValueError(f"{database_url!r} names no throwaway database to drop")
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def run_piccolo(
    args: Iterable[str], database_url: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """
    Run the real ``piccolo`` CLI from the project root against
    ``database_url``, as a user would.
    """
    env = {**os.environ, "DATABASE_URL": database_url}
    result = subprocess.run(
        [PICCOLO, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"piccolo {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


SNAPSHOT_SQL = """
SELECT 'relation' AS kind, c.relname AS owner, c.relname AS name,
       c.relkind::text AS definition
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
UNION ALL
SELECT 'column', c.relname, a.attname,
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', c.relname, con.conname, pg_get_constraintdef(con.oid)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
UNION ALL
SELECT 'index', i.tablename, i.indexname, i.indexdef
FROM pg_indexes i WHERE i.schemaname = 'public'
UNION ALL
SELECT 'type', t.typname, t.typname, t.typtype::text
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)
ORDER BY 1, 2, 3
"""


async def catalog_snapshot(database_url: str) -> list[tuple[str, str, str, str]]:
    """
    Every table, column (type, nullability, default), constraint, index and
    type of the ``public`` schema, sorted: two databases with equal
    snapshots have the same schema.
    """
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(SNAPSHOT_SQL)
    finally:
        await connection.close()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def conference_migration_ids() -> list[str]:
    """The IDs of the ``conference`` app's migrations, oldest first."""
    from piccolo.apps.migrations.commands.base import BaseMigrationManager

    from conference.piccolo_app import APP_CONFIG

    modules = BaseMigrationManager().get_migration_modules(
        APP_CONFIG.resolved_migrations_folder_path
    )
    return sorted(modules)


# --- A real uvicorn serving the app -----------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """
    ``uvicorn --factory conference.app:create_app`` in a subprocess on a
    free port, as an operator would run it, against ``database_url``; with
    ``via_run``, ``piccolo conference run`` (what ``make run`` starts)
    instead. ``factory=False`` serves an app object (``module:app``).
    """

    def __init__(
        self,
        database_url: str,
        env: dict[str, str] | None = None,
        app: str = "conference.app:create_app",
        state_dir: Path | None = None,
        via_run: bool = False,
        args: Iterable[str] = (),
        factory: bool = True,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"uvicorn-{self.port}.log"
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            # No rollup timer unless a test asks: its refreshes would wait
            # for the fixtures' TRUNCATEs of the shared database.
            "REPORTS_REFRESH_INTERVAL": "0",
            **(env or {}),
        }
        if state_dir is not None:
            environment["CONFERENCE_STATE_DIR"] = str(state_dir)
        if via_run:
            # The `make run` path: migrate, admin user, then uvicorn.
            command = [
                PICCOLO,
                "conference",
                "run",
                "--seed=false",
                f"--app={app}",
                f"--factory={str(factory).lower()}",
                "--host=127.0.0.1",
                f"--port={self.port}",
            ]
        else:
            command = [
                sys.executable, "-m", "uvicorn", app,
                "--host", "127.0.0.1", "--port", str(self.port),
                "--timeout-graceful-shutdown", "10",
            ]  # fmt: skip
            if factory:
                command.append("--factory")
        command.extend(args)  # more options for `run` or uvicorn (--workers=2 …)
        self._log = self.log_path.open("w+")
        # Its own process group, so that close() also ends uvicorn's --workers.
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        """Block until ``/healthz`` answers; fail with the server's log."""
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"uvicorn exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"uvicorn did not start within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """Everything the server logged so far."""
        self._log.flush()
        return self.log_path.read_text()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a process manager would; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def close(self) -> None:
        # The whole group: killing only the parent orphaned --workers' children.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)


async def ensure_admin_user(username: str, password: str, superuser: bool) -> None:
    """A staff user who may log in to the admin (created once per database)."""
    if not await BaseUser.exists().where(BaseUser.username == username):
        await BaseUser.create_user(
            username=username,
            password=password,
            email=f"{username}@example.com",
            admin=True,
            superuser=superuser,
            active=True,
        )
