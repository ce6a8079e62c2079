"""
The migration runner (``conference.migrations``, ``piccolo conference
migrate/status/verify``) on a real PostgreSQL 18: concurrent processes, a
migration failing halfway, a runner killed mid-migration, timeouts, the
dry run, and ``verify`` in CI.

Most tests run the real CLI in a scratch project in a temporary directory:
its own ``piccolo_conf.py`` registers ``conference`` and a ``scratch`` app
whose migrations the test writes (committed migrations are never touched).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from conference.engine import database_name, with_database
from conference.errors import MigrationError, MigrationLockTimeout
from conference.migrations import (
    APPLICATION_NAME,
    CHECKSUM_TABLE,
    MIGRATION_LOCK_KEY,
    STEP_TABLE,
    migration_files,
    pending_migrations,
    run_migrations,
    verify,
)
from conference.settings import Settings
from tests import support
from tests.support import PICCOLO, ROOT, catalog_snapshot

FIRST = "2030-01-01T00:00:00:000001"
SECOND = "2030-01-01T00:00:00:000002"


def _module_name(migration_id: str) -> str:
    digits = migration_id.lower().replace("-", "_").replace(":", "_")
    return f"scratch_{digits}"


MIGRATION_TEMPLATE = '''\
"""A scratch migration written by tests/test_migrations.py."""

import os

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = {id!r}
VERSION = "1.38.0"
DESCRIPTION = {description!r}

FORWARDS_SQL = {forwards!r}
if os.environ.get("SCRATCH_SLEEP"):
    FORWARDS_SQL = [*FORWARDS_SQL, "SELECT pg_sleep(600)"]
{extra}

class RawTable(Table):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="scratch", description=DESCRIPTION)

    async def run():
        for statement in FORWARDS_SQL:
            await RawTable.raw(statement)

    manager.add_raw(run)
    if "BACKWARDS_SQL" in globals():

        async def run_backwards():
            for statement in BACKWARDS_SQL:
                await RawTable.raw(statement)

        manager.add_raw_backwards(run_backwards)
    return manager
'''


class ScratchProject:
    """A host project in a temporary directory: ``conference`` plus app ``scratch``."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.migrations = root / "scratch" / "piccolo_migrations"
        self.migrations.mkdir(parents=True)
        (root / "scratch" / "__init__.py").write_text("")
        (self.migrations / "__init__.py").write_text("")
        (root / "piccolo_conf.py").write_text(
            textwrap.dedent(
                """
                from piccolo.conf.apps import AppRegistry

                from conference.engine import create_engine

                DB = create_engine()
                APP_REGISTRY = AppRegistry(
                    apps=["conference.piccolo_app", "scratch.piccolo_app"]
                )
                """
            )
        )
        (root / "scratch" / "piccolo_app.py").write_text(
            textwrap.dedent(
                """
                from pathlib import Path

                from piccolo.conf.apps import AppConfig

                from scratch.tables import TABLES

                APP_CONFIG = AppConfig(
                    app_name="scratch",
                    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
                    table_classes=TABLES,
                    migration_dependencies=["conference.piccolo_app"],
                )
                """
            )
        )
        (root / "scratch" / "tables.py").write_text("TABLES = []\n")
        self.write_migration(
            FIRST, "gadgets", ["CREATE TABLE scratch_gadgets (id int PRIMARY KEY, name text)"]
        )

    def migration_path(self, migration_id: str) -> Path:
        return self.migrations / f"{_module_name(migration_id)}.py"

    def write_migration(
        self, migration_id: str, description: str, forwards: list[str], extra: str = ""
    ) -> Path:
        """A migration whose raw step runs ``forwards``; ``extra``: more module code."""
        path = self.migration_path(migration_id)
        path.write_text(
            MIGRATION_TEMPLATE.format(
                id=migration_id, description=description, forwards=forwards, extra=extra
            )
        )
        return path

    def environment(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            # Files change within a second in these tests: never trust a .pyc.
            "PYTHONDONTWRITEBYTECODE": "1",
            **extra,
        }

    def piccolo(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``piccolo ARGS`` in the project, as its developer would run it."""
        return subprocess.run(
            [PICCOLO, *args],
            cwd=self.root,
            env=self.environment(**env),
            capture_output=True,
            text=True,
            timeout=180,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """``piccolo ARGS`` in the background."""
        return subprocess.Popen(
            [PICCOLO, *args],
            cwd=self.root,
            env=self.environment(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_captured(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """``piccolo ARGS`` in the background, its output kept for the test."""
        return subprocess.Popen(
            [PICCOLO, *args],
            cwd=self.root,
            env=self.environment(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def migrate(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = self.piccolo("conference", "migrate", *args, **env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result


@pytest.fixture
def scratch(tmp_path: Path, fresh_database_url: str) -> ScratchProject:
    """A scratch project on an empty database."""
    return ScratchProject(tmp_path / "project", fresh_database_url)


@pytest.fixture(scope="module")
async def migrated_template(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A database that ``piccolo conference migrate`` brought up to date, once."""
    url = await support.create_database(server_url, prefix="conference_template")
    ScratchProject(tmp_path_factory.mktemp("template") / "project", url).migrate()
    yield url
    await support.drop_database(server_url, url)


@pytest.fixture
async def migrated(
    server_url: str, migrated_template: str, tmp_path: Path
) -> AsyncIterator[ScratchProject]:
    """
    A scratch project whose migrations are all applied (a copy of
    :func:`migrated_template`, which is quicker than migrating again).
    """
    name = f"conference_test_{uuid.uuid4().hex[:12]}"
    template = database_name(migrated_template)
    admin = await asyncpg.connect(server_url)
    try:
        for attempt in range(50):
            try:
                await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except asyncpg.ObjectInUseError:  # the migrating process is still leaving
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await admin.close()
    url = with_database(server_url, name)
    yield ScratchProject(tmp_path / "project", url)
    await support.drop_database(server_url, url)


async def _ledger(database_url: str) -> list[tuple[str, str]]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT app_name, name FROM migration ORDER BY 1, 2")
        return [(row["app_name"], row["name"]) for row in rows]
    finally:
        await connection.close()


async def _checksum_rows(database_url: str) -> list[tuple[str, str, str]]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            f"SELECT app_name, migration_id, checksum FROM {CHECKSUM_TABLE} ORDER BY 1, 2"
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]
    finally:
        await connection.close()


