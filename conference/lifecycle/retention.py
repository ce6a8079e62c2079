"""
Retention: delete ``analytics`` events older than a cut-off and, on
request, ended meetings older than it with everything that hangs off them,
without stalling the write path.

How the work is cut:

- **Small batches, each its own short transaction.** A batch deletes at
  most ``batch_size`` rows and commits; the webhook path never waits long
  for a lock, and an interrupted run loses at most the batch in flight.
- **In index order, keyset, no OFFSET.** Ended meetings are walked along
  ``meetings (created_at)`` from the oldest, with a ``(created_at, id)``
  cursor. Events are walked meeting by meeting along ``meetings (id)``:
  each batch takes the next chunk of meetings and deletes their old events
  through ``analytics (meeting_id, created_at, id)``. Every event belongs
  to a meeting, so this finds exactly the events older than the cut-off,
  whatever their meeting's own times, and never reads a newer one.
- **Throttled.** After each batch that deleted something the run sleeps as
  long as the batch took, and at least ``pause`` seconds: it keeps the
  server busy at most half the time, and backs off by itself when the
  server is slow, leaving the CPU, the disk and the WAL to the webhooks.
- **Resumable.** The rows a finished batch deleted stay deleted; running
  the same command again continues with what is left (a batch over
  meetings already done finds nothing and costs an index probe).

Example::

    result = await run_retention(cutoff_for(parse_period("90d")), meetings=True)
    print(result.table())
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from conference import db
from conference.db import Database
from conference.devdata.target import current_database, ensure_not_production
from conference.text import rows_per_table

logger = logging.getLogger(__name__)

#: Rows a batch deletes at most (one transaction).
DEFAULT_BATCH_SIZE = 1_000

#: Least seconds to sleep after each batch that deleted rows; it sleeps at
#: least as long as the batch took, too.
DEFAULT_PAUSE = 0.05

#: The tables retention deletes from, parents first: the order of its summary.
TABLE_NAMES = ("meetings", "participants", "recordings", "analytics")

_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
_PERIOD = re.compile(r"^\s*(\d+)\s*([hdw]?)\s*$")

#: Meetings per chunk of the events step: bounds, and where it starts
#: (the generated workload has about 41 events per meeting).
_MIN_CHUNK, _MAX_CHUNK = 1, 20_000
_EVENTS_PER_MEETING = 40

_ZERO_UUID = uuid.UUID(int=0)
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


def parse_period(text: str) -> timedelta:
    """
    A retention period: ``"90d"`` (days), ``"12h"`` (hours), ``"2w"``
    (weeks); a bare number is days. Raises ``ValueError`` with the accepted
    forms otherwise.
    """
    match = _PERIOD.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(
            f"a retention period is a positive number with a unit, such as 90d (days), "
            f"12h (hours) or 2w (weeks); got {text!r}"
        )
    unit = _UNITS[match.group(2) or "d"]
    return timedelta(**{unit: int(match.group(1))})


def cutoff_for(keep: timedelta, now: datetime | None = None) -> datetime:
    """The cut-off that keeps ``keep`` of history before ``now`` (default: now)."""
    return (now or datetime.now(UTC)) - keep


@dataclass(frozen=True)
class RetentionProgress:
    """
    Where a run is, after each committed batch.

    :param step:
        ``"meetings"`` (ended meetings with their rows) or ``"analytics"``.
    :param deleted:
        Rows deleted so far, per table name.
    :param total:
        Rows the run expects to delete (its plan), all tables.
    """

    step: str
    deleted: dict[str, int]
    total: int

    @property
    def done(self) -> int:
        """Rows deleted so far, all tables."""
        return sum(self.deleted.values())


@dataclass
class RetentionResult:
    """
    What a run deleted, or would delete with ``dry_run``.

    :param counts:
        Rows per table name (``meetings``, ``participants``, ``recordings``,
        ``analytics``); with ``meetings=False`` only ``analytics`` changes.
    :param batches:
        Batches that deleted rows (0 for a dry run).
    """

    database: str
    cutoff: datetime
    meetings: bool
    dry_run: bool
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLE_NAMES, 0))
    seconds: float = 0.0
    batches: int = 0

    @property
    def rows(self) -> int:
        """Rows, all tables."""
        return sum(self.counts.values())

    def table(self) -> str:
        """Rows per table as a small text table, for a terminal."""
        return rows_per_table(self.counts)


# --- The plan: what would go ---------------------------------------------------

# Ended meetings before the cut-off. ended_at >= created_at is a check
# constraint, so the created_at condition only lets the index narrow it.
_DOOMED_MEETINGS = "SELECT id FROM meetings WHERE created_at < $1 AND ended_at < $1"

_COUNT_MEETINGS = f"""
WITH doomed AS ({_DOOMED_MEETINGS})
SELECT (SELECT count(*) FROM doomed) AS meetings,
       (SELECT count(*) FROM participants WHERE meeting_id IN (SELECT id FROM doomed))
           AS participants,
       (SELECT count(*) FROM recordings WHERE meeting_id IN (SELECT id FROM doomed))
           AS recordings,
       (SELECT count(*) FROM analytics WHERE meeting_id IN (SELECT id FROM doomed))
           AS analytics
