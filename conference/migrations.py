"""
The safe migration runner: Piccolo's migrations, applied so that any number
of processes may migrate one database at the same moment.

What it adds to ``piccolo migrations forwards``:

- **One process at a time.** A PostgreSQL advisory lock
  (:data:`MIGRATION_LOCK_KEY`), taken by polling ``pg_try_advisory_lock``
  until ``MIGRATION_LOCK_WAIT`` runs out. Polling, not blocking: a waiter
  blocked inside ``pg_advisory_lock`` keeps a transaction open, and
  ``CREATE INDEX CONCURRENTLY`` in the migrating process would wait for it
  forever. The others find nothing pending once they get the lock.
- **A migration and its ledger row commit together**, in one transaction on
  the runner's connection (stock Piccolo writes the ledger row after the
  migration's transaction has committed). A checksum of each migration file
  goes into :data:`CHECKSUM_TABLE` in the same transaction.
- **Timeouts.** ``lock_timeout`` (``MIGRATION_LOCK_TIMEOUT``) so that a
  migration never queues behind a long transaction while every query
  queues behind it; ``statement_timeout`` (``MIGRATION_STATEMENT_TIMEOUT``).
  ``client_connection_check_interval`` so that the server notices a killed
  runner within seconds, rolls it back and frees the lock.
- **A dry run that shows everything**, hand-written raw steps included: a
  migration keeps its raw SQL in module-level ``FORWARDS_SQL`` (and
  ``BACKWARDS_SQL``) lists, which its ``add_raw`` step runs and the dry run
  prints. Piccolo's ``--preview`` skips raw steps.
- **verify()** for CI: fails on pending migrations, on models that an auto
  migration would change, and on applied migration files that changed.

The schema work itself is Piccolo's ``MigrationManager.run()``, unchanged:
the runner only makes Piccolo run it on the runner's connection, inside the
runner's transaction.

The ledger is Piccolo's own ``migration`` table, so ``piccolo migrations
backwards`` and ``check`` keep working.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import random
import sys
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.tables import Migration
from piccolo.conf.apps import AppConfig, Finder
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction

from conference.db import get_database, translate_error
from conference.engine import describe_connection_error
from conference.errors import (
    DatabaseUnavailable,
    MigrationError,
    MigrationFailed,
    MigrationLockTimeout,
)
from conference.settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: The advisory lock every migrating process takes (the first 8 bytes of
#: sha256("conference.migrations")). Advisory locks are per database.
MIGRATION_LOCK_KEY = 2377875457974556696

#: The runner's own table: one checksum per applied migration file.
CHECKSUM_TABLE = "conference_migration_checksums"

#: ``application_name`` of the runner's connection, in ``pg_stat_activity``.
APPLICATION_NAME = "conference migrations"

#: How often the server checks that the runner is still there while a
#: statement runs; a killed runner's transaction is rolled back within this.
CLIENT_CHECK_INTERVAL = "1s"

_POLL_INTERVAL = 0.5

_CREATE_CHECKSUM_TABLE = f"""
CREATE TABLE IF NOT EXISTS {CHECKSUM_TABLE} (
    app_name text NOT NULL,
    migration_id text NOT NULL,
    checksum text NOT NULL,
    file_name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_name, migration_id)
)
""".strip()

_INSERT_LEDGER = "INSERT INTO migration (name, app_name) VALUES ($1, $2)"

_UPSERT_CHECKSUM = f"""
INSERT INTO {CHECKSUM_TABLE} (app_name, migration_id, checksum, file_name)
VALUES ($1, $2, $3, $4)
ON CONFLICT (app_name, migration_id) DO UPDATE
SET checksum = EXCLUDED.checksum, file_name = EXCLUDED.file_name, applied_at = now()
""".strip()


# --- Results ----------------------------------------------------------------


@dataclass(frozen=True)
class MigrationFile:
    """One migration module of a registered app."""

    app_name: str
    migration_id: str
    description: str
    path: Path
    module: ModuleType = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        """``app:ID``, as every result and message names it."""
        return f"{self.app_name}:{self.migration_id}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.app_name, self.migration_id)

    def checksum(self) -> str:
        """sha256 of the file, line endings normalised (a Windows checkout is no change)."""
        return hashlib.sha256(self.path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


@dataclass
class MigrationStep:
    """
    One migration of a run: applied, or for a dry run, planned.

    :param statements:
        Every statement, in order: what ran (when ``verbose``) or what would
        run (dry run). Empty otherwise.
    :param duration_ms:
        How long it took; ``None`` in a dry run.
    """

    app_name: str
    migration_id: str
    description: str
    statements: list[str] = field(default_factory=list)
    duration_ms: float | None = None

    @property
    def name(self) -> str:
        """``app:ID``."""
        return f"{self.app_name}:{self.migration_id}"


@dataclass
class MigrationRunResult:
    """
    What :func:`run_migrations` did, or in a dry run would do.

    :param migrations:
        The migrations applied (or that a dry run would apply), in order.
    :param duration_ms:
        The whole run, lock wait included.
    :param lock_wait_ms:
        Time spent waiting for another process's migrations.
    :param preamble:
        Statements before the first migration (creating the ledger tables).
    """

    dry_run: bool
    migrations: list[MigrationStep]
    duration_ms: float
    lock_wait_ms: float = 0.0
    preamble: list[str] = field(default_factory=list)

    @property
    def applied(self) -> list[str]:
        """``app:ID`` of each migration applied (none in a dry run)."""
        return [] if self.dry_run else [step.name for step in self.migrations]

    @property
    def sql(self) -> str:
        """The statements as one SQL script, each migration under a comment."""
        lines = [_terminated(statement) for statement in self.preamble]
        for step in self.migrations:
            lines.append(f"-- {step.name}: {step.description}".rstrip(": "))
            lines.extend(_terminated(statement) for statement in step.statements)
        return "\n".join(lines)


@dataclass(frozen=True)
class MigrationState:
    """
    One migration as :func:`migration_status` sees it.

    :param applied_at:
        When the ledger says it ran; ``None`` if pending.
    :param checksum_matches:
        Whether the file still has the checksum recorded when it ran;
        ``None`` if pending or no checksum was recorded (applied by stock
        ``piccolo migrations forwards``).
    :param has_file:
        ``False`` for a ledger row whose file is not in this code base
        (applied by newer code).
    """

    app_name: str
    migration_id: str
    description: str
    applied_at: datetime | None
    checksum_matches: bool | None
    has_file: bool = True

    @property
    def name(self) -> str:
        """``app:ID``."""
        return f"{self.app_name}:{self.migration_id}"


@dataclass
class VerifyResult:
    """
    What :func:`verify` found; :attr:`ok` is what CI checks.

    :param pending:
        Migrations not applied yet (``app:ID``).
    :param model_changes:
        Per app, the statements an auto migration would contain: the
        tables changed without a migration.
    :param changed_files:
        Applied migrations whose file changed since they ran.
    :param unrecorded:
        Applied migrations with no recorded checksum (applied by stock
        Piccolo); not a failure, the next ``migrate`` records them.
    """

    pending: list[str] = field(default_factory=list)
    model_changes: dict[str, list[str]] = field(default_factory=dict)
    changed_files: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No pending migration, no unmigrated model change, no edited applied migration."""
        return not (self.pending or self.model_changes or self.changed_files)

    def problems(self) -> list[str]:
        """One line per failure, each saying what to do."""
        lines = [
            f"pending migration {name}: apply it (piccolo conference migrate)"
            for name in self.pending
        ]
        for app_name, statements in self.model_changes.items():
            lines.append(
                f"the tables of app {app_name!r} differ from its migrations "
                f"({len(statements)} statement(s), e.g. {statements[0]!r}); create a "
                f"migration: piccolo migrations new {app_name} --auto"
            )
        lines.extend(
            f"applied migration {entry} changed since it ran; restore it and put the "
            "change in a new migration"
            for entry in self.changed_files
        )
        return lines


