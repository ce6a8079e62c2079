"""
The executor: runs a :class:`~conference.migrations.planner.MigrationPlan`
step by step, or prints it — one sequence, so the dry run shows exactly
what a real run sends.

How a step takes its locks: under a short ``lock_timeout``
(``MIGRATION_LOCK_TIMEOUT``, 150 ms by default). When that runs out the
step's transaction rolls back — so writers queued behind the step's lock
request are released after at most one attempt — the sessions blocking it
are logged (pid, state, how long their transaction has been open, the start
of their query: ``pg_blocking_pids`` and ``pg_stat_activity``), and the step
is tried again after an exponential backoff with jitter, until
``MIGRATION_LOCK_BUDGET`` runs out. Steps whose lock conflicts with no read
or write (``CONCURRENTLY``, ``VALIDATE CONSTRAINT``) may wait the whole
budget in one attempt: their waiting stalls nobody.

Step-level state, so that a run interrupted between steps resumes safely:

- a transactional step commits a row in :data:`~conference.migrations.ledger.STEP_TABLE`
  with its changes (both or neither);
- a concurrent step records its row after it: if the runner dies in
  between, the next run finds the index already valid and skips the build,
  or finds it ``INVALID`` (a build killed halfway), drops it concurrently
  and builds it again;
- the last step commits the ledger row and the checksum, and deletes the
  step rows, in one transaction. A migration is in ``migration`` only when
  every step is done.
- a step row holds the step's key, a hash of its SQL: a resumed run whose
  plan lacks a recorded step (the file changed meanwhile) stops and says so
  instead of guessing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from piccolo.engine.postgres import PostgresEngine

from conference._compat import run_migration_manager
from conference.errors import MigrationError
from conference.settings import Settings

from .ledger import record_statements, step_statement, unrecord_statements
from .planner import MigrationPlan, Step

logger = logging.getLogger(__name__)

#: First backoff after a lock timeout, and the longest one (seconds); each
#: is multiplied by a random factor in [0.5, 1.5) so that retries of
#: several runners do not line up.
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0

_BLOCKERS_SQL = """
SELECT a.pid, a.state, a.application_name,
       extract(epoch FROM now() - a.xact_start) AS xact_seconds,
       extract(epoch FROM now() - a.query_start) AS query_seconds,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80) AS query
FROM pg_stat_activity a
WHERE a.pid = ANY(pg_blocking_pids($1))
ORDER BY a.xact_start
"""

_HOLDERS_SQL = """
SELECT a.pid, a.state, a.application_name,
       extract(epoch FROM now() - a.xact_start) AS xact_seconds,
       extract(epoch FROM now() - a.query_start) AS query_seconds,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80) AS query
FROM pg_stat_activity a
WHERE a.pid <> pg_backend_pid() AND a.pid IN (
    SELECT l.pid FROM pg_locks l
    WHERE l.granted AND l.relation = ANY(
        SELECT to_regclass(name)::oid FROM unnest($1::text[]) AS name
    )
)
ORDER BY a.xact_start
"""


class LockBudgetExhausted(MigrationError):
    """A step kept timing out on its locks until ``MIGRATION_LOCK_BUDGET`` ran out."""


@dataclass
class StepOutcome:
    """What happened to one step: ran (after how many attempts) or skipped."""

    number: int
    kind: str
    attempts: int = 0
    skipped: str = ""
    duration_ms: float = 0.0


@dataclass
class PlanOutcome:
    """What the executor did with one migration's plan."""

    steps: list[StepOutcome] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    resumed_at: int | None = None


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def render(sql: str, args: Sequence[Any]) -> str:
    """``sql`` with ``$n`` replaced by quoted ``args``: for display only."""
    for index in range(len(args), 0, -1):
        sql = sql.replace(f"${index}", _literal(args[index - 1]))
    return sql


def terminated(statement: str) -> str:
    """``statement;`` (comments and already-terminated statements as they are)."""
    if statement.startswith("--") or statement.rstrip().endswith(";"):
        return statement
    return statement + ";"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _lock_timeout(step: Step, settings: Settings) -> float:
    if step.waits_without_blocking:
        return settings.migration_lock_budget
    return settings.migration_lock_timeout


