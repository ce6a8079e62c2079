"""
The public runner: ``run_migrations`` (what ``piccolo conference migrate``
calls), ``auto_migrate``, ``pending_migrations``, ``migration_status`` and
``verify``. It ties the ledger, the planner and the executor together and
owns the runner's connection and the advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.conf.apps import Finder
from piccolo.engine.postgres import PostgresEngine

from conference._compat import migration_manager_sql, quiet_stdout
from conference.db import get_database, translate_error
from conference.engine import describe_connection_error
from conference.errors import (
    DatabaseUnavailable,
    MigrationError,
    MigrationFailed,
    MigrationLockTimeout,
    MigrationRefused,
)
from conference.settings import Settings, get_settings

from .executor import Executor, LockBudgetExhausted, terminated
from .ledger import (
    LedgerState,
    MigrationFile,
    checksum_statement,
    find_migration,
    ledger_exists,
    ledger_setup,
    migration_files,
    read_ledger,
    reversible,
    selected,
)
from .planner import Catalog, MigrationPlan, plan_migration
from .safety import acknowledgements

logger = logging.getLogger(__name__)

#: The advisory lock every migrating process takes (the first 8 bytes of
#: sha256("conference.migrations")). Advisory locks are per database.
MIGRATION_LOCK_KEY = 2377875457974556696

#: ``application_name`` of the runner's connection, in ``pg_stat_activity``.
APPLICATION_NAME = "conference migrations"

#: How often the server checks that the runner is still there while a
#: statement runs; a killed runner's transaction is rolled back within this.
CLIENT_CHECK_INTERVAL = "1s"

_POLL_INTERVAL = 0.5

_CATALOG_SQL = """
SELECT c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(current_schemas(false))
"""

#: Validated CHECK (column IS NOT NULL) constraints: SET NOT NULL uses them
#: instead of scanning the table.
_NOT_NULL_CHECKS_SQL = """
SELECT c.relname, a.attname
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
WHERE con.contype = 'c' AND con.convalidated AND cardinality(con.conkey) = 1
  AND pg_get_constraintdef(con.oid) ~* ('^CHECK \\(\\(?"?' || a.attname || '"? IS NOT NULL\\)?\\)$')