async def _fetchval(database_url: str, sql: str, *args: object) -> object:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


# --- Many processes at once ---------------------------------------------------

RACER = """
import asyncio, json, sys, time
from pathlib import Path

import piccolo_conf  # noqa: F401 - builds the engine before the start line
from conference.migrations import auto_migrate

barrier = Path(sys.argv[1])
(barrier / f"ready-{sys.argv[2]}").touch()
while not (barrier / "go").exists():
    time.sleep(0.005)
result = asyncio.run(auto_migrate())
print(json.dumps({"applied": result.applied, "lock_wait_ms": result.lock_wait_ms}))
"""


def _start_racers(barrier: Path, database_url: str, count: int) -> list[subprocess.Popen[str]]:
    environment = {**os.environ, "DATABASE_URL": database_url}
    return [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier), str(number)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(count)
    ]


def _wait_until_ready(barrier: Path, racers: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready-*"))) < len(racers):
        assert time.monotonic() < deadline, "the racers did not get ready"
        exited = [racer.communicate() for racer in racers if racer.poll() is not None]
        assert not exited, exited
        time.sleep(0.05)


async def test_eight_processes_migrating_at_once_apply_each_migration_exactly_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    expected = sorted(file.name for file in migration_files())
    racers = _start_racers(tmp_path, fresh_database_url, 8)
    try:
        _wait_until_ready(tmp_path, racers)
        (tmp_path / "go").touch()  # the start line: all of them at once
        outputs = [racer.communicate(timeout=120) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()

    for racer, (_, stderr) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, stderr
    applied = [name for stdout, _ in outputs for name in json.loads(stdout)["applied"]]
    assert sorted(applied) == expected  # each exactly once, by one of them
    ledger = await _ledger(fresh_database_url)
    assert sorted(f"{app}:{name}" for app, name in ledger) == expected
    assert len(await _checksum_rows(fresh_database_url)) == len(expected)


# --- Failures ---------------------------------------------------------------


async def test_a_migration_failing_halfway_leaves_schema_and_ledger_as_they_were(
    migrated: ScratchProject,
) -> None:
    schema = await catalog_snapshot(migrated.database_url)
    ledger = await _ledger(migrated.database_url)
    checksums = await _checksum_rows(migrated.database_url)

    statements = [
        "CREATE TABLE scratch_widgets (id int PRIMARY KEY)",
        "INSERT INTO scratch_widgets VALUES (1)",
        "ALTER TABLE scratch_gadgets ADD COLUMN colour text",
    ]
    migrated.write_migration(SECOND, "widgets", [*statements, "SELECT 1 / 0"])
    failed = migrated.piccolo("conference", "migrate")

    assert failed.returncode == 1
    assert f"conference: error: migration scratch:{SECOND}" in failed.stderr
    assert "failed and was rolled back, with its ledger row" in failed.stderr
    assert "division by zero" in failed.stderr
    assert await catalog_snapshot(migrated.database_url) == schema
    assert await _ledger(migrated.database_url) == ledger
    assert await _checksum_rows(migrated.database_url) == checksums

    migrated.write_migration(SECOND, "widgets", statements)
    fixed = migrated.migrate("--verbose")

    assert f"applied scratch:{SECOND} (widgets)" in fixed.stdout
    assert "CREATE TABLE scratch_widgets (id int PRIMARY KEY)" in fixed.stdout
    assert await _fetchval(migrated.database_url, "SELECT count(*) FROM scratch_widgets") == 1
    assert ("scratch", SECOND) in await _ledger(migrated.database_url)


async def _wait_for(database_url: str, sql: str, timeout: float) -> float:
    """Poll ``sql`` until it returns true; return the seconds it took."""
    started = time.monotonic()
    while not await _fetchval(database_url, sql):
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {sql}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_runner_killed_mid_migration_leaves_the_database_consistent(
    migrated: ScratchProject,
) -> None:
    schema = await catalog_snapshot(migrated.database_url)
    ledger = await _ledger(migrated.database_url)
    migrated.write_migration(
        SECOND,
        "slow",
        ["CREATE TABLE scratch_slow (id int)", "INSERT INTO scratch_slow VALUES (1)"],
    )

    runner = migrated.start("conference", "migrate", SCRATCH_SLEEP="1")
    try:
        await _wait_for(
            migrated.database_url,
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%'"
            " AND pid <> pg_backend_pid())",
            timeout=120,
        )
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()

    # The server notices the dead client (client_connection_check_interval),
    # rolls its transaction back and frees the lock: in seconds, not after
    # the 600 s sleep.
    await _wait_for(
        migrated.database_url,
        "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = $1)".replace(
            "$1", f"'{APPLICATION_NAME}'"
        ),
        timeout=60,
    )
    assert await catalog_snapshot(migrated.database_url) == schema
    assert await _ledger(migrated.database_url) == ledger

    finished = migrated.migrate()

    assert f"applied scratch:{SECOND} (slow)" in finished.stdout
    assert await _fetchval(migrated.database_url, "SELECT count(*) FROM scratch_slow") == 1
    assert (await _ledger(migrated.database_url)).count(("scratch", SECOND)) == 1


async def test_a_step_blocked_by_a_long_transaction_retries_without_holding_writers_back(
    migrated: ScratchProject,
) -> None:
    migrated.write_migration(
        SECOND, "colour", ["ALTER TABLE scratch_gadgets ADD COLUMN colour text"]
    )
    blocker = await asyncpg.connect(migrated.database_url)
    writer = await asyncpg.connect(migrated.database_url)
    try:
        # A long report: ACCESS SHARE on the table until it ends.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.fetch("SELECT * FROM scratch_gadgets")
        blocker_pid = blocker.get_server_pid()

        runner = migrated.start_captured("conference", "migrate", MIGRATION_LOCK_TIMEOUT="0.1")
        try:
            await _wait_for(
                migrated.database_url,
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = "
                f"'{APPLICATION_NAME}' AND query LIKE '%ADD COLUMN colour%')",
                timeout=120,
            )
            # Writes go on while the migration keeps trying: each waits at
            # most one attempt, far below this writer's own lock_timeout.
            await writer.execute("SET lock_timeout = '3s'")
            for number in range(30):
                await writer.execute("INSERT INTO scratch_gadgets VALUES ($1, 'w')", 1000 + number)
                await asyncio.sleep(0.1)
            assert runner.poll() is None  # still retrying, not failed
        finally:
            await transaction.rollback()
        stdout, stderr = runner.communicate(timeout=120)
    finally:
        await blocker.close()
        await writer.close()

    assert runner.returncode == 0, stderr
    assert f"applied scratch:{SECOND} (colour)" in stdout
    assert f"blocked by pid {blocker_pid} (idle in transaction" in stderr
    assert "SELECT * FROM scratch_gadgets" in stderr
    assert await _fetchval(migrated.database_url, "SELECT count(*) FROM scratch_gadgets") == 30
    assert ("scratch", SECOND) in await _ledger(migrated.database_url)


async def test_migrations_give_up_after_the_lock_budget_and_statement_timeout(
    migrated: ScratchProject,
) -> None:
    migrated.write_migration(
        SECOND, "colour", ["ALTER TABLE scratch_gadgets ADD COLUMN colour text"]
    )
    blocker = await asyncpg.connect(migrated.database_url)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.fetch("SELECT * FROM scratch_gadgets")  # holds ACCESS SHARE

        blocked = migrated.piccolo("conference", "migrate", MIGRATION_LOCK_BUDGET="1")
        await transaction.rollback()
    finally:
        await blocker.close()

    assert blocked.returncode == 1
    assert "could not lock scratch_gadgets" in blocked.stderr
    assert "MIGRATION_LOCK_BUDGET (1 s)" in blocked.stderr
    assert ("scratch", SECOND) not in await _ledger(migrated.database_url)

    # The same migration, now with a 600 s sleep in it (SCRATCH_SLEEP).
    too_long = migrated.piccolo(
        "conference", "migrate", MIGRATION_STATEMENT_TIMEOUT="0.5", SCRATCH_SLEEP="1"
    )
    assert too_long.returncode == 1
    assert "statement timeout" in too_long.stderr
    assert "MIGRATION_STATEMENT_TIMEOUT (0.5 s)" in too_long.stderr
    assert ("scratch", SECOND) not in await _ledger(migrated.database_url)

    migrated.migrate()
    assert ("scratch", SECOND) in await _ledger(migrated.database_url)


async def test_a_runner_gives_up_waiting_for_the_migration_lock_with_a_clear_error(
    database_url: str,
) -> None:
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SET application_name = 'stuck deploy'")
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY)
        pid = await holder.fetchval("SELECT pg_backend_pid()")

        started = time.monotonic()
        with pytest.raises(MigrationLockTimeout) as caught:
            await run_migrations(settings=Settings(migration_lock_wait=1))
        elapsed = time.monotonic() - started
    finally:
        await holder.close()

    assert 1 <= elapsed < 30
    message = str(caught.value)
    assert "waited 1 s for the migration lock" in message
    assert f"server process {pid} (stuck deploy" in message
    assert "MIGRATION_LOCK_WAIT" in message


# --- Live tables: non-blocking steps, refusals, resuming ----------------------

INDEX_SQL = "CREATE INDEX scratch_gadgets_name ON scratch_gadgets (name)"

_RUNNER_WAITS = (
    "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = "
    f"'{APPLICATION_NAME}' AND query LIKE '%CONCURRENTLY%' AND wait_event_type = 'Lock')"
)


async def _populate(database_url: str, rows: int) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO scratch_gadgets SELECT n, 'gadget ' || n FROM generate_series(1, $1) n",
            rows,
        )
    finally:
        await connection.close()


