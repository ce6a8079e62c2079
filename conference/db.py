"""
The client API of ``conference``: the connection pool, queries,
transactions and a health check, on the Piccolo engine the ORM uses.

Example::

    from conference import db

    await db.start_pool()
    async with db.transaction():  # ORM calls inside take part
        meeting = Meeting(room_name="standup")
        await meeting.save()
        await db.query(
            "INSERT INTO participants (meeting_id, identity) VALUES ($1, $2)", meeting.id, "alice"
        )
    health = await db.check_connection(deadline=2.0)
    await db.close_pool(timeout=10)

The module-level functions act on the engine of ``piccolo_conf`` (``DB``),
the one every table uses. :class:`Database` does the same for any other
Piccolo ``PostgresEngine``.

Code that needs the connection itself (``COPY``, prepared statements)
takes it from :meth:`Database.connection`, and wraps its work in
:meth:`Database.translate_errors` to raise conference exceptions::

    database = database or db.get_database()
    with database.translate_errors():
        async with database.connection() as connection:
            await connection.copy_records_to_table("analytics", records=rows)

Every function of ``conference`` that reaches the database takes the same
optional ``database`` argument (default: :func:`get_database`).

**The pool.** A :class:`~conference.engine.ConferenceEngine` owns its pool
(:class:`~conference.pool.ConferencePool`): a caller waits at most
``DATABASE_POOL_ACQUIRE_TIMEOUT`` for a connection, then gets
:class:`~conference.errors.DatabaseBusy`; a connection idle for a while
proves it is alive before anyone gets it, so a server restart fails no
statement and never sends one twice. Any database failure during an
outage is a :class:`~conference.errors.DatabaseUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    suppress,
)
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg.exceptions import TargetServerAttributeNotMatched
from piccolo.conf.apps import DEFAULT_MODULE_NAME, ENGINE_VAR, ENVIRONMENT_VARIABLE
from piccolo.engine.finder import engine_finder
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction

from conference.engine import check_server_version, describe_connection_error, redact_url
from conference.errors import (
    CheckViolation,
    ConferenceError,
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailable,
    ForeignKeyViolation,
    IntegrityViolation,
    NotNullViolation,
    QueryTimeout,
    TransactionConflict,
    UniqueViolation,
)
from conference.migrations.ledger import pending_on
from conference.pool import is_connection_lost
from conference.settings import Settings, get_settings

__all__ = [
    "Database",
    "HealthResult",
    "check_connection",
    "close_pool",
    "connection",
    "get_database",
    "is_connection_lost",
    "query",
    "start_pool",
    "transaction",
    "translate_error",
    "translate_errors",
]

logger = logging.getLogger(__name__)

#: Longest statement text written to the log.
_LOGGED_STATEMENT_LENGTH = 500

# The health probe: the version, and which server answered (the socket
# directory needs pg_read_all_settings; without it, only the port).
_PROBE_SQL = """
SELECT current_setting('server_version') AS version,
       CASE WHEN inet_server_addr() IS NOT NULL
            THEN host(inet_server_addr()) || ':' || inet_server_port()
            WHEN pg_has_role('pg_read_all_settings', 'USAGE')
            THEN split_part(current_setting('unix_socket_directories'), ',', 1)
                 || ':' || current_setting('port')
            ELSE 'Unix socket, port ' || current_setting('port')
       END AS host