# --- Finding migrations -----------------------------------------------------


def _migration_modules(folder: str) -> dict[str, ModuleType]:
    """Piccolo's discovery, without growing ``sys.path`` on every call."""
    entries = sys.path.count(folder)
    modules = BaseMigrationManager().get_migration_modules(folder)
    while sys.path.count(folder) > max(entries, 1):
        sys.path.remove(folder)
    return dict(modules)


def migration_files(app_configs: Sequence[AppConfig] | None = None) -> list[MigrationFile]:
    """
    Every migration of the apps in ``piccolo_conf``'s ``APP_REGISTRY``, in
    the order they apply: apps by their ``migration_dependencies``, then
    each app's migrations by ID (Piccolo's order).

    :param app_configs:
        The apps to look at; default all registered apps.
    """
    configs = list(app_configs) if app_configs is not None else Finder().get_app_configs()
    files = []
    for config in configs:
        modules = _migration_modules(config.resolved_migrations_folder_path)
        for migration_id in sorted(modules):
            module = modules[migration_id]
            files.append(
                MigrationFile(
                    app_name=config.app_name,
                    migration_id=migration_id,
                    description=str(getattr(module, "DESCRIPTION", "")),
                    path=Path(str(module.__file__)),
                    module=module,
                )
            )
    return files


