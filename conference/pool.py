"""
The connection pool of :class:`conference.engine.ConferenceEngine`: asyncpg's
own pool, with three promises added where Piccolo and ``conference.db``
acquire from it.

**A bounded wait.** Nobody waits more than ``DATABASE_POOL_ACQUIRE_TIMEOUT``
seconds (1 s by default) for a connection: then
:class:`~conference.errors.DatabaseBusy` is raised at once, and the webhook
endpoint answers 503 (LiveKit retries) instead of letting requests queue
for many seconds behind a stalled database.

**Only live connections.** After a server restart or a network cut the pool
may still hold connections whose server is gone. Retrying a failed
statement would hide that but could run it twice (an ``INSERT`` whose
commit reached the server just before the connection dropped), so the pool
checks instead: a connection idle for more than :data:`VALIDATE_AFTER_IDLE`
seconds answers ``SELECT 1`` before anyone gets it; a dead one is
terminated, the others are renewed on their next use, and another is tried.
A busy pool pays nothing. asyncpg's pool does the rest: it replaces a
connection it has seen close, and terminates one whose reset fails.

**One user per connection, and only in a usable state.** A connection is
handed out only after its probe finished. A probe that is cancelled or
times out leaves the connection in the middle of a cancellation: it is
terminated, never handed out. Releasing never raises: a connection that
cannot be reset (its server went away while it was idle) is terminated by
asyncpg and replaced, and the caller's work, already done, is not turned
into an error.

Why a connection can fail without being shared: when PostgreSQL shuts down
it sends every backend's client an unsolicited ``FATAL`` error, then
closes the socket. asyncpg reads the error first and, until it has also
read the end of the stream, refuses every operation on that connection
with ``InternalClientError: cannot switch to state N; another operation
(2) is in progress`` (state 2 is asyncpg's "discard until the server is
ready" state, not a second user). :func:`is_connection_lost` counts that
as a lost connection, so callers get
:class:`~conference.errors.DatabaseUnavailable` (503), never a raw asyncpg
error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator
from contextlib import suppress
from typing import Any

import asyncpg

from conference.errors import DatabaseBusy, DatabaseUnavailable

logger = logging.getLogger(__name__)

#: Seconds a pooled connection may sit idle before it must prove it is alive
#: (HikariCP's "alive bypass window": recently used means alive).
VALIDATE_AFTER_IDLE = 1.0

#: How many dead connections in a row :meth:`ConferencePool.acquire` replaces
#: before it gives up.
ACQUIRE_ATTEMPTS = 3

#: Entries of the last-use table kept before it is emptied (server pids of
#: long-gone connections would otherwise pile up).
_LAST_USED_KEPT = 10_000


def is_connection_lost(error: BaseException) -> bool:
    """Whether ``error`` means the connection (or the server) went away."""
    if isinstance(
        error,
        (
            asyncpg.PostgresConnectionError,  # class 08, includes "connection closed"
            asyncpg.AdminShutdownError,
            asyncpg.CrashShutdownError,
            asyncpg.CannotConnectNowError,
            ConnectionError,  # reset, refused, broken pipe
            # The protocol is out of step with the server, typically after
            # the server's unsolicited FATAL at shutdown (see the module
            # docstring): the connection is unusable.
            asyncpg.InternalClientError,
        ),
    ):
        return True
    # asyncpg raises a bare InterfaceError for a closed connection or pool.
    return isinstance(error, asyncpg.InterfaceError) and (
        "closed" in str(error) or "closing" in str(error)
    )


class ConferencePool(asyncpg.Pool):
    """
    An asyncpg pool whose :meth:`acquire` waits at most ``acquire_timeout``
    seconds and hands out only live connections, and whose :meth:`release`
    never raises (see the module docstring). Everything else is asyncpg's.

    Built by :meth:`conference.engine.ConferenceEngine.start_connection_pool`;
    ``await`` it to open it, like ``asyncpg.create_pool()``.

    :param acquire_timeout:
        Seconds :meth:`acquire` waits by default before
        :class:`~conference.errors.DatabaseBusy`.
    :param validation_timeout:
        Seconds the liveness probe of an idle connection may take.
    :param connect_kwargs:
        What ``asyncpg.create_pool()`` takes: ``dsn``, ``min_size``,
        ``max_size``, connection arguments ...
    """

    def __init__(
        self, *, acquire_timeout: float, validation_timeout: float, **connect_kwargs: Any
    ) -> None:
        options: dict[str, Any] = {
            "min_size": 10,
            "max_size": 10,
            "max_queries": 50_000,
            "max_inactive_connection_lifetime": 300.0,
            "loop": None,
            "connection_class": asyncpg.Connection,
            "record_class": asyncpg.Record,
        }
        options.update(connect_kwargs)
        super().__init__(**options)
        self.acquire_timeout = acquire_timeout
        self.validation_timeout = validation_timeout
        self.waiting = 0
        """Callers waiting for a connection right now (a gauge for metrics)."""
        # server pid -> time.monotonic() of its last release
        self._last_used: dict[int, float] = {}

    def acquire(self, *, timeout: float | None = None) -> _Acquisition:
        """
        A live connection, within ``timeout`` seconds (default
        ``acquire_timeout``) or :class:`~conference.errors.DatabaseBusy`;
        ``await`` it, or use it as ``async with``.
        """
        return _Acquisition(self, self.acquire_timeout if timeout is None else timeout)

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        """
        Give ``connection`` back. Never raises: when asyncpg cannot reset
        it (its server went away), asyncpg terminates it and the pool opens
        a new one when needed.
        """
        with suppress(asyncpg.InterfaceError):  # already released or closed
            if len(self._last_used) > _LAST_USED_KEPT:
                self._last_used.clear()
            self._last_used[connection.get_server_pid()] = time.monotonic()
        try:
            await super().release(connection, timeout=timeout)
        except Exception as error:
            logger.info(
                "a connection could not be reset and was closed (%s: %s)",
                type(error).__name__,
                error,
            )

    async def _acquire_live(self, timeout: float) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        for _ in range(ACQUIRE_ATTEMPTS):
            connection = await self._acquire_within(deadline, timeout)
            try:
                alive = await self._is_alive(connection)
            except BaseException:
                # Cancelled mid-probe: the connection is mid-cancellation.
                await self._discard(connection)
                raise
            if alive:
                return connection
            await self._discard(connection)
            # Its siblings most likely died with it (a restart, a network
            # cut): renew them lazily rather than finding out one by one.
            await self.expire_connections()
        raise DatabaseUnavailable(
            f"{ACQUIRE_ATTEMPTS} connections in a row were dead; the database "
            "server keeps dropping connections"
        )

    async def _acquire_within(self, deadline: float, timeout: float) -> Any:
        self.waiting += 1
        try:
            # asyncio.timeout rather than acquire(timeout=): asyncpg's
            # wait_for runs the acquisition in a task of its own, which costs
            # more than the rest of an uncontended acquire.
            async with asyncio.timeout_at(deadline):
                return await super().acquire()
        except TimeoutError as error:
            in_use = self.get_size() - self.get_idle_size()
            raise DatabaseBusy(
                f"no database connection became free within {timeout:g} s "
                f"({in_use} of at most {self.get_max_size()} in use); retry shortly, or raise "
                "DATABASE_POOL_MAX_SIZE or DATABASE_POOL_ACQUIRE_TIMEOUT"
            ) from error
        finally:
            self.waiting -= 1

    async def _is_alive(self, connection: Any) -> bool:
        last_used = self._last_used.get(connection.get_server_pid())
        if last_used is not None and time.monotonic() - last_used < VALIDATE_AFTER_IDLE:
            return True
        try:
            await connection.execute("SELECT 1", timeout=self.validation_timeout)
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            if not (isinstance(error, TimeoutError) or is_connection_lost(error)):
                raise
            logger.info("replacing a dead pooled connection (%s: %s)", type(error).__name__, error)
            return False
        except asyncpg.InternalClientError as error:
            logger.info("replacing a broken pooled connection (%s)", error)
            return False
        return True

    async def _discard(self, connection: Any) -> None:
        """Terminate ``connection`` (never to be handed out again) and give its slot back."""
        with suppress(Exception):
            connection.terminate()
        with suppress(Exception):
            await super().release(connection)


class _Acquisition:
    """What :meth:`ConferencePool.acquire` returns: awaitable and a context manager."""

    __slots__ = ("_connection", "_pool", "_timeout")

    def __init__(self, pool: ConferencePool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._connection: Any = None

    def __await__(self) -> Generator[Any, None, Any]:
        return self._pool._acquire_live(self._timeout).__await__()

    async def __aenter__(self) -> Any:
        self._connection = await self._pool._acquire_live(self._timeout)
        return self._connection

    async def __aexit__(self, *exc_info: object) -> None:
        connection, self._connection = self._connection, None
        await self._pool.release(connection)