async def _index_states(database_url: str) -> list[bool]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname LIKE 'scratch_gadgets_name%'"
        )
        return [row["indisvalid"] for row in rows]
    finally:
        await connection.close()


async def test_an_index_on_a_populated_table_is_built_while_a_concurrent_insert_completes(
    migrated: ScratchProject,
) -> None:
    await _populate(migrated.database_url, 20_000)
    migrated.write_migration(SECOND, "index", [INDEX_SQL])
    older = await asyncpg.connect(migrated.database_url)
    writer = await asyncpg.connect(migrated.database_url)
    try:
        # A transaction older than the build: a concurrent build waits for
        # it, which keeps the build in progress while the writer writes.
        transaction = older.transaction()
        await transaction.start()
        await older.execute("INSERT INTO scratch_gadgets VALUES (-1, 'older')")
        runner = migrated.start_captured("conference", "migrate", "--verbose")
        try:
            await _wait_for(migrated.database_url, _RUNNER_WAITS, timeout=120)
            # A plain CREATE INDEX would hold SHARE on the table now, and
            # this INSERT would wait for the whole build.
            await writer.execute("SET lock_timeout = '5s'")
            await writer.execute("INSERT INTO scratch_gadgets VALUES (-2, 'during the build')")
            assert runner.poll() is None  # the build is still in progress
        finally:
            await transaction.commit()
        stdout, stderr = runner.communicate(timeout=120)
    finally:
        await older.close()
        await writer.close()

    assert runner.returncode == 0, stderr
    assert "CREATE INDEX CONCURRENTLY scratch_gadgets_name ON scratch_gadgets (name)" in stdout
    assert await _index_states(migrated.database_url) == [True]
    assert await _fetchval(migrated.database_url, "SELECT count(*) FROM scratch_gadgets") == 20_002
    assert (await _ledger(migrated.database_url)).count(("scratch", SECOND)) == 1