"""


# --- Errors -----------------------------------------------------------------


def _key_columns(detail: str | None) -> str | None:
    """``egress_id`` from ``Key (egress_id)=(EG_1) already exists``: names, no values."""
    if detail and detail.startswith("Key (") and ")=(" in detail:
        return detail[len("Key (") : detail.index(")=(")]
    return None


def translate_error(error: BaseException, url: str | None = None) -> ConferenceError | None:
    """
    The :class:`~conference.errors.ConferenceError` that describes a
    database ``error`` (an asyncpg or socket exception), or ``None`` when
    ``error`` is not a database error. Constraint violations name the
    constraint, table and columns, never the row's values.

    :func:`query` and :func:`transaction` raise these already; call this
    for ORM calls made outside :func:`transaction`::

        try:
            await Recording(meeting_id=meeting.id, egress_id="EG_1").save()
        except asyncpg.PostgresError as error:
            raise translate_error(error) or error from error

    :param url:
        The database URL, named (without its password) in connection errors.
    """
    if isinstance(error, ConferenceError):
        return None
    where = redact_url(url) if url else "the database"
    if isinstance(error, TargetServerAttributeNotMatched):
        # A multi-host DATABASE_URL whose hosts all answer as standbys: the
        # primary is gone and no standby has been promoted yet. (Checked
        # first: it is an InternalClientError, which counts as a lost
        # connection below.)
        return DatabaseUnavailable(
            f"no host of {where} accepts writes ({error}); a failover is probably under "
            "way, retry once a standby has been promoted"
        )
    if is_connection_lost(error):
        if isinstance(error, asyncpg.InterfaceError) and "pool" in str(error):
            return DatabaseUnavailable(
                "the connection pool is closed or closing (conference.db.close_pool() was "
                "called); start it again with conference.db.start_pool()"
            )
        return DatabaseUnavailable(
            f"lost the connection to PostgreSQL at {where} ({type(error).__name__}: "
            f"{error}); a statement in flight may or may not have been applied. Is the "
            "server running?"
        )
    if isinstance(error, (OSError, TimeoutError)):
        return DatabaseUnavailable(describe_connection_error(error, url or "the database"))
    if not isinstance(error, asyncpg.PostgresError):
        return None

    sqlstate = getattr(error, "sqlstate", None)
    constraint = getattr(error, "constraint_name", None)
    table = getattr(error, "table_name", None)
    column = getattr(error, "column_name", None)
    detail = getattr(error, "detail", None)
    columns = _key_columns(detail)
    on = f" on {table}" + (f" ({columns})" if columns else "") if table else ""
    facts = {"sqlstate": sqlstate, "constraint": constraint, "table": table, "column": column}

    if isinstance(error, asyncpg.ReadOnlySQLTransactionError):
        return DatabaseUnavailable(
            f"the server of {where} is read-only ({error}): a standby, or a former primary; "
            "point DATABASE_URL at the primary, or list every host with "
            "target_session_attrs=read-write"
        )

    if isinstance(error, asyncpg.UniqueViolationError):
        return UniqueViolation(
            f'duplicate value: unique constraint "{constraint}"{on} already has a row '
            "with this value; use another value or update the existing row",
            **facts,
        )
    if isinstance(error, asyncpg.ForeignKeyViolationError):
        if detail and "still referenced" in detail:
            referencing = detail.rsplit("from table ", 1)[-1].strip('".')
            reason = (
                f"the row is still referenced from {referencing}; delete or re-point "
                "those rows first"
            )
        else:
            referenced = detail.rsplit("in table ", 1)[-1].strip('".') if detail else "?"
            reason = (
                f"the referenced row does not exist in {referenced}; create it first "
                "or fix the reference"
            )
        return ForeignKeyViolation(f'foreign key "{constraint}"{on}: {reason}', **facts)
    if isinstance(error, asyncpg.CheckViolationError):
        return CheckViolation(
            f'check constraint "{constraint}"{on} rejected the row; fix the values '
            "that rule checks",
            **facts,
        )
    if isinstance(error, asyncpg.NotNullViolationError):
        return NotNullViolation(
            f'column "{column}" of {table} needs a value (NOT NULL); set it', **facts
        )
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        name = f' "{constraint}"' if constraint else ""
        return IntegrityViolation(f"constraint{name}{on} rejected the row: {error}", **facts)
    if isinstance(error, (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError)):
        return QueryTimeout(
            f"{error} (SQLSTATE {sqlstate}); the statement was cancelled and changed "
            "nothing. A long transaction may hold a lock it needs, or the statement "
            "needs a higher statement_timeout",
            **facts,
        )
    if isinstance(error, (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)):
        return TransactionConflict(
            f"{error} (SQLSTATE {sqlstate}); the transaction was rolled back, run it again",
            **facts,
        )
    return DatabaseError(f"{error} (SQLSTATE {sqlstate})", **facts)


# --- Transactions -----------------------------------------------------------


class _Transaction(PostgresTransaction):
    """
    Piccolo's ``PostgresTransaction``, so that ORM queries find it through
    ``engine.current_transaction`` and run on its ``connection``, but one
    that keeps its own state (Piccolo's is private), always gives its
    connection back and resets that context variable, even when ``BEGIN``
    or ``ROLLBACK`` fails because the connection died (where Piccolo's
    would leak the connection and leave the variable set).
    """

    def __init__(self, engine: PostgresEngine) -> None:
        super().__init__(engine)
        self._finished = False
        self._token: Any = None
        self._pool: Any = None

    async def __aenter__(self) -> _Transaction:
        self._pool = self.engine.pool
        self.connection = await self.get_connection()
        self.transaction = self.connection.transaction()
        try:
            await self.begin()
        except BaseException:
            await self._give_back()
            raise
        self._token = self.engine.current_transaction.set(self)
        return self

    async def commit(self) -> None:
        """Commit now; the block's end then does nothing more."""
        await self.transaction.commit()
        self._finished = True

    async def rollback(self) -> None:
        """Roll back now; the block's end then does nothing more."""
        await self.transaction.rollback()
        self._finished = True

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            if exc is not None:
                if not self._finished:
                    try:
                        await self.rollback()
                    except Exception as error:  # the original error matters more
                        logger.debug("rollback failed: %s", error)
            elif not self._finished:
                await self.commit()
        finally:
            self.engine.current_transaction.reset(self._token)
            await self._give_back()
        return False

    async def _give_back(self) -> None:
        try:
            if self._pool is not None:
                await self._pool.release(self.connection)
            else:
                await self.connection.close()
        except Exception as error:  # a dead connection is cleaned up by asyncpg
            logger.debug("could not return a connection: %s", error)


# --- Health -----------------------------------------------------------------


@dataclass(frozen=True)
class HealthResult:
    """
    What :func:`check_connection` found.

    :param ok:
        The server answered and is PostgreSQL 18.1 or newer. Pending
        migrations do not make it false; check ``pending_migrations``.
    :param latency_ms:
        Round trip of a trivial query, in milliseconds.
    :param server_version:
        The server's ``server_version``, e.g. ``"18.1"``.
    :param pending_migrations:
        Migrations of the registered apps not applied yet, as ``"app:ID"``.
    :param error:
        Why ``ok`` is false, in one line.
    :param host:
        The server that answered, as ``address:port`` (its socket
        directory for a Unix socket): with a multi-host ``DATABASE_URL``,
        the one in use, which changes after a failover.
    """

    ok: bool
    latency_ms: float | None = None
    server_version: str | None = None
    pending_migrations: list[str] = field(default_factory=list)
    error: str | None = None
    host: str | None = None


# --- The API ----------------------------------------------------------------


def _one_line(sql: str) -> str:
    text = " ".join(sql.split())
    if len(text) > _LOGGED_STATEMENT_LENGTH:
        return text[: _LOGGED_STATEMENT_LENGTH - 3] + "..."
    return text


class Database:
    """
    Pool, queries, transactions and health of one Piccolo ``PostgresEngine``.

    The module-level functions use the engine of ``piccolo_conf``; build
    one of these for another engine::

        database = Database(ConferenceEngine(url=..., connect_timeout=5))
        await database.start_pool()

    :param engine:
        The engine; its ORM tables and this object share the pool and the
        transaction. A :class:`~conference.engine.ConferenceEngine` (what
        :func:`~conference.engine.create_engine` builds) brings the bounded
        wait and the liveness checks of :mod:`conference.pool`; another
        ``PostgresEngine`` gets asyncpg's plain pool.
    :param settings:
        Pool sizes and the slow-query threshold; default :func:`get_settings`.
    """

    def __init__(self, engine: PostgresEngine, settings: Settings | None = None) -> None:
        self.engine = engine
        self.settings = settings or get_settings()

    @property
    def url(self) -> str:
        """The database URL (with its password), as far as the engine knows it."""
        return str(getattr(self.engine, "url", None) or self.engine.config.get("dsn", ""))

    async def start_pool(self, *, max_size: int | None = None, min_size: int | None = None) -> None:
        """
        Open the engine's connection pool (``start_connection_pool``: for a
        :class:`~conference.engine.ConferenceEngine`, its
        :class:`~conference.pool.ConferencePool`), and a pool for each
        replica. Does nothing if it is open already.

        :param max_size:
            Most connections; default ``DATABASE_POOL_MAX_SIZE`` (20).
        :param min_size:
            Connections opened now and kept when idle; default
            ``DATABASE_POOL_MIN_SIZE`` (1).
        """
        if self.engine.pool is not None:
            return
        max_size = max_size if max_size is not None else self.settings.database_pool_max_size
        min_size = min_size if min_size is not None else self.settings.database_pool_min_size
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ConfigurationError(
                f"the pool needs 0 <= min_size <= max_size and max_size >= 1; got "
                f"min_size={min_size}, max_size={max_size} (DATABASE_POOL_MIN_SIZE, "
                "DATABASE_POOL_MAX_SIZE)"
            )
        try:
            await self.engine.start_connection_pool(min_size=min_size, max_size=max_size)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            raise DatabaseUnavailable(describe_connection_error(error, self.url)) from error
        logger.info(
            "connection pool started: %d to %d connections to %s",
            min_size,
            max_size,
            redact_url(self.url),
        )
        for replica in self.engine.extra_nodes.values():
            # Replicas connect on first use (min_size=0): one that is down
            # now must not keep the primary from serving.
            await Database(replica, self.settings).start_pool(max_size=max_size, min_size=0)

    async def close_pool(self, timeout: float = 10.0) -> bool:
        """
        Close the pool gracefully: new work is refused at once, work in
        flight may finish for up to ``timeout`` seconds, then whatever is
        still running is cut off. Returns whether everything finished in
        time. Does nothing (returns ``True``) without a pool.

        :param timeout:
            Seconds to wait for connections in use.
        """
        for replica in self.engine.extra_nodes.values():
            await Database(replica, self.settings).close_pool(timeout=timeout)
        pool = self.engine.pool
        if pool is None:
            return True
        in_use = pool.get_size() - pool.get_idle_size()
        if in_use:
            logger.info(
                "closing the connection pool: waiting up to %.1f s for %d connection(s) in use",
                timeout,
                in_use,
            )
        try:
            # On timeout wait_for cancels close(), and asyncpg then
            # terminates every connection.
            await asyncio.wait_for(pool.close(), timeout)
            graceful = True
        except TimeoutError:
            pool.terminate()
            logger.warning(
                "connection pool closed after %.1f s with work still running; it was cut off",
                timeout,
            )
            graceful = False
        finally:
            self.engine.pool = None
        if graceful:
            logger.info("connection pool closed")
        return graceful

    def connection(self, *, join_transaction: bool = True) -> _Connection:
        """
        ``async with database.connection() as connection:`` an asyncpg
        connection: the current :meth:`transaction`'s (unless
        ``join_transaction`` is false), else a pooled one, else (no pool
        started) a new one, closed afterwards. For work :meth:`query` cannot
        do (``COPY``, ``executemany``, prepared statements); wrap it in
        :meth:`translate_errors`.

        :param join_transaction:
            Whether to use the current transaction's connection. False for
            work that must not take part in it (a health probe).
        """
        return _Connection(self, join_transaction)

    def translate_errors(self) -> _TranslatedErrors:
        """
        ``with database.translate_errors():`` database errors raised inside
        leave as :class:`~conference.errors.ConferenceError` subclasses (see
        :func:`translate_error`); other exceptions pass unchanged.
        """
        return _TranslatedErrors(self)

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """
        Run one statement with positional parameters (``$1``, ``$2`` ...)
        and return its rows. Inside :meth:`transaction` it runs in that
        transaction; otherwise on a pooled connection (or a connection of
        its own when no pool is started).

        Each statement and its duration are logged at DEBUG on the logger
        ``conference.db``, statements slower than
        ``DATABASE_SLOW_QUERY_THRESHOLD`` at WARNING. Parameter values are
        never logged.

        Raises a :class:`~conference.errors.DatabaseError` subclass for
        errors of the statement, :class:`~conference.errors.DatabaseUnavailable`
        when the server cannot be reached, :class:`~conference.errors.DatabaseBusy`
        when no pooled connection is free within ``DATABASE_POOL_ACQUIRE_TIMEOUT``.
        """
        started = time.perf_counter()
        try:
            with _TranslatedErrors(self):
                transaction = self.engine.current_transaction.get()
                if transaction is not None:
                    rows = await transaction.connection.fetch(sql, *args)
                else:
                    async with _Connection(self, False) as connection:
                        rows = await connection.fetch(sql, *args)
        except ConferenceError:
            if logger.isEnabledFor(logging.DEBUG):
                elapsed = time.perf_counter() - started
                logger.debug("query failed after %.1f ms: %s", elapsed * 1000, _one_line(sql))
            raise
        elapsed = time.perf_counter() - started
        if elapsed >= self.settings.database_slow_query_threshold:
            logger.warning(
                "slow query: %.1f ms (DATABASE_SLOW_QUERY_THRESHOLD is %.1f ms): %s",
                elapsed * 1000,
                self.settings.database_slow_query_threshold * 1000,
                _one_line(sql),
            )
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug("query %.1f ms: %s", elapsed * 1000, _one_line(sql))
        return rows

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """
        ``async with database.transaction():`` commits when the block ends
        and rolls back when it raises. :meth:`query` and Piccolo ORM
        queries inside run in it. Nested, it is a savepoint: an error
        inside rolls back only the inner block (and propagates).

        Database errors leave it as :class:`~conference.errors.ConferenceError`
        subclasses (see :func:`translate_error`), ORM ones included.
        """
        current = self.engine.current_transaction.get()
        with self.translate_errors():
            if current is not None:
                savepoint = await current.savepoint()
                try:
                    yield current
                except BaseException:
                    with suppress(Exception):  # the connection may be gone
                        await savepoint.rollback_to()
                        await savepoint.release()
                    raise
                await savepoint.release()
            else:
                async with _Transaction(engine=self.engine) as transaction:
                    yield transaction

    async def check_connection(self, deadline: float = 2.0) -> HealthResult:
        """
        Ask the server for its version and the migration ledger. Returns
        within ``deadline`` seconds and never raises: problems are in
        :attr:`HealthResult.error`. Uses the pool when it is started (so a
        saturated pool reports unhealthy too).

        :param deadline:
            Seconds until the answer is due.
        """
        probe = asyncio.ensure_future(self._probe())
        try:
            done, _ = await asyncio.wait({probe}, timeout=deadline)
        except asyncio.CancelledError:
            probe.cancel()
            raise
        if probe in done:
            try:
                return probe.result()
            except Exception as error:  # _probe catches everything; belt and braces
                return HealthResult(ok=False, error=f"{type(error).__name__}: {error}")
        # Cancel but do not wait: a probe stuck in a socket call may take a
        # while to unwind, and the deadline is a promise.
        probe.cancel()
        probe.add_done_callback(_discard_result)
        return HealthResult(
            ok=False,
            error=f"no answer from {redact_url(self.url)} within {deadline:g} s",
        )

    async def _probe(self) -> HealthResult:
        version: str | None = None
        host: str | None = None
        try:
            async with self.connection(join_transaction=False) as connection:
                started = time.perf_counter()
                row = await connection.fetchrow(_PROBE_SQL)
                latency_ms = (time.perf_counter() - started) * 1000
                version, host = str(row["version"]), str(row["host"])
                check_server_version(version, self.url)
                pending = await pending_on(connection)
        except Exception as error:
            return HealthResult(
                ok=False, server_version=version, error=self._describe(error), host=host
            )
        return HealthResult(
            ok=True,
            latency_ms=latency_ms,
            server_version=version,
            pending_migrations=pending,
            host=host,
        )

    def _describe(self, error: Exception) -> str:
        if isinstance(error, ConferenceError):
            return str(error)
        if is_connection_lost(error):
            return (
                f"lost the connection to PostgreSQL at {redact_url(self.url)} "
                f"({type(error).__name__}: {error}); is the server running?"
            )
        if isinstance(error, (OSError, TimeoutError, asyncpg.PostgresError)):
            # Connecting failed: unreachable, unknown database, refused login.
            return describe_connection_error(error, self.url)
        return f"{type(error).__name__}: {error}"


class _TranslatedErrors:
    """What :meth:`Database.translate_errors` returns (a class: cheaper than a generator)."""

    __slots__ = ("_database",)

    def __init__(self, database: Database) -> None:
        self._database = database

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, error: BaseException | None, traceback: Any) -> None:
        if isinstance(error, Exception):
            translated = translate_error(error, self._database.url)
            if translated is not None:
                raise translated from error


