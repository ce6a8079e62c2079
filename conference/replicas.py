"""
Reads on streaming replicas: which node a lag-tolerant read runs on, how
far each replica trails the primary, and the fallback to the primary.

``DATABASE_REPLICA_URLS`` adds PostgreSQL streaming replicas to the engine
of ``piccolo_conf`` as Piccolo ``extra_nodes`` (``replica_1``,
``replica_2`` ...; see :func:`conference.engine.create_engine`), and
:func:`conference.db.start_pool` opens a pool for each. Nothing runs on a
replica unless a read asks for it::

    from conference import replicas

    rows = await replicas.read_query("SELECT count(*) FROM meetings")
    meetings = await replicas.read(Meeting.select().where(Meeting.ended_at.is_null()))

Such a read runs on a replica that answers and trails the primary by at
most ``DATABASE_REPLICA_MAX_LAG`` seconds (round robin when several do),
otherwise on the primary; a replica that is skipped is logged once as a
WARNING when it goes bad and at INFO when it is back. These always run on
the primary:

- writes (nothing here sends one to a replica);
- everything inside ``db.transaction()``, reads included;
- reads inside ``with replicas.primary_reads():``, for a caller that
  must see what it has just written (read-your-own-writes).

A read that fails on a replica because the replica went away (or because
replay cancelled it, SQLSTATE 40001) runs again on the primary: a read is
safe to repeat, unlike a write.

**How lag is measured.** The usual ``now() - pg_last_xact_replay_timestamp()``
on the replica is the age of the last transaction it replayed, not how far
it is behind: a current replica of a primary that committed nothing for ten
minutes would "lag" ten minutes. So a check compares WAL positions. It
reads the primary's ``pg_current_wal_lsn()`` (at time *t*), then the
replica's ``pg_last_wal_replay_lsn()``: a replica that has replayed that
far holds everything the primary had at *t*, so its lag is at most
now - *t*, the milliseconds of the check, also on an idle primary. A
replica still short of it is asked once more (it was usually replaying the
last few kilobytes); if still short, its lag is the smaller of two upper
bounds: now minus the latest earlier check whose primary position it has
replayed, and the age of the last commit it replayed (the replica misses
nothing older than that; this bound assumes the two servers' clocks agree,
as NTP keeps them). A paused or disconnected replica therefore shows a lag
that grows with time, and is skipped once it passes the bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import asyncpg
from piccolo.engine.postgres import PostgresEngine
from piccolo.query.base import Query

from conference.db import Database, get_database
from conference.engine import redact_url
from conference.errors import ConferenceError, DatabaseUnavailable, TransactionConflict
from conference.settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: Seconds a check's findings are used before the replicas are checked again.
CHECK_INTERVAL = 1.0

#: Seconds a check may take; a replica that has not answered by then is skipped.
CHECK_TIMEOUT = 2.0

#: Earlier checks remembered for the lag bound (see the module docstring).
_SAMPLES_KEPT = 64

_PRIMARY_SQL = "SELECT pg_current_wal_lsn()::text AS lsn"
_REPLICA_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_replay_lsn()::text AS replayed,
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
           AS replay_age
"""

# Set by primary_reads(): reads in this context go to the primary.
_primary_only: ContextVar[bool] = ContextVar("conference_primary_reads", default=False)

# Errors after which a read on a replica is run again on the primary.
_RETRY_ON_PRIMARY = (DatabaseUnavailable, TransactionConflict)