async def test_a_runner_killed_during_a_concurrent_build_is_finished_by_the_next_run(
    migrated: ScratchProject,
) -> None:
    await _populate(migrated.database_url, 1_000)
    migrated.write_migration(SECOND, "index", [INDEX_SQL])
    older = await asyncpg.connect(migrated.database_url)
    try:
        transaction = older.transaction()
        await transaction.start()
        await older.execute("INSERT INTO scratch_gadgets VALUES (-1, 'older')")
        runner = migrated.start("conference", "migrate")
        try:
            # The build has created its (not yet valid) index and waits.
            await _wait_for(migrated.database_url, _RUNNER_WAITS, timeout=120)
        finally:
            runner.send_signal(signal.SIGKILL)
            runner.wait()
        # The server notices the dead client (client_connection_check_interval)
        # and ends the build halfway, before the older transaction is over.
        await _wait_for(
            migrated.database_url,
            "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = "
            f"'{APPLICATION_NAME}')",
            timeout=60,
        )
        await transaction.commit()
    finally:
        await older.close()
    assert await _index_states(migrated.database_url) == [False]  # the INVALID leftover
    assert ("scratch", SECOND) not in await _ledger(migrated.database_url)

    rerun = migrated.migrate()

    assert f"applied scratch:{SECOND} (index)" in rerun.stdout
    assert "is INVALID" in rerun.stderr and "building it again" in rerun.stderr
    assert await _index_states(migrated.database_url) == [True]
    assert (await _ledger(migrated.database_url)).count(("scratch", SECOND)) == 1
    assert await _fetchval(migrated.database_url, f"SELECT count(*) FROM {STEP_TABLE}") == 0