class _Connection:
    """What :meth:`Database.connection` returns (a class: cheaper than a generator)."""

    __slots__ = ("_acquisition", "_connection", "_database", "_join", "_own")

    def __init__(self, database: Database, join_transaction: bool) -> None:
        self._database = database
        self._join = join_transaction
        self._acquisition: Any = None
        self._connection: Any = None
        self._own = False

    async def __aenter__(self) -> Any:
        engine = self._database.engine
        if self._join:
            transaction = engine.current_transaction.get()
            if transaction is not None:
                return transaction.connection
        if engine.pool is not None:
            self._acquisition = engine.pool.acquire()
            return await self._acquisition.__aenter__()
        self._connection = await engine.get_new_connection()
        self._own = True
        return self._connection

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._acquisition is not None:
            acquisition, self._acquisition = self._acquisition, None
            await acquisition.__aexit__(*exc_info)
        elif self._own:
            self._own = False
            await self._connection.close()


def _discard_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not warn about it


# --- Module-level API: the engine of piccolo_conf ----------------------------

_default: Database | None = None


def get_database() -> Database:
    """
    The :class:`Database` of the engine in ``piccolo_conf`` (``DB``), the
    engine Piccolo's tables use.
    """
    global _default
    # The fast path, taken by every call after the first: piccolo_conf is
    # imported and its DB is still the engine we hold.
    conf = sys.modules.get(os.environ.get(ENVIRONMENT_VARIABLE) or DEFAULT_MODULE_NAME)
    if _default is not None and getattr(conf, ENGINE_VAR, None) is _default.engine:
        return _default
    try:
        engine = engine_finder()
    except ModuleNotFoundError as error:
        raise ConfigurationError(
            f"cannot import Piccolo's configuration ({error}); run from the directory of "
            "piccolo_conf.py, or set PICCOLO_CONF to an importable module that defines DB"
        ) from error
    if _default is not None and _default.engine is engine:
        return _default
    if not isinstance(engine, PostgresEngine):
        raise ConfigurationError(
            "piccolo_conf.py must define DB as a PostgresEngine (for example "
            f"conference.engine.create_engine()); found {type(engine).__name__}"
        )
    _default = Database(engine)
    return _default