def _describe_blockers(rows: Sequence[Any]) -> str:
    if not rows:
        return "no session (it had let go by the time we looked)"
    parts = []
    for row in rows:
        opened = row["xact_seconds"]
        started = row["query_seconds"]
        parts.append(
            f"pid {row['pid']} ({row['state'] or 'unknown state'}"
            + (f", {row['application_name']}" if row["application_name"] else "")
            + (f", transaction open {float(opened):.1f} s" if opened is not None else "")
            + (f", query started {float(started):.1f} s ago" if started is not None else "")
            + f": {row['query']!r})"
        )
    return "; ".join(parts)


class Executor:
    """
    Runs plans on the runner's connection, or prints them.

    :param connection: the runner's own asyncpg connection (it holds the
        advisory lock); ``None`` to print only.
    :param monitor: a second connection that looks up, while a step waits
        for a lock, who blocks it; optional.
    """

    def __init__(
        self,
        settings: Settings,
        connection: Any = None,
        monitor: Any = None,
        engine: PostgresEngine | None = None,
        verbose: bool = False,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.monitor = monitor
        self.engine = engine
        self.level = logging.INFO if verbose else logging.DEBUG
        self.verbose = verbose
        self._blockers: list[Any] = []

    # --- the sequence, once --------------------------------------------------

    def step_sql(self, plan: MigrationPlan, step: Step) -> list[tuple[str, tuple[Any, ...]]]:
        """
        Every statement of ``step`` in the order a run sends it, with its
        arguments: the dry run renders these, the run executes them.
        """
        settings = self.settings
        timeout = _ms(_lock_timeout(step, settings))
        statement_timeout = (
            _ms(settings.migration_statement_timeout) if settings.migration_statement_timeout else 0
        )
        body: list[tuple[str, tuple[Any, ...]]] = []
        for statement in step.statements:
            if statement.squawk_ignore:
                body.append((f"-- squawk-ignore {', '.join(statement.squawk_ignore)}", ()))
            body.append((statement.sql, ()))
        if step.records_ledger:
            ledger = (unrecord_statements if plan.backwards else record_statements)(plan.file)
        else:
            ledger = [step_statement(plan.file, step.key, step.number)]
        if step.transactional:
            return [
                ("BEGIN", ()),
                (f"SET LOCAL lock_timeout = '{timeout}ms'", ()),
                (f"SET LOCAL statement_timeout = '{statement_timeout}ms'", ()),
                *body,
                *ledger,
                ("COMMIT", ()),
            ]
        return [
            (f"SET lock_timeout = '{timeout}ms'", ()),
            (f"SET statement_timeout = '{statement_timeout}ms'", ()),
            # One process builds: parallel workers would take the CPU the
            # traffic needs, for a build that blocks nobody anyway.
            ("SET max_parallel_maintenance_workers = 0", ()),
            *body,
            ("RESET lock_timeout", ()),
            ("RESET statement_timeout", ()),
            ("RESET max_parallel_maintenance_workers", ()),
            ("BEGIN", ()),
            *ledger,
            ("COMMIT", ()),
        ]

    def header(self, plan: MigrationPlan, step: Step) -> str:
        """The comment that introduces a step in the dry run."""
        total = len(plan.steps)
        if step.opaque is not None:
            where = "one transaction, unanalysed"
        elif not step.transactional:
            where = "outside a transaction (CONCURRENTLY)"
        elif not step.statements:
            where = "records the migration"
        else:
            where = "one transaction"
        locks = sorted({statement.lock for statement in step.statements})
        if step.waits_without_blocking:
            budget = self.settings.migration_lock_budget
            retry = f"waits up to {budget:g} s without blocking reads or writes"
        elif step.statements:
            retry = (
                f"lock_timeout {_ms(self.settings.migration_lock_timeout)} ms per attempt, retried "
                f"with backoff and jitter for up to {self.settings.migration_lock_budget:g} s"
            )
        else:
            retry = "no schema lock"
        lines = [f"-- step {step.number}/{total}: {where}; {retry}"]
        lines.extend(f"--   lock: {lock}" for lock in locks)
        lines.extend(
            f"--   {statement.safety}" for statement in step.statements if statement.safety
        )
        if step.builds_index:
            lines.append(
                f"--   an INVALID {step.builds_index} left by a killed build is dropped "
                "(DROP INDEX CONCURRENTLY) and built again; a valid one skips this step"
            )
        return "\n".join(lines)

    def render_plan(self, plan: MigrationPlan, done: dict[str, int] | None = None) -> list[str]:
        """The dry run of one migration: each step's header and SQL."""
        lines = []
        for step in plan.steps:
            if done and step.key in done:
                lines.append(
                    f"-- step {step.number}/{len(plan.steps)}: done by an earlier run, skipped"
                )
                continue
            lines.append(self.header(plan, step))
            lines.extend(terminated(render(sql, args)) for sql, args in self.step_sql(plan, step))
        return lines

    # --- running -------------------------------------------------------------

    def _note(self, outcome: PlanOutcome, sql: str, args: tuple[Any, ...] = ()) -> None:
        text = render(sql, args)
        logger.log(self.level, "%s", text)
        if self.verbose:
            outcome.statements.append(text)

    async def run(self, plan: MigrationPlan, done: dict[str, int]) -> PlanOutcome:
        """
        Run the steps of ``plan`` not in ``done`` (the keys of the steps an
        interrupted run finished), in order.
        """
        outcome = PlanOutcome()
        stale = sorted(number for key, number in done.items() if key not in plan.step_keys)
        if stale:
            raise MigrationError(
                f"migration {plan.file.name} was interrupted after step(s) {stale} of a "
                f"plan it no longer has: its file ({plan.file.path}) changed since. Restore "
                "it and run migrate again to finish it"
            )
        if done:
            remaining = [step.number for step in plan.steps if step.key not in done]
            outcome.resumed_at = min(remaining, default=None)
            logger.warning(
                "resuming %s at step %s/%d: %d step(s) were done by an interrupted run",
                plan.file.name,
                outcome.resumed_at,
                len(plan.steps),
                len(done),
            )
        for step in plan.steps:
            if step.key in done:
                outcome.steps.append(StepOutcome(step.number, step.kind, skipped="done earlier"))
                continue
            outcome.steps.append(await self._run_step(plan, step, outcome))
        return outcome

    async def _run_step(self, plan: MigrationPlan, step: Step, outcome: PlanOutcome) -> StepOutcome:
        result = StepOutcome(step.number, step.kind)
        started = time.monotonic()
        deadline = started + self.settings.migration_lock_budget
        if step.builds_index and await self._index_state(step.builds_index) == "valid":
            # Built by an interrupted run that died before recording it.
            await self._record_only(plan, step, outcome)
            result.skipped = f"index {step.builds_index} already valid"
            return result
        while True:
            result.attempts += 1
            try:
                await self._attempt(plan, step, outcome)
                break
            except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as error:
                blockers = self._blockers or await self._holders(step.tables)
                remaining = deadline - time.monotonic()
                tables = ", ".join(step.tables) or "its tables"
                if remaining <= 0:
                    raise LockBudgetExhausted(
                        f"step {step.number}/{len(plan.steps)} of {plan.file.name} could not "
                        f"lock {tables} in {result.attempts} attempt(s) over "
                        f"MIGRATION_LOCK_BUDGET ({self.settings.migration_lock_budget:g} s); "
                        f"blocked by {_describe_blockers(blockers)}. End that transaction "
                        "(SELECT pg_terminate_backend(pid)) or run migrate again later: "
                        "the steps done so far are kept"
                    ) from error
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (result.attempts - 1))
                delay = min(remaining, delay * random.uniform(0.5, 1.5))
                logger.warning(
                    "%s step %d/%d: %s on %s (attempt %d); blocked by %s; retrying in %.2f s",
                    plan.file.name,
                    step.number,
                    len(plan.steps),
                    "lock timeout"
                    if isinstance(error, asyncpg.LockNotAvailableError)
                    else "deadlock",
                    tables,
                    result.attempts,
                    _describe_blockers(blockers),
                    delay,
                )
                await asyncio.sleep(delay)
        result.duration_ms = (time.monotonic() - started) * 1000
        return result

    async def _watch(self, pid: int, after: float) -> None:
        """While a step waits for a lock, note who blocks it (on the monitor)."""
        await asyncio.sleep(after)
        if self.monitor is not None:
            try:
                self._blockers = list(await self.monitor.fetch(_BLOCKERS_SQL, pid))
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                self._blockers = []

    async def _attempt(self, plan: MigrationPlan, step: Step, outcome: PlanOutcome) -> None:
        self._blockers = []
        watcher = None
        if self.monitor is not None and not step.waits_without_blocking:
            pid = self.connection.get_server_pid()
            watcher = asyncio.ensure_future(
                self._watch(pid, self.settings.migration_lock_timeout * 0.6)
            )
        try:
            if step.transactional:
                await self._transactional(plan, step, outcome)
            else:
                await self._concurrent(plan, step, outcome)
        finally:
            if watcher is not None:
                if not watcher.done():
                    # Asleep: cancel. Mid-query: let it finish (quick).
                    watcher.cancel()
                try:
                    await watcher
                except asyncio.CancelledError:
                    pass

    async def _transactional(self, plan: MigrationPlan, step: Step, outcome: PlanOutcome) -> None:
        sequence = self.step_sql(plan, step)
        async with self.connection.transaction():
            self._note(outcome, "BEGIN")
            for sql, args in sequence[1:-1]:
                if sql.startswith("--"):
                    continue
                self._note(outcome, sql, args)
                await self.connection.execute(sql, *args)
            if step.opaque is not None:
                assert self.engine is not None
                printed = await run_migration_manager(
                    self.engine, self.connection, step.opaque, backwards=plan.backwards
                )
                if printed:
                    logger.debug("piccolo: %s", printed)
        self._note(outcome, "COMMIT")

    async def _concurrent(self, plan: MigrationPlan, step: Step, outcome: PlanOutcome) -> None:
        if step.builds_index and await self._index_state(step.builds_index) == "invalid":
            logger.warning(
                "%s step %d: index %s is INVALID (a build was interrupted); dropping it "
                "and building it again",
                plan.file.name,
                step.number,
                step.builds_index,
            )
            drop = f'DROP INDEX CONCURRENTLY IF EXISTS "{step.builds_index}"'
            self._note(outcome, drop)
            await self.connection.execute(drop)
        sequence = self.step_sql(plan, step)
        split = next(i for i, (sql, _) in enumerate(sequence) if sql == "BEGIN")
        try:
            for sql, args in sequence[:split]:
                if sql.startswith("--"):
                    continue
                self._note(outcome, sql, args)
                await self.connection.execute(sql, *args)
        finally:
            await self.connection.execute("RESET lock_timeout")
            await self.connection.execute("RESET statement_timeout")
            await self.connection.execute("RESET max_parallel_maintenance_workers")
        async with self.connection.transaction():
            for sql, args in sequence[split + 1 : -1]:
                self._note(outcome, sql, args)
                await self.connection.execute(sql, *args)

    async def _record_only(self, plan: MigrationPlan, step: Step, outcome: PlanOutcome) -> None:
        sequence = self.step_sql(plan, step)
        split = next(i for i, (sql, _) in enumerate(sequence) if sql == "BEGIN")
        async with self.connection.transaction():
            for sql, args in sequence[split + 1 : -1]:
                self._note(outcome, sql, args)
                await self.connection.execute(sql, *args)

    async def _index_state(self, name: str) -> str:
        """``missing``, ``valid`` or ``invalid``."""
        valid = await self.connection.fetchval(
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
            f'"{name}"',
        )
        if valid is None:
            return "missing"
        return "valid" if valid else "invalid"

    async def _holders(self, tables: Sequence[str]) -> list[Any]:
        """Sessions holding a lock on ``tables`` (when the monitor saw nothing)."""
        try:
            return list(await self.connection.fetch(_HOLDERS_SQL, [f'"{t}"' for t in tables]))
        except (asyncpg.PostgresError, asyncpg.InterfaceError):
            return []