async def test_a_refused_operation_changes_nothing_and_prints_the_recipe(
    migrated: ScratchProject,
) -> None:
    schema = await catalog_snapshot(migrated.database_url)
    ledger = await _ledger(migrated.database_url)
    statements = [
        "CREATE TABLE scratch_new (id bigint PRIMARY KEY)",
        "ALTER TABLE scratch_gadgets DROP COLUMN name",
    ]
    migrated.write_migration(SECOND, "drop name", statements)

    refused = migrated.piccolo("conference", "migrate")

    assert refused.returncode == 1
    assert "refused before anything ran (nothing changed)" in refused.stderr
    assert f"scratch:{SECOND}" in refused.stderr
    assert "dropping column scratch_gadgets.name" in refused.stderr
    assert "safe recipe: 1. stop reading and writing the column" in refused.stderr
    assert "ACKNOWLEDGE_UNSAFE = {'drop_column scratch_gadgets.name':" in refused.stderr
    assert await catalog_snapshot(migrated.database_url) == schema
    assert await _ledger(migrated.database_url) == ledger
    dry = migrated.piccolo("conference", "migrate", "--dry_run")
    assert dry.returncode == 1 and "dropping column scratch_gadgets.name" in dry.stderr

    migrated.write_migration(
        SECOND,
        "drop name",
        statements,
        extra="ACKNOWLEDGE_UNSAFE = {'drop_column scratch_gadgets.name': 'no code reads it'}",
    )
    migrated.migrate()
    assert ("scratch", SECOND) in await _ledger(migrated.database_url)


