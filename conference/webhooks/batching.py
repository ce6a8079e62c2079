"""
Group commit: webhooks that arrive together are written in one
transaction, so that one commit (one WAL flush, one round trip to wait
for) answers many requests.

Each request hands its event to :meth:`GroupCommit.record` and waits. A
writer takes what is waiting (up to ``max_events``) and writes it with
:func:`~conference.webhooks.store.record_batch`. At most ``writers``
batches are in flight at once; what arrives meanwhile forms the next
batch, so batches grow with the load and cost nothing when it is light.
A writer may also wait ``max_wait`` seconds for more before a short
batch; by default it does not, because here a commit's WAL flush is
cheaper than the wait (``LIVEKIT_WEBHOOK_BATCH_MAX_WAIT`` in
:mod:`conference.settings` gives the measurement).

Every answer still follows the commit: :meth:`GroupCommit.record` returns
only once the event's transaction committed (with PostgreSQL's
``synchronous_commit`` as configured, on by default), and raises for every
event of a batch whose transaction failed. An event refused for its own
values (:class:`~conference.errors.IntegrityViolation`) fails alone.

Example::

    batches = GroupCommit(max_events=64, max_wait=0.0, writers=2, queue_timeout=1.0)
    result = await batches.record(changes, body)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from conference.errors import DatabaseError, DatabaseUnavailable, WebhookBacklog
from conference.webhooks.mapping import EventChanges
from conference.webhooks.store import RecordResult, record_batch

#: What writes one batch: :func:`~conference.webhooks.store.record_batch`.
BatchWriter = Callable[
    [Sequence[tuple[EventChanges, str]]], Awaitable[list[RecordResult | DatabaseError]]
]


@dataclass(eq=False)  # identity: the same event may wait twice (a retry)
class _Waiting:
    changes: EventChanges
    body: str
    future: asyncio.Future[RecordResult | DatabaseError] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    """
    Collects webhooks into batches and writes each batch in one transaction.

    :param max_events:
        Most events in one transaction; 1 writes each on its own.
    :param max_wait:
        Seconds a writer waits for more events before writing a short
        batch; 0 (the default) writes what is waiting at once.
    :param writers:
        Batches in flight at once.
    :param queue_timeout:
        Seconds an event may wait for a writer before it is refused with
        :class:`~conference.errors.WebhookBacklog` (answered 503), unwritten.
    :param write:
        Writes one batch; :func:`~conference.webhooks.store.record_batch`.
    """

    def __init__(
        self,
        *,
        max_events: int = 64,
        max_wait: float = 0.0,
        writers: int = 2,
        queue_timeout: float = 1.0,
        write: BatchWriter = record_batch,
    ) -> None:
        self.max_events = max_events
        self.max_wait = max_wait
        self.writers = writers
        self.queue_timeout = queue_timeout
        self._write = write
        self._waiting: deque[_Waiting] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def record(self, changes: EventChanges, body: str) -> RecordResult | DatabaseError:
        """
        Write the event with others and return its result once their
        transaction committed: a :class:`~conference.webhooks.store.RecordResult`,
        or the :class:`~conference.errors.DatabaseError` that says why the
        database refused this event's values (the others were recorded).

        Raises whatever failed the batch as a whole (then nothing of it was
        stored): what :func:`~conference.webhooks.store.record_batch` raises,
        and :class:`~conference.errors.WebhookBacklog` when no writer took
        the event in time.
        """
        waiting = _Waiting(changes, body)
        waiting.future.add_done_callback(_retrieve)
        self._waiting.append(waiting)
        self._start_writers()
        # A timer, not wait_for(): this runs for every webhook and must be cheap.
        timer = asyncio.get_running_loop().call_later(self.queue_timeout, self._expire, waiting)
        try:
            return await waiting.future
        finally:
            timer.cancel()

    def _expire(self, waiting: _Waiting) -> None:
        """Refuse an event no writer took within the bound; one taken runs to its commit."""
        if waiting in self._waiting and not waiting.future.done():
            self._waiting.remove(waiting)
            waiting.future.set_exception(
                WebhookBacklog(
                    f"no database writer was free for {self.queue_timeout:g} s; the "
                    "database is slow or unreachable. Retry later"
                )
            )

    def _start_writers(self) -> None:
        while self._waiting and len(self._running) < self.writers:
            task = asyncio.get_running_loop().create_task(self._drain())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _drain(self) -> None:
        """One writer: write batches while events are waiting."""
        while self._waiting:
            if self.max_wait > 0 and len(self._waiting) < self.max_events:
                await asyncio.sleep(self.max_wait)
            batch = [
                self._waiting.popleft() for _ in range(min(self.max_events, len(self._waiting)))
            ]
            if batch:
                await self._write_batch(batch)

    async def _write_batch(self, batch: list[_Waiting]) -> None:
        try:
            results = await self._write([(item.changes, item.body) for item in batch])
        except asyncio.CancelledError:
            # The writer was cancelled (shutdown): its events were not
            # answered, so they get a 503 rather than a cancelled request.
            stopped = DatabaseUnavailable("the database writer was stopped; retry")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(stopped)
            raise
        except Exception as error:
            # Rolled back: nothing of the batch is stored. Every event of it
            # gets the error (LiveKit retries them), whatever it was.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            if isinstance(error, DatabaseUnavailable):
                # Those still waiting would meet the same database: answer now.
                self._fail_waiting(error)
            return
        for item, result in zip(batch, results, strict=True):
            if item.future.done():
                continue
            item.future.set_result(result)  # a DatabaseError too: this event's own

    def _fail_waiting(self, error: DatabaseUnavailable) -> None:
        while self._waiting:
            item = self._waiting.popleft()
            if not item.future.done():
                item.future.set_exception(error)


def _retrieve(future: asyncio.Future[RecordResult | DatabaseError]) -> None:
    """Mark the outcome seen, so asyncio does not warn when nobody waits any more."""
    if not future.cancelled():
        future.exception()