"""


# --- Results ----------------------------------------------------------------


@dataclass
class MigrationStep:
    """
    One migration of a run: applied, or for a dry run, planned.

    :param statements:
        Every statement, in order: what ran (when ``verbose``) or what would
        run (dry run, with each step's header). Empty otherwise.
    :param duration_ms:
        How long it took; ``None`` in a dry run.
    :param steps:
        How many steps its plan has.
    :param resumed_at:
        The step a run resumed at, after an interrupted run; else ``None``.
    :param retries:
        Lock timeouts retried, over all its steps.
    """

    app_name: str
    migration_id: str
    description: str
    statements: list[str] = field(default_factory=list)
    duration_ms: float | None = None
    steps: int = 0
    resumed_at: int | None = None
    retries: int = 0

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
    backwards: bool = False

    @property
    def applied(self) -> list[str]:
        """``app:ID`` of each migration applied (none in a dry run)."""
        return [] if self.dry_run else [step.name for step in self.migrations]

    @property
    def sql(self) -> str:
        """The statements as one SQL script, each migration under a comment."""
        lines = [terminated(statement) for statement in self.preamble]
        for step in self.migrations:
            lines.append(f"-- {step.name}: {step.description}".rstrip(": "))
            lines.extend(terminated(statement) for statement in step.statements)
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
    :param steps_done:
        For a pending migration interrupted between steps, the steps done.
    """

    app_name: str
    migration_id: str
    description: str
    applied_at: datetime | None
    checksum_matches: bool | None
    has_file: bool = True
    steps_done: tuple[int, ...] = ()

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


# --- Planning -----------------------------------------------------------------


async def migration_sql(
    engine: PostgresEngine, file: MigrationFile, backwards: bool = False
) -> tuple[list[str] | None, Any]:
    """
    The SQL of ``file`` in the order Piccolo runs it (raw steps first), and
    its manager. ``None`` for the SQL when a raw Python step keeps its SQL
    out of a module-level ``FORWARDS_SQL`` (``BACKWARDS_SQL``) list.
    """
    manager = await file.module.forwards()
    if not isinstance(manager, MigrationManager) or manager.fake:
        return [], manager
    raw_steps, listed = (
        (manager.raw_backwards, "BACKWARDS_SQL") if backwards else (manager.raw, "FORWARDS_SQL")
    )
    statements: list[str] = []
    if raw_steps:
        raw = getattr(file.module, listed, None)
        if raw is None:
            return None, manager
        statements = [str(statement) for statement in raw]
    generated = await migration_manager_sql(engine, manager, backwards=backwards)
    return statements + generated, manager


async def plan_files(
    engine: PostgresEngine, files: list[MigrationFile], catalog: Catalog, backwards: bool = False
) -> list[MigrationPlan]:
    """
    The plan of each file, in order, each against the catalog the ones
    before it leave (a dry run sees what a real run will do). ``backwards``:
    the plans that reverse them (``files`` newest first).
    """
    plans = []
    for file in files:
        statements, manager = await migration_sql(engine, file, backwards)
        atomic = not isinstance(manager, MigrationManager) or manager.wrap_in_transaction
        if statements is None:
            manager = await file.module.forwards()  # a fresh one, to run for real
        plan = plan_migration(
            file,
            statements,
            catalog,
            acknowledgements(file.module),
            atomic=atomic,
            opaque=manager if statements is None else None,
            backwards=backwards,
        )
        plans.append(plan)
        catalog = catalog.after(plan)
    return plans


def refuse(plans: list[MigrationPlan]) -> None:
    """Raise :class:`MigrationRefused` when any plan holds an unacknowledged operation."""
    refused = [(plan, refusal) for plan in plans for refusal in plan.refusals]
    if not refused:
        return
    lines = [
        f"refused before anything ran (nothing changed): {len(refused)} unsafe "
        "operation(s) on tables that already exist:"
    ]
    for plan, refusal in refused:
        lines.append(f"- {plan.file.name} ({plan.file.path.name}): {refusal.describe()}")
    raise MigrationRefused(
        "\n".join(lines),
        operations=[f"{plan.file.name}: {refusal.key}" for plan, refusal in refused],
    )


async def read_catalog(connection: Any) -> Catalog:
    """The tables (and validated NOT NULL checks) of the database."""
    tables = frozenset(row["relname"] for row in await connection.fetch(_CATALOG_SQL))
    checks = frozenset(
        (row["relname"], row["attname"]) for row in await connection.fetch(_NOT_NULL_CHECKS_SQL)
    )
    return Catalog(tables, checks)


# --- Connections and the advisory lock ----------------------------------------


def _piccolo_conf_engine() -> PostgresEngine:
    return get_database().engine


async def _connect(engine: PostgresEngine) -> Any:
    """A connection of the runner's own, outside any pool."""
    url = get_database().url
    try:
        return await engine.get_new_connection()
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        raise DatabaseUnavailable(describe_connection_error(error, url)) from error


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


# --- Running ------------------------------------------------------------------


def _describe_migration_error(error: BaseException, settings: Settings) -> str:
    if isinstance(error, MigrationError):
        return str(error)
    if isinstance(error, asyncpg.LockNotAvailableError):
        return (
            f"{error}: a table it changes stayed locked by other sessions for longer "
            f"than MIGRATION_LOCK_TIMEOUT ({settings.migration_lock_timeout:g} s)"
        )
    if isinstance(error, asyncpg.QueryCanceledError):
        return (
            f"{error}: a statement ran longer than MIGRATION_STATEMENT_TIMEOUT "
            f"({settings.migration_statement_timeout:g} s); raise it for this migration"
        )
    translated = translate_error(error)
    return str(translated) if translated is not None else f"{type(error).__name__}: {error}"


async def _record_stock_checksums(
    connection: Any, files: list[MigrationFile], state: LedgerState
) -> None:
    for file in files:
        if file.key not in state.applied:
            continue
        recorded = state.checksums.get(file.key)
        if recorded is None:
            # Applied by stock Piccolo: trust the file as it is now.
            sql, args = checksum_statement(file)
            await connection.execute(sql, *args)
            logger.info("recorded the checksum of %s, applied earlier", file.name)
        elif recorded != file.checksum():
            logger.warning(
                "applied migration %s (%s) changed since it ran; piccolo conference "
                "verify fails until it is restored",
                file.name,
                file.path,
            )


async def _apply(
    engine: PostgresEngine,
    connection: Any,
    files: list[MigrationFile],
    target: str | None,
    settings: Settings,
    verbose: bool,
    backwards: bool = False,
) -> list[MigrationStep]:
    for statement in ledger_setup():
        await connection.execute(statement)
    state = await read_ledger(connection)
    await _record_stock_checksums(connection, files, state)
    if backwards:
        assert target is not None
        pending = reversible(files, state.applied, target)
    else:
        pending = selected(files, state.applied, target)
    # Every plan first: a refused operation anywhere stops the run before
    # anything of it runs.
    plans = await plan_files(engine, pending, await read_catalog(connection), backwards)
    refuse(plans)
    if not plans:
        return []
    # Looks up who blocks a step while it waits for a lock.
    monitor = await _connect(engine)
    try:
        executor = Executor(settings, connection, monitor, engine, verbose)
        results: list[MigrationStep] = []
        for plan in plans:
            file = plan.file
            started = time.perf_counter()
            done = state.steps.get(file.key, {})
            try:
                outcome = await executor.run(plan, done)
            except Exception as error:
                results_names = [step.name for step in results]
                if isinstance(error, LockBudgetExhausted | MigrationError):
                    message = f"migration {file.name} ({file.path.name}) stopped: {error}"
                else:
                    message = (
                        f"migration {file.name} ({file.path.name}) failed and was rolled back, "
                        f"with its ledger row: {_describe_migration_error(error, settings)}"
                    )
                    if len(plan.steps) > 1:
                        message += (
                            " (the steps of it done before are recorded; the next run "
                            "resumes after them)"
                        )
                raise MigrationFailed(
                    message, migration=file.name, applied=results_names
                ) from error
            step = MigrationStep(
                file.app_name,
                file.migration_id,
                file.description,
                statements=outcome.statements,
                duration_ms=(time.perf_counter() - started) * 1000,
                steps=len(plan.steps),
                resumed_at=outcome.resumed_at,
                retries=sum(max(0, s.attempts - 1) for s in outcome.steps),
            )
            logger.info(
                "applied %s (%s) in %.0f ms, %d step(s)%s",
                file.name,
                file.description,
                step.duration_ms or 0,
                step.steps,
                f", {step.retries} lock retries" if step.retries else "",
            )
            results.append(step)
        return results
    finally:
        await monitor.close()


async def _dry_run(
    engine: PostgresEngine,
    connection: Any,
    files: list[MigrationFile],
    target: str | None,
    settings: Settings,
    backwards: bool = False,
) -> tuple[list[str], list[MigrationStep]]:
    """What :func:`_apply` would send, statement by statement, without sending it."""
    state = await read_ledger(connection)
    preamble = [] if await ledger_exists(connection) else ledger_setup()
    if backwards:
        assert target is not None
        chosen = reversible(files, state.applied, target)
    else:
        chosen = selected(files, state.applied, target)
    plans = await plan_files(engine, chosen, await read_catalog(connection), backwards)
    refuse(plans)
    return preamble, describe_plans(plans, settings, state)


def describe_plans(
    plans: list[MigrationPlan], settings: Settings, state: LedgerState | None = None
) -> list[MigrationStep]:
    """The dry run of ``plans``: each migration with its steps' headers and SQL."""
    executor = Executor(settings)
    steps = []
    for plan in plans:
        file = plan.file
        done = state.steps.get(file.key, {}) if state else {}
        steps.append(
            MigrationStep(
                file.app_name,
                file.migration_id,
                file.description,
                statements=executor.render_plan(plan, done),
                steps=len(plan.steps),
            )
        )
    return steps


async def run_migrations(
    dry_run: bool = False,
    verbose: bool = False,
    target: str | None = None,
    *,
    backwards: bool = False,
    settings: Settings | None = None,
) -> MigrationRunResult:
    """
    Apply the pending migrations of every registered app, in Piccolo's
    order, one process at a time, each step non-blocking or refused (see
    :mod:`conference.migrations`).

    Raises :class:`~conference.errors.MigrationRefused` (nothing ran) when a
    migration holds an unsafe operation it does not acknowledge,
    :class:`~conference.errors.MigrationLockTimeout` when another process
    keeps migrating longer than ``MIGRATION_LOCK_WAIT``, and
    :class:`~conference.errors.MigrationFailed` when a migration fails (its
    failed step is rolled back; earlier migrations, and earlier steps of it,
    stay and the next run resumes after them).

    :param dry_run:
        Change nothing (not even take the lock); return every statement
        that would run, step by step, with the lock and retry policy of each.
    :param verbose:
        Keep every statement that ran in the result and log each at INFO.
    :param target:
        Stop after this migration (``ID`` or ``app:ID``), in apply order.
    :param backwards:
        Reverse the applied migrations from ``target`` (required) on, newest
        first, with the same non-blocking steps and lock retries; dropping
        what they added is not refused (it is what a reversal does). Each
        ledger row goes when its migration's last step is done.
    :param settings:
        The timeouts, the retry budget and the lock wait; default
        :func:`get_settings`.
    """
    settings = settings or get_settings()
    engine = _piccolo_conf_engine()
    files = migration_files()
    if backwards and not target:
        raise MigrationError(
            "reversing needs a target: the oldest migration to reverse (--target=app:ID)"
        )
    if target:
        find_migration(files, target)  # an unknown target fails before connecting
    started = time.perf_counter()
    connection = await _connect(engine)
    try:
        await connection.execute(f"SET application_name = '{APPLICATION_NAME}'")
        await connection.execute(
            f"SET client_connection_check_interval = '{CLIENT_CHECK_INTERVAL}'"
        )
        if dry_run:
            preamble, steps = await _dry_run(engine, connection, files, target, settings, backwards)
            lock_wait = 0.0
        else:
            preamble = []
            lock_wait = await _acquire_lock(connection, settings.migration_lock_wait)
            steps = await _apply(engine, connection, files, target, settings, verbose, backwards)
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
        backwards=backwards,
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
    connection = await _connect(_piccolo_conf_engine())
    try:
        state = await read_ledger(connection)
    finally:
        await connection.close()
    return [file.name for file in migration_files() if file.key not in state.applied]


async def migration_status() -> list[MigrationState]:
    """Every migration with its state, plus ledger rows whose file is missing."""
    return await _migration_states(migration_files())


async def _migration_states(files: list[MigrationFile]) -> list[MigrationState]:
    connection = await _connect(_piccolo_conf_engine())
    try:
        state = await read_ledger(connection)
    finally:
        await connection.close()
    states = []
    for file in files:
        recorded = state.checksums.get(file.key)
        ran = state.applied.get(file.key)
        states.append(
            MigrationState(
                app_name=file.app_name,
                migration_id=file.migration_id,
                description=file.description,
                applied_at=ran,
                checksum_matches=(
                    None if ran is None or recorded is None else recorded == file.checksum()
                ),
                steps_done=tuple(sorted(state.steps.get(file.key, {}).values())),
            )
        )
    known = {file.key for file in files}
    for (app_name, migration_id), ran in sorted(state.applied.items()):
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
    for state in await _migration_states(files):
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
        with quiet_stdout():
            groups = await AutoMigrationManager().get_alter_statements(config)
        statements = [statement for group in groups for statement in group.statements]
        if statements:
            result.model_changes[config.app_name] = statements
    return result