def _find(files: list[MigrationFile], target: str) -> MigrationFile:
    app_name, _, migration_id = target.partition(":")
    apps = {file.app_name for file in files}
    if app_name in apps:
        matches = [f for f in files if f.key == (app_name, migration_id)]
    else:
        matches = [f for f in files if f.migration_id == target]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(f.name for f in matches)
        raise MigrationError(f"target {target!r} is ambiguous ({names}); write it as app:ID")
    known = ", ".join(f.name for f in files[-5:])
    raise MigrationError(
        f"no migration {target!r}; give an ID or app:ID of a migration file "
        f"(the latest are: {known})"
    )


# --- The ledger -------------------------------------------------------------


async def _exists(connection: Any, table: str) -> bool:
    return bool(await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def _applied(connection: Any) -> dict[tuple[str, str], datetime]:
    if not await _exists(connection, "migration"):
        return {}
    rows = await connection.fetch("SELECT app_name, name, ran_on FROM migration")
    return {(row["app_name"], row["name"]): row["ran_on"] for row in rows}


async def _checksums(connection: Any) -> dict[tuple[str, str], str]:
    if not await _exists(connection, CHECKSUM_TABLE):
        return {}
    rows = await connection.fetch(f"SELECT app_name, migration_id, checksum FROM {CHECKSUM_TABLE}")
    return {(row["app_name"], row["migration_id"]): row["checksum"] for row in rows}


async def pending_on(connection: Any) -> list[str]:
    """
    The pending migrations (``app:ID``), read through an open asyncpg
    ``connection``; for :func:`conference.db.check_connection`.
    """
    applied = await _applied(connection)
    return [file.name for file in migration_files() if file.key not in applied]


def _engine() -> PostgresEngine:
    return get_database().engine


async def _connect(engine: PostgresEngine) -> Any:
    """A connection of the runner's own, outside any pool."""
    url = get_database().url
    try:
        return await engine.get_new_connection()
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        raise DatabaseUnavailable(describe_connection_error(error, url)) from error


# --- Statements -------------------------------------------------------------


def _terminated(statement: str) -> str:
    if statement.startswith("--") or statement.rstrip().endswith(";"):
        return statement
    return statement + ";"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _render(sql: str, args: Sequence[str]) -> str:
    """``sql`` with ``$n`` replaced by quoted ``args``: for display only."""
    for index in range(len(args), 0, -1):
        sql = sql.replace(f"${index}", _literal(args[index - 1]))
    return sql


def _timeouts(settings: Settings, scope: str) -> list[str]:
    """``SET [LOCAL] lock_timeout ...``; numbers from validated settings, safe to inline."""
    return [
        f"SET {scope}lock_timeout = '{round(settings.migration_lock_timeout * 1000)}ms'",
        f"SET {scope}statement_timeout = '{round(settings.migration_statement_timeout * 1000)}ms'",
    ]


def _ledger_statements(file: MigrationFile) -> list[tuple[str, tuple[str, ...]]]:
    return [
        (_INSERT_LEDGER, (file.migration_id, file.app_name)),
        (_UPSERT_CHECKSUM, (file.app_name, file.migration_id, file.checksum(), file.path.name)),
    ]


def _ledger_setup() -> list[str]:
    return [*Migration.create_table(if_not_exists=True).ddl, _CREATE_CHECKSUM_TABLE]


def _raw_sql(file: MigrationFile, manager: MigrationManager) -> list[str]:
    """The SQL of the raw steps, by the ``FORWARDS_SQL`` convention."""
    if not manager.raw:
        return []
    statements = getattr(file.module, "FORWARDS_SQL", None)
    if statements is None:
        return [
            f"-- {len(manager.raw)} raw Python step(s) not shown: keep raw SQL in a "
            "module-level FORWARDS_SQL list (see conference/piccolo_migrations/README.md)"
        ]
    return [str(statement) for statement in statements]


class _Recorder:
    """An asyncpg connection that notes (and logs) every statement sent through it."""

    def __init__(self, connection: Any, statements: list[str], verbose: bool) -> None:
        self.connection = connection
        self.statements = statements
        self.level = logging.INFO if verbose else logging.DEBUG
        self.verbose = verbose

    def note(self, statement: str) -> None:
        logger.log(self.level, "%s", statement)
        if self.verbose:
            self.statements.append(statement)

    async def fetch(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self.note(sql)
        return await self.connection.fetch(sql, *args, **kwargs)

    async def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self.note(sql)
        return await self.connection.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


class _Pinned(PostgresTransaction):
    """
    Stands in for a transaction in ``engine.current_transaction``, so that
    Piccolo runs every query of a migration on the runner's connection (and
    inside the runner's transaction): ``MigrationManager.run()`` then joins
    it instead of opening a transaction on a connection of its own.
    """

    def __init__(self, engine: PostgresEngine, connection: Any) -> None:
        super().__init__(engine=engine)
        self.connection = connection


async def _run_manager(engine: PostgresEngine, connection: Any, manager: MigrationManager) -> None:
    token = engine.current_transaction.set(_Pinned(engine, connection))
    output = io.StringIO()
    try:
        # Piccolo prints its progress; only CLI code may print here. (The
        # redirect is process-wide for a moment: migrations run at startup.)
        with redirect_stdout(output):
            await manager.run()
    finally:
        engine.current_transaction.reset(token)
        if output.getvalue().strip():
            logger.debug("piccolo: %s", output.getvalue().strip())


# --- Running ----------------------------------------------------------------


async def _acquire_lock(connection: Any, wait: float) -> float:
    """Poll the advisory lock until ``wait`` runs out; return the seconds waited."""
    started = time.monotonic()
    told = False
    while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
        waited = time.monotonic() - started
        if waited >= wait:
            raise MigrationLockTimeout(
                f"waited {wait:g} s for the migration lock, held by "
                f"{await _lock_holder(connection)}. If that process is stuck, end it "
                "(SELECT pg_terminate_backend(pid)); if its migrations are just slow, "
                "raise MIGRATION_LOCK_WAIT"
            )
        if not told:
            logger.info("another process is migrating this database; waiting for it")
            told = True
        # Jitter, so that a crowd of replicas does not poll in lockstep.
        await asyncio.sleep(min(_POLL_INTERVAL * random.uniform(0.5, 1.5), wait - waited))
    return time.monotonic() - started


async def _lock_holder(connection: Any) -> str:
    row = await connection.fetchrow(
        """
        SELECT a.pid, a.application_name, a.client_addr::text AS client, a.state
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1
        """,
        (MIGRATION_LOCK_KEY >> 32) & 0xFFFFFFFF,
        MIGRATION_LOCK_KEY & 0xFFFFFFFF,
    )
    if row is None:
        return "a process that has just let go"
    return (
        f"server process {row['pid']} ({row['application_name'] or 'no application_name'}, "
        f"{row['client'] or 'local socket'}, {row['state']})"
    )


async def _apply_one(
    engine: PostgresEngine,
    connection: Any,
    file: MigrationFile,
    settings: Settings,
    verbose: bool,
) -> MigrationStep:
    step = MigrationStep(file.app_name, file.migration_id, file.description)
    recorder = _Recorder(connection, step.statements, verbose)
    started = time.perf_counter()
    manager = await file.module.forwards()
    runs_schema = isinstance(manager, MigrationManager) and not manager.fake
    atomic = not isinstance(manager, MigrationManager) or manager.wrap_in_transaction

    async def record() -> None:
        for sql, args in _ledger_statements(file):
            recorder.note(_render(sql, args))
            await connection.execute(sql, *args)

    if atomic:
        recorder.note("BEGIN")
        async with connection.transaction():
            for statement in _timeouts(settings, "LOCAL "):
                await recorder.execute(statement)
            if runs_schema:
                await _run_manager(engine, recorder, manager)
            await record()
        recorder.note("COMMIT")
    else:
        # The migration asked for no transaction (CREATE INDEX CONCURRENTLY
        # ...): its ledger row can only follow it. Such a migration must be
        # safe to run again (IF NOT EXISTS).
        for statement in _timeouts(settings, ""):
            await recorder.execute(statement)
        try:
            await _run_manager(engine, recorder, manager)
        finally:
            await recorder.execute("RESET lock_timeout")
            await recorder.execute("RESET statement_timeout")
        async with connection.transaction():
            await record()
    step.duration_ms = (time.perf_counter() - started) * 1000
    return step


async def _apply(
    engine: PostgresEngine,
    connection: Any,
    files: list[MigrationFile],
    target: str | None,
    settings: Settings,
    verbose: bool,
) -> list[MigrationStep]:
    for statement in _ledger_setup():
        await connection.execute(statement)
    applied = await _applied(connection)
    checksums = await _checksums(connection)

    for file in files:
        if file.key not in applied:
            continue
        recorded = checksums.get(file.key)
        if recorded is None:
            # Applied by stock Piccolo: trust the file as it is now.
            sql, args = _ledger_statements(file)[1]
            await connection.execute(sql, *args)
            logger.info("recorded the checksum of %s, applied earlier", file.name)
        elif recorded != file.checksum():
            logger.warning(
                "applied migration %s (%s) changed since it ran; piccolo conference "
                "verify fails until it is restored",
                file.name,
                file.path,
            )

    steps: list[MigrationStep] = []
    for file in _selected(files, applied, target):
        try:
            step = await _apply_one(engine, connection, file, settings, verbose)
        except Exception as error:
            raise MigrationFailed(
                f"migration {file.name} ({file.path.name}) failed and was rolled back, "
                f"with its ledger row: {_describe(error, settings)}",
                migration=file.name,
                applied=[s.name for s in steps],
            ) from error
        logger.info(
            "applied %s (%s) in %.0f ms", file.name, file.description, step.duration_ms or 0
        )
        steps.append(step)
    return steps


def _describe(error: BaseException, settings: Settings) -> str:
    if isinstance(error, asyncpg.LockNotAvailableError):
        return (
            f"{error}: a table it changes stayed locked by other sessions for longer "
            f"than MIGRATION_LOCK_TIMEOUT ({settings.migration_lock_timeout:g} s). Run "
            "it again when the long transaction is over, or raise MIGRATION_LOCK_TIMEOUT"
        )
    if isinstance(error, asyncpg.QueryCanceledError):
        return (
            f"{error}: a statement ran longer than MIGRATION_STATEMENT_TIMEOUT "
            f"({settings.migration_statement_timeout:g} s); raise it for this migration"
        )
    translated = translate_error(error)
    return str(translated) if translated is not None else f"{type(error).__name__}: {error}"


def _selected(
    files: list[MigrationFile], applied: dict[tuple[str, str], Any], target: str | None
) -> list[MigrationFile]:
    """The pending files, up to and including ``target`` in apply order."""
    last = files.index(_find(files, target)) if target else len(files) - 1
    return [file for file in files[: last + 1] if file.key not in applied]


async def _plan(
    engine: PostgresEngine,
    connection: Any,
    files: list[MigrationFile],
    target: str | None,
    settings: Settings,
) -> tuple[list[str], list[MigrationStep]]:
    """What :func:`_apply` would send, statement by statement, without sending it."""
    applied = await _applied(connection)
    preamble = []
    if not (await _exists(connection, "migration") and await _exists(connection, CHECKSUM_TABLE)):
        preamble = _ledger_setup()
    steps = []
    for file in _selected(files, applied, target):
        step = MigrationStep(file.app_name, file.migration_id, file.description)
        manager = await file.module.forwards()
        body: list[str] = []
        if isinstance(manager, MigrationManager) and not manager.fake:
            # Piccolo runs the raw steps first, then the generated ones.
            body = _raw_sql(file, manager) + await _preview(engine, connection, manager)
        ledger = [_render(sql, args) for sql, args in _ledger_statements(file)]
        if not isinstance(manager, MigrationManager) or manager.wrap_in_transaction:
            step.statements = ["BEGIN", *_timeouts(settings, "LOCAL "), *body, *ledger, "COMMIT"]
        else:
            step.statements = [
                *_timeouts(settings, ""),
                *body,
                "RESET lock_timeout",
                "RESET statement_timeout",
                "BEGIN",
                *ledger,
                "COMMIT",
            ]
        steps.append(step)
    return preamble, steps


async def _preview(engine: PostgresEngine, connection: Any, manager: MigrationManager) -> list[str]:
    """The statements of Piccolo's preview mode (raw steps are skipped there)."""
    statements: list[str] = []

    async def collect(query: Any) -> None:
        ddl = getattr(query, "ddl", None)
        if isinstance(ddl, str):
            statements.append(ddl)
        elif ddl is not None:
            statements.extend(str(part) for part in ddl)
        else:
            statements.append(str(query))

    manager.preview = True
    manager._print_query = collect  # type: ignore[method-assign]
    # Read-only: whatever preview mode might run cannot change anything.
    async with connection.transaction(readonly=True):
        await _run_manager(engine, connection, manager)
    return statements


async def run_migrations(
    dry_run: bool = False,
    verbose: bool = False,
    target: str | None = None,
    *,
    settings: Settings | None = None,
) -> MigrationRunResult:
    """
    Apply the pending migrations of every registered app, in Piccolo's
    order, one process at a time; see the module docstring for how.

    Raises :class:`~conference.errors.MigrationLockTimeout` when another
    process keeps migrating longer than ``MIGRATION_LOCK_WAIT``, and
    :class:`~conference.errors.MigrationFailed` when a migration fails (it
    is rolled back with its ledger row; earlier ones of the run stay).

    :param dry_run:
        Change nothing (not even take the lock); return every statement
        that would run, raw SQL steps included.
    :param verbose:
        Keep every statement that ran in the result and log each at INFO.
    :param target:
        Stop after this migration (``ID`` or ``app:ID``), in apply order.
    :param settings:
        The timeouts and the lock wait; default :func:`get_settings`.
    """
    settings = settings or get_settings()
    engine = _engine()
    files = migration_files()
    if target:
        _find(files, target)  # an unknown target fails before connecting
    started = time.perf_counter()
    connection = await _connect(engine)
    try:
        await connection.execute(f"SET application_name = {_literal(APPLICATION_NAME)}")
        await connection.execute(
            f"SET client_connection_check_interval = '{CLIENT_CHECK_INTERVAL}'"
        )
        if dry_run:
            preamble, steps = await _plan(engine, connection, files, target, settings)
            lock_wait = 0.0
        else:
            preamble = []
            lock_wait = await _acquire_lock(connection, settings.migration_lock_wait)
            steps = await _apply(engine, connection, files, target, settings, verbose)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        translated = translate_error(error, get_database().url)
        if translated is None:
            raise
        raise translated from error
    finally:
        # Closing the session releases the advisory lock too.
        await connection.close()
    return MigrationRunResult(
        dry_run=dry_run,
        migrations=steps,
        duration_ms=(time.perf_counter() - started) * 1000,
        lock_wait_ms=lock_wait * 1000,
        preamble=preamble,
    )


async def auto_migrate() -> MigrationRunResult:
    """
    Apply pending migrations at application startup: safe when many
    replicas start at once (one migrates, the others wait for it and then
    find nothing to do). Logs a summary at INFO.
    """
    result = await run_migrations()
    if result.applied:
        logger.info(
            "applied %d migration(s) in %.0f ms: %s",
            len(result.applied),
            result.duration_ms,
            ", ".join(result.applied),
        )
    else:
        logger.info("database schema up to date")
    return result


async def pending_migrations() -> list[str]:
    """The migrations (``app:ID``) of the registered apps not applied yet."""
    connection = await _connect(_engine())
    try:
        return await pending_on(connection)
    finally:
        await connection.close()


async def migration_status() -> list[MigrationState]:
    """Every migration with its state, plus ledger rows whose file is missing."""
    return await _status(migration_files())


async def _status(files: list[MigrationFile]) -> list[MigrationState]:
    connection = await _connect(_engine())
    try:
        applied = await _applied(connection)
        checksums = await _checksums(connection)
    finally:
        await connection.close()
    states = []
    for file in files:
        recorded = checksums.get(file.key)
        ran = applied.get(file.key)
        states.append(
            MigrationState(
                app_name=file.app_name,
                migration_id=file.migration_id,
                description=file.description,
                applied_at=ran,
                checksum_matches=(
                    None if ran is None or recorded is None else recorded == file.checksum()
                ),
            )
        )
    known = {file.key for file in files}
    for (app_name, migration_id), ran in sorted(applied.items()):
        if (app_name, migration_id) not in known:
            states.append(MigrationState(app_name, migration_id, "", ran, None, has_file=False))
    return states


async def verify() -> VerifyResult:
    """
    Check, for CI, that the database and the code agree: nothing pending,
    no table changed without a migration, no applied migration edited.
    """
    files = migration_files()
    paths = {file.name: file.path for file in files}
    result = VerifyResult()
    for state in await _status(files):
        if not state.has_file:
            continue
        if state.applied_at is None:
            result.pending.append(state.name)
        elif state.checksum_matches is False:
            result.changed_files.append(f"{state.name} ({paths[state.name]})")
        elif state.checksum_matches is None:
            result.unrecorded.append(state.name)
    # Imported here: it pulls in black (0.3 s), which nothing else needs.
    from piccolo.apps.migrations.commands.new import AutoMigrationManager

    for config in Finder().get_app_configs():
        # What `piccolo migrations new APP --auto` would write; it prints a
        # summary, which is not ours to print.
        with redirect_stdout(io.StringIO()):
            groups = await AutoMigrationManager().get_alter_statements(config)
        statements = [statement for group in groups for statement in group.statements]
        if statements:
            result.model_changes[config.app_name] = statements
    return result