"""

_COUNT_EVENTS = "SELECT count(*) AS analytics FROM analytics WHERE created_at < $1"

_COUNT_EVENTS_OUTSIDE_DOOMED = f"""
SELECT count(*) AS analytics FROM analytics a
WHERE a.created_at < $1 AND a.meeting_id NOT IN ({_DOOMED_MEETINGS})
"""


async def plan_retention(
    cutoff: datetime, *, meetings: bool = False, database: Database | None = None
) -> dict[str, int]:
    """
    Rows a run with this cut-off would delete now, per table name: what a
    dry run prints and the run's progress total. Changes nothing.

    :param meetings:
        Count ended meetings older than the cut-off with their
        participants, recordings and events too.
    """
    database = database or db.get_database()
    counts = dict.fromkeys(TABLE_NAMES, 0)
    if meetings:
        row = (await database.query(_COUNT_MEETINGS, cutoff))[0]
        counts.update({name: int(row[name]) for name in TABLE_NAMES})
        events = await database.query(_COUNT_EVENTS_OUTSIDE_DOOMED, cutoff)
    else:
        events = await database.query(_COUNT_EVENTS, cutoff)
    counts["analytics"] += int(events[0]["analytics"])
    return counts


# --- Running it ---------------------------------------------------------------

_NEXT_MEETINGS_ENDED = """
SELECT id, created_at FROM meetings
WHERE created_at < $1 AND ended_at < $1 AND (created_at, id) > ($2, $3)
ORDER BY created_at, id
LIMIT $4
"""

# FOR UPDATE conflicts with the FOR KEY SHARE lock a new child row's foreign
# key check takes: once locked, no participant or event can be added to these
# meetings, so the counts below are what the cascade deletes.
_LOCK_MEETINGS = """
SELECT id FROM meetings WHERE id = ANY($1::uuid[]) AND ended_at < $2
ORDER BY id FOR UPDATE
"""

_COUNT_CHILDREN = """
SELECT (SELECT count(*) FROM participants WHERE meeting_id = ANY($1::uuid[])) AS participants,
       (SELECT count(*) FROM recordings WHERE meeting_id = ANY($1::uuid[])) AS recordings,
       (SELECT count(*) FROM analytics WHERE meeting_id = ANY($1::uuid[])) AS analytics
"""

_DELETE_MEETINGS = """
WITH gone AS (DELETE FROM meetings WHERE id = ANY($1::uuid[]) RETURNING 1)
SELECT count(*) AS meetings FROM gone
"""

_NEXT_MEETINGS_BY_ID = "SELECT id FROM meetings WHERE id > $1 ORDER BY id LIMIT $2"

# One statement, so one short transaction of its own.
_DELETE_EVENTS = """
WITH gone AS (
    DELETE FROM analytics WHERE id IN (
        SELECT id FROM analytics
        WHERE meeting_id = ANY($1::uuid[]) AND created_at < $2
        LIMIT $3
    )
    RETURNING 1
)
SELECT count(*) AS analytics FROM gone
"""


async def run_retention(
    cutoff: datetime,
    *,
    meetings: bool = False,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pause: float = DEFAULT_PAUSE,
    force: bool = False,
    database: Database | None = None,
    progress: Callable[[RetentionProgress], None] | None = None,
) -> RetentionResult:
    """
    Delete ``analytics`` events created before ``cutoff`` and, with
    ``meetings``, meetings that ended before it with their participants,
    recordings and events (all of them, the cascade of their foreign keys).
    Meetings still running, or ended after the cut-off, keep their rows
    except their old events.

    Each batch commits on its own; an interruption keeps what finished, and
    running again continues. Rows newer than the cut-off are never read or
    touched, including rows written while it runs.

    :param cutoff:
        Rows strictly older than this go (see :func:`cutoff_for`).
    :param meetings:
        Also delete ended meetings older than the cut-off.
    :param dry_run:
        Only count what would go (:func:`plan_retention`).
    :param batch_size:
        Most rows a batch deletes (one transaction); an ended meeting's rows
        go with it, so a batch of meetings holds about this many rows.
    :param pause:
        Least seconds to sleep after each batch that deleted rows (it also
        sleeps at least as long as the batch took).
    :param force:
        Run even on a database that looks like production (name contains
        ``prod``, or ``CONFERENCE_ENV=production``).
    :param database:
        Default: the engine of ``piccolo_conf``.
    :param progress:
        Called after each committed batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
    if pause < 0:
        raise ValueError(f"pause must be 0 or more seconds, got {pause}")
    if cutoff.tzinfo is None:
        raise ValueError(f"the cut-off needs a time zone (+00:00 for UTC), got {cutoff}")
    database = database or db.get_database()
    began = time.perf_counter()
    name = await current_database(database)
    ensure_not_production(name, "delete old data from", force=force)
    plan = await plan_retention(cutoff, meetings=meetings, database=database)
    result = RetentionResult(database=name, cutoff=cutoff, meetings=meetings, dry_run=dry_run)
    if dry_run:
        result.counts = plan
        result.seconds = time.perf_counter() - began
        return result
    run = _Run(database, cutoff, batch_size, pause, result, sum(plan.values()), progress)
    if meetings:
        await run.expire_meetings()
    await run.expire_events()
    result.seconds = time.perf_counter() - began
    logger.info(
        "retention of %s before %s: %s in %.1f s (%d batches)",
        name,
        cutoff.isoformat(),
        result.counts,
        result.seconds,
        result.batches,
    )
    return result