def parse_lsn(text: str) -> int:
    """A WAL position such as ``"0/3000148"`` as a byte offset."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class ReplicaStatus:
    """
    What the last check found about one replica.

    :param node:
        Its name among the engine's ``extra_nodes`` (``replica_1`` ...).
    :param url:
        Its URL without the password.
    :param usable:
        Whether lag-tolerant reads go there now.
    :param lag:
        Seconds it trails the primary at most (see the module docstring);
        ``None`` when it could not be measured.
    :param wal_behind:
        Bytes of the primary's WAL it had not replayed at the check;
        ``None`` when unknown.
    :param reason:
        Why it is not usable, in one line.
    """

    node: str
    url: str
    usable: bool
    lag: float | None = None
    wal_behind: int | None = None
    reason: str | None = None


class ReplicaRouter:
    """
    Chooses the node of each lag-tolerant read among an engine's replicas
    (its ``extra_nodes``) and the primary, and runs reads there.

    :param engine:
        The primary's engine; its ``extra_nodes`` are the replicas.
    :param max_lag:
        Seconds a replica may trail the primary; default
        ``DATABASE_REPLICA_MAX_LAG``.
    :param check_interval:
        Seconds a check is trusted (:data:`CHECK_INTERVAL`); 0 checks
        before every read.
    :param settings:
        For the defaults; :func:`get_settings` when omitted.
    """

    def __init__(
        self,
        engine: PostgresEngine,
        *,
        max_lag: float | None = None,
        check_interval: float = CHECK_INTERVAL,
        settings: Settings | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings or get_settings()
        self.max_lag = self.settings.database_replica_max_lag if max_lag is None else max_lag
        self.check_interval = check_interval
        self._primary = Database(engine, self.settings)
        self._replicas = {
            node: Database(replica, self.settings) for node, replica in self.replicas.items()
        }
        self._statuses: dict[str, ReplicaStatus] = {}
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()
        # (time.monotonic() before reading it, primary WAL position) per check.
        self._samples: deque[tuple[float, int]] = deque(maxlen=_SAMPLES_KEPT)
        # Whether each replica was usable when last logged: warn on the way down only.
        self._logged_usable: dict[str, bool] = {}
        self._turn = 0

    @property
    def replicas(self) -> Mapping[str, PostgresEngine]:
        """The replica engines by node name."""
        return self.engine.extra_nodes

    # --- Choosing -----------------------------------------------------------

    async def read_node(self) -> str | None:
        """
        The node a lag-tolerant read should run on now: a usable replica's
        name, or ``None`` for the primary (no replica usable, inside a
        transaction, or inside :func:`primary_reads`).
        """
        if (
            not self.replicas
            or _primary_only.get()
            or self.engine.current_transaction.get() is not None
        ):
            return None
        statuses = await self._current_statuses()
        usable = [status.node for status in statuses if status.usable]
        if not usable:
            return None
        self._turn += 1
        return usable[self._turn % len(usable)]

    async def status(self) -> list[ReplicaStatus]:
        """Check every replica now and return what was found."""
        async with self._lock:
            await self._check()
        return list(self._statuses.values())

    async def current_status(self, deadline: float = CHECK_TIMEOUT) -> list[ReplicaStatus]:
        """
        What reads see now: the latest check's findings, checking again
        first when they are older than ``check_interval``. Within
        ``deadline`` seconds: a replica not judged by then is reported
        unusable. Empty without replicas.
        """
        if not self.replicas:
            return []
        try:
            return await asyncio.wait_for(self._current_statuses(), deadline)
        except TimeoutError:
            return [
                ReplicaStatus(
                    node,
                    redact_url(str(engine.config.get("dsn", ""))),
                    usable=False,
                    reason=f"not checked within {deadline:g} s",
                )
                for node, engine in self.replicas.items()
            ]

    # --- Reading ------------------------------------------------------------

    async def read_query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """
        Run a read-only statement (``$1``-style parameters) on a usable
        replica, or on the primary; see :meth:`conference.db.Database.query`
        for logging and errors. Never send a write here: a replica refuses
        it, and a read-your-own-write would miss it.
        """
        node = await self.read_node()
        if node is not None:
            try:
                return await self._replicas[node].query(sql, *args)
            except _RETRY_ON_PRIMARY as error:
                self._skip(node, error)
        return await self._primary.query(sql, *args)

    async def read(self, query: Query[Any, Any]) -> Any:
        """
        Run a read-only Piccolo query (``select``, ``objects``, ``count``,
        ``exists`` ...) on a usable replica, or on the primary. Its table
        must use this router's engine.
        """
        node = await self.read_node()
        if node is not None:
            try:
                with self._replicas[node].translate_errors():
                    return await query.run(node=node)
            except _RETRY_ON_PRIMARY as error:
                self._skip(node, error)
        return await query.run()

    # --- Checking -----------------------------------------------------------

    async def _current_statuses(self) -> list[ReplicaStatus]:
        if self._stale():
            async with self._lock:
                if self._stale():  # another read may have checked meanwhile
                    await self._check()
        return list(self._statuses.values())

    def _stale(self) -> bool:
        return self._checked_at is None or (
            time.monotonic() - self._checked_at >= self.check_interval
        )

    async def _check(self) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                with self._primary.translate_errors():
                    row = await _fetchrow(self._primary, _PRIMARY_SQL)
            primary_lsn: int | None = parse_lsn(row["lsn"])
        except (TimeoutError, ConferenceError) as error:
            # The replicas are still judged, by their replay timestamps.
            logger.debug("could not read the primary's WAL position: %s", error)
            primary_lsn = None
        if primary_lsn is not None:
            self._samples.append((started, primary_lsn))
        statuses = await asyncio.gather(
            *(self._check_replica(node, primary_lsn) for node in self.replicas)
        )
        self._statuses = {status.node: status for status in statuses}
        self._checked_at = time.monotonic()
        for status in statuses:
            self._log_change(status)

    async def _check_replica(self, node: str, primary_lsn: int | None) -> ReplicaStatus:
        replica = self._replicas[node]
        url = redact_url(replica.url)
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                with replica.translate_errors():
                    row = await _fetchrow(replica, _REPLICA_SQL)
                    if _behind(row, primary_lsn):
                        row = await _fetchrow(replica, _REPLICA_SQL)  # usually caught up now
        except TimeoutError:
            return ReplicaStatus(
                node, url, usable=False, reason=f"unreachable: no answer within {CHECK_TIMEOUT:g} s"
            )
        except ConferenceError as error:
            return ReplicaStatus(node, url, usable=False, reason=f"unreachable: {error}")
        if not row["in_recovery"]:
            return ReplicaStatus(
                node,
                url,
                usable=False,
                reason=(
                    "is not a standby (pg_is_in_recovery() is false): it was promoted, "
                    "or DATABASE_REPLICA_URLS names a primary"
                ),
            )
        replayed = parse_lsn(row["replayed"])
        bounds = [time.monotonic() - at for at, lsn in self._samples if lsn <= replayed][-1:]
        if row["replay_age"] is not None:
            bounds.append(max(0.0, float(row["replay_age"])))
        lag = min(bounds) if bounds else None
        wal_behind = None if primary_lsn is None else max(0, primary_lsn - replayed)
        if lag is None:
            reason: str | None = "its lag cannot be measured (no WAL position to compare)"
        elif lag > self.max_lag:
            reason = (
                f"lags {lag:.1f} s behind the primary ({wal_behind} bytes of WAL not "
                f"replayed); DATABASE_REPLICA_MAX_LAG is {self.max_lag:g} s"
            )
        else:
            reason = None
        return ReplicaStatus(node, url, reason is None, lag, wal_behind, reason)

    def _skip(self, node: str, error: ConferenceError) -> None:
        """A read on ``node`` failed: leave it out until the next check."""
        previous = self._statuses.get(node)
        status = ReplicaStatus(
            node,
            previous.url if previous else node,
            usable=False,
            reason=f"a read failed there and ran on the primary: {error}",
        )
        self._statuses[node] = status
        self._log_change(status)

    def _log_change(self, status: ReplicaStatus) -> None:
        if status.usable == self._logged_usable.get(status.node, True):
            return
        self._logged_usable[status.node] = status.usable
        if status.usable:
            logger.info(
                "replica %s (%s) is back: lag %.3f s; lag-tolerant reads go there again",
                status.node,
                status.url,
                status.lag or 0.0,
            )
        else:
            logger.warning(
                "replica %s (%s) skipped, its reads go to the primary: %s",
                status.node,
                status.url,
                status.reason,
            )


def _behind(row: asyncpg.Record, primary_lsn: int | None) -> bool:
    return (
        primary_lsn is not None
        and row["replayed"] is not None
        and parse_lsn(row["replayed"]) < primary_lsn
    )


async def _fetchrow(database: Database, sql: str) -> asyncpg.Record:
    async with database.connection(join_transaction=False) as connection:
        return await connection.fetchrow(sql)


# --- Module-level API: the engine of piccolo_conf ----------------------------

_routers: weakref.WeakKeyDictionary[PostgresEngine, ReplicaRouter] = weakref.WeakKeyDictionary()


def get_router(database: Database | None = None) -> ReplicaRouter:
    """
    The :class:`ReplicaRouter` of ``database``'s engine (default: the
    engine in ``piccolo_conf``, ``DB``); one per engine, so that its
    checks are shared.
    """
    engine = (database or get_database()).engine
    router = _routers.get(engine)
    if router is None:
        router = _routers[engine] = ReplicaRouter(engine)
    return router


async def read_node(*, database: Database | None = None) -> str | None:
    """The node for a lag-tolerant read; see :meth:`ReplicaRouter.read_node`."""
    return await get_router(database).read_node()


async def read_query(
    sql: str, *args: Any, database: Database | None = None
) -> list[asyncpg.Record]:
    """A read-only statement on a replica or the primary; see :meth:`ReplicaRouter.read_query`."""
    return await get_router(database).read_query(sql, *args)


async def read(query: Query[Any, Any], *, database: Database | None = None) -> Any:
    """A read-only Piccolo query on a replica or the primary; see :meth:`ReplicaRouter.read`."""
    return await get_router(database).read(query)


async def replica_status(*, database: Database | None = None) -> list[ReplicaStatus]:
    """Check every replica now (for ``/metrics``); see :meth:`ReplicaRouter.status`."""
    return await get_router(database).status()


async def current_status(
    deadline: float = CHECK_TIMEOUT, *, database: Database | None = None
) -> list[ReplicaStatus]:
    """What reads see now, within ``deadline``; see :meth:`ReplicaRouter.current_status`."""
    return await get_router(database).current_status(deadline)


@contextmanager
def primary_reads() -> Iterator[None]:
    """
    Reads inside this block run on the primary, for a caller that must see
    its own writes::

        await record_event(...)
        with replicas.primary_reads():
            timeline = await meeting_timeline(meeting_id)
    """
    token = _primary_only.set(True)
    try:
        yield
    finally:
        _primary_only.reset(token)