async def start_pool(
    *, max_size: int | None = None, min_size: int | None = None, database: Database | None = None
) -> None:
    """Open the connection pool; see :meth:`Database.start_pool`."""
    await (database or get_database()).start_pool(max_size=max_size, min_size=min_size)


async def close_pool(timeout: float = 10.0, *, database: Database | None = None) -> bool:
    """Close the pool gracefully; see :meth:`Database.close_pool`."""
    return await (database or get_database()).close_pool(timeout=timeout)


async def query(sql: str, *args: Any, database: Database | None = None) -> list[asyncpg.Record]:
    """Run one statement with ``$1``-style parameters; see :meth:`Database.query`."""
    return await (database or get_database()).query(sql, *args)


def transaction(
    *, database: Database | None = None
) -> AbstractAsyncContextManager[PostgresTransaction]:
    """
    ``async with db.transaction():`` a transaction (a savepoint when
    nested); see :meth:`Database.transaction`.
    """
    return (database or get_database()).transaction()


def connection(*, join_transaction: bool = True, database: Database | None = None) -> _Connection:
    """
    ``async with db.connection() as connection:`` the current transaction's
    connection, or a pooled one; see :meth:`Database.connection`.
    """
    return (database or get_database()).connection(join_transaction=join_transaction)


def translate_errors(*, database: Database | None = None) -> _TranslatedErrors:
    """
    ``with db.translate_errors():`` database errors leave as conference
    exceptions; see :meth:`Database.translate_errors`.
    """
    return (database or get_database()).translate_errors()


async def check_connection(
    deadline: float = 2.0, *, database: Database | None = None
) -> HealthResult:
    """Health within ``deadline`` seconds, never raising; see :meth:`Database.check_connection`."""
    if database is None:
        try:
            database = get_database()
        except Exception as error:
            return HealthResult(ok=False, error=f"{type(error).__name__}: {error}")
    return await database.check_connection(deadline=deadline)