class _Run:
    """One retention run: the two steps, sharing counts and the throttle."""

    def __init__(
        self,
        database: Database,
        cutoff: datetime,
        batch_size: int,
        pause: float,
        result: RetentionResult,
        total: int,
        progress: Callable[[RetentionProgress], None] | None,
    ) -> None:
        self.database = database
        self.cutoff = cutoff
        self.batch_size = batch_size
        self.pause = pause
        self.result = result
        self.total = total
        self.progress = progress

    async def expire_meetings(self) -> None:
        """Ended meetings older than the cut-off, oldest first, whole."""
        per_batch = max(1, self.batch_size // 50)  # ~48 rows per generated meeting
        after: tuple[datetime, uuid.UUID] = (_BEGINNING, _ZERO_UUID)
        while True:
            rows = await self.database.query(
                _NEXT_MEETINGS_ENDED, self.cutoff, after[0], after[1], per_batch
            )
            if not rows:
                return
            after = (rows[-1]["created_at"], rows[-1]["id"])
            ids = [row["id"] for row in rows]
            began = time.perf_counter()
            async with self.database.transaction():
                locked = [
                    row["id"] for row in await self.database.query(_LOCK_MEETINGS, ids, self.cutoff)
                ]
                if not locked:
                    continue
                children = (await self.database.query(_COUNT_CHILDREN, locked))[0]
                gone = (await self.database.query(_DELETE_MEETINGS, locked))[0]
            self._count(
                "meetings",
                meetings=int(gone["meetings"]),
                participants=int(children["participants"]),
                recordings=int(children["recordings"]),
                analytics=int(children["analytics"]),
            )
            await self._breathe(time.perf_counter() - began)

    async def expire_events(self) -> None:
        """Events older than the cut-off, meeting by meeting in key order."""
        chunk = max(_MIN_CHUNK, self.batch_size // _EVENTS_PER_MEETING)
        after = _ZERO_UUID
        while True:
            rows = await self.database.query(_NEXT_MEETINGS_BY_ID, after, chunk)
            if not rows:
                return
            ids = [row["id"] for row in rows]
            began = time.perf_counter()
            deleted = int(
                (await self.database.query(_DELETE_EVENTS, ids, self.cutoff, self.batch_size))[0][
                    "analytics"
                ]
            )
            if deleted:
                self._count("analytics", analytics=deleted)
            if deleted >= self.batch_size:
                # The chunk has more: stay on it, with fewer meetings next time.
                chunk = max(_MIN_CHUNK, chunk // 2)
            else:
                after = ids[-1]
                if deleted < self.batch_size // 2:
                    # Mostly recent meetings: take more of them per batch.
                    chunk = min(_MAX_CHUNK, chunk * 2)
            if deleted:
                await self._breathe(time.perf_counter() - began)

    def _count(self, step: str, **deleted: int) -> None:
        for table, rows in deleted.items():
            self.result.counts[table] += rows
        self.result.batches += 1
        if self.progress is not None:
            self.progress(RetentionProgress(step, dict(self.result.counts), self.total))

    async def _breathe(self, busy: float) -> None:
        # As long as the batch took: a slow server (busy with webhooks, or
        # a checkpoint) gets proportionally more room.
        await asyncio.sleep(max(self.pause, busy))