async def test_reversing_a_migration_takes_the_same_non_blocking_route_and_forgets_it(
    migrated: ScratchProject,
) -> None:
    await _populate(migrated.database_url, 1_000)
    migrated.write_migration(
        SECOND,
        "index",
        [INDEX_SQL],
        extra="BACKWARDS_SQL = ['DROP INDEX scratch_gadgets_name']",
    )
    migrated.migrate()
    assert await _index_states(migrated.database_url) == [True]

    dry = migrated.migrate("--backwards", f"--target=scratch:{SECOND}", "--dry_run")
    assert "DROP INDEX CONCURRENTLY IF EXISTS scratch_gadgets_name" in dry.stdout
    assert f"DELETE FROM migration WHERE name = '{SECOND}' AND app_name = 'scratch'" in dry.stdout
    reversed_ = migrated.migrate("--backwards", f"--target=scratch:{SECOND}")

    assert f"reversed scratch:{SECOND} (index)" in reversed_.stdout
    assert await _index_states(migrated.database_url) == []
    assert ("scratch", SECOND) not in await _ledger(migrated.database_url)
    assert ("scratch", FIRST) in await _ledger(migrated.database_url)
    assert ("scratch", SECOND) not in {
        (app, name) for app, name, _ in await _checksum_rows(migrated.database_url)
    }
    no_target = migrated.piccolo("conference", "migrate", "--backwards")
    assert no_target.returncode == 1 and "reversing needs a target" in no_target.stderr


async def test_the_runner_builds_the_same_schema_as_stock_piccolo(
    migrated: ScratchProject, database_url: str
) -> None:
    # conftest migrated the session database with `piccolo migrations
    # forwards all`; `migrated` came from `piccolo conference migrate`, whose
    # UNIQUE, CHECK and FOREIGN KEY took the concurrent / NOT VALID route.
    def ours(snapshot: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
        return [row for row in snapshot if row[1] in support.CONFERENCE_TABLES]

    assert ours(await catalog_snapshot(migrated.database_url)) == ours(
        await catalog_snapshot(database_url)
    )


# --- Dry run, target, status ------------------------------------------------


async def test_a_dry_run_prints_every_statement_including_raw_sql_and_changes_nothing(
    scratch: ScratchProject,
) -> None:
    result = scratch.migrate("--dry_run")

    assert 'CREATE TABLE "meetings"' in result.stdout
    # Hand-written raw steps, by the FORWARDS_SQL convention: conference's
    # composite indexes and the scratch app's table.
    # On a table an earlier migration created: built CONCURRENTLY, outside
    # a transaction, as on a live database.
    assert (
        "CREATE INDEX CONCURRENTLY participants_meeting_id_left_at ON participants" in result.stdout
    )
    assert "CREATE TABLE scratch_gadgets (id int PRIMARY KEY, name text);" in result.stdout
    assert "SET LOCAL lock_timeout = '150ms';" in result.stdout
    assert f"INSERT INTO migration (name, app_name) VALUES ('{FIRST}', 'scratch');" in (
        result.stdout
    )
    # Piccolo's CLI itself creates the (empty) ledger table before running
    # any app command, for its "migrations haven't been run" warning;
    # nothing else may exist.
    relations = {
        row[2] for row in await catalog_snapshot(scratch.database_url) if row[0] == "relation"
    }
    assert relations <= {"migration", "migration_id_seq"}
    assert await _fetchval(scratch.database_url, "SELECT to_regclass('migration') IS NULL") or (
        await _ledger(scratch.database_url) == []
    )


async def test_a_dry_run_says_when_a_raw_step_keeps_its_sql_elsewhere(
    scratch: ScratchProject,
) -> None:
    path = scratch.write_migration(SECOND, "opaque", ["SELECT 1"])
    path.write_text(path.read_text().replace("FORWARDS_SQL", "STATEMENTS"))

    result = scratch.migrate("--dry_run")

    assert "-- raw Python step(s) not shown: keep raw SQL in a module-level FORWARDS_SQL" in (
        result.stdout
    )


async def test_target_stops_after_that_migration_and_status_shows_the_rest_pending(
    scratch: ScratchProject,
) -> None:
    conference_ids = [f.migration_id for f in migration_files() if f.app_name == "conference"]
    scratch.migrate(f"--target=conference:{conference_ids[0]}")

    assert await _ledger(scratch.database_url) == [("conference", conference_ids[0])]
    status = scratch.piccolo("conference", "status")
    assert status.returncode == 0, status.stderr
    assert "applied  " in status.stdout
    assert f"PENDING                    scratch:{FIRST}  gadgets" in status.stdout
    assert f"1 applied, {len(conference_ids)} pending" in status.stdout

    unknown = scratch.piccolo("conference", "migrate", "--target=nope")
    assert unknown.returncode == 1
    assert "conference: error: no migration 'nope'" in unknown.stderr


async def test_status_exits_non_zero_when_the_database_is_unreachable(
    scratch: ScratchProject,
) -> None:
    scratch.database_url = "postgresql://app:pw@127.0.0.1:1/livekit_conference"
    result = scratch.piccolo("conference", "status")
    assert result.returncode != 0
    assert "cannot reach PostgreSQL" in result.stderr


# --- verify -----------------------------------------------------------------


async def test_verify_passes_on_a_clean_tree(migrated: ScratchProject) -> None:
    result = migrated.piccolo("conference", "verify")
    assert result.returncode == 0, result.stderr
    assert "ok: no pending migrations" in result.stdout


async def test_verify_fails_for_a_pending_migration(migrated: ScratchProject) -> None:
    migrated.write_migration(SECOND, "later", ["SELECT 1"])

    result = migrated.piccolo("conference", "verify")

    assert result.returncode == 1
    assert f"FAIL: pending migration scratch:{SECOND}" in result.stderr
    assert result.stderr.count("FAIL:") == 1


async def test_verify_fails_for_a_model_change_without_a_migration(
    migrated: ScratchProject,
) -> None:
    (migrated.root / "scratch" / "tables.py").write_text(
        textwrap.dedent(
            """
            from piccolo.columns import Varchar
            from piccolo.table import Table


            class Gizmo(Table):
                name = Varchar()


            TABLES = [Gizmo]
            """
        )
    )

    result = migrated.piccolo("conference", "verify")

    assert result.returncode == 1
    assert "FAIL: the tables of app 'scratch' differ from its migrations" in result.stderr
    assert "piccolo migrations new scratch --auto" in result.stderr
    assert result.stderr.count("FAIL:") == 1


async def test_verify_fails_for_an_applied_migration_edited_since_it_ran(
    migrated: ScratchProject,
) -> None:
    path = migrated.migration_path(FIRST)
    path.write_text(path.read_text() + "# a harmless-looking edit\n")

    result = migrated.piccolo("conference", "verify")

    assert result.returncode == 1
    assert f"FAIL: applied migration scratch:{FIRST} ({path}) changed since it ran" in (
        result.stderr
    )
    assert result.stderr.count("FAIL:") == 1


# --- The programmatic API on the session database --------------------------


async def test_migrations_applied_by_stock_piccolo_get_their_checksums_recorded(
    database_url: str,
) -> None:
    # conftest migrated this database with `piccolo migrations forwards all`.
    result = await run_migrations()

    assert result.migrations == [] and result.applied == []
    recorded = {(app, name) for app, name, _ in await _checksum_rows(database_url)}
    assert recorded == {(f.app_name, f.migration_id) for f in migration_files()}
    assert await pending_migrations() == []
    verdict = await verify()
    assert verdict.ok, verdict.problems()
    assert verdict.unrecorded == []


async def test_an_unknown_target_is_refused_before_anything_runs() -> None:
    with pytest.raises(MigrationError, match="no migration 'nope'"):
        await run_migrations(target="nope")


@pytest.fixture(autouse=True)
def _no_leftover_runner() -> Iterator[None]:
    yield
    # A runner subprocess outliving its test would hold the lock for others.
    assert not [p for p in Path("/proc").glob("[0-9]*") if _is_orphan_runner(p)]


def _is_orphan_runner(proc: Path) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        status = (proc / "status").read_text()
    except OSError:
        return False
    is_runner = any(part.endswith(b"piccolo") for part in cmdline[:2]) and b"migrate" in cmdline
    return is_runner and f"PPid:\t{os.getpid()}\n" in status
