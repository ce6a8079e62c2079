"""
The query catalogue: the questions other services ask of the conference
data, each one SQL statement that an index answers, however large
``analytics`` grows (the plans are checked with ``EXPLAIN`` in
``tests/test_queries.py``, the speed in ``docs/benchmarks.md``).

Every function runs on :mod:`conference.db` (the pool, inside the caller's
:func:`conference.db.transaction` when there is one) and returns
dataclasses: one per row, built straight from the record (not frozen: a
frozen dataclass takes several times longer to build, which shows on pages
of a hundred rows), and frozen ones for pages, cursors and statistics.
JSON columns (``metadata``, ``event_data``) come back as JSON text, as
Piccolo and asyncpg return them: ``json.loads`` them when needed, or pass
them on as they are.

Every function only reads, so with ``DATABASE_REPLICA_URLS`` set it runs on
a streaming replica that trails the primary by at most
``DATABASE_REPLICA_MAX_LAG`` seconds (:mod:`conference.replicas`), unless
it is inside a transaction or :func:`conference.replicas.primary_reads`, or
is given a ``database``: those, and every call without replicas, run on the
primary.

Example::

    from conference import queries

    for meeting in await queries.active_meetings(room_name="weekly-standup"):
        people = await queries.active_participants(meeting.id)
        stats = await queries.meeting_stats(meeting.id)

    page = await queries.event_timeline(meeting_id, since=start, until=end)
    while page.next is not None:
        page = await queries.event_timeline(meeting_id, since=start, until=end, after=page.next)

Each function builds its statement with a ``*_query`` function (SQL and
arguments, nothing else), so that the benchmark runs exactly the same SQL
on raw asyncpg.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from conference import replicas
from conference.db import Database
from conference.metrics import timed_query
from conference.tables import RecordingStatus

#: Rows per page unless told otherwise.
DEFAULT_PAGE_SIZE = 100

#: The most active meetings :func:`active_meetings` returns unless told otherwise.
DEFAULT_ACTIVE_MEETINGS_LIMIT = 1000

#: The largest page any function returns.
MAX_PAGE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Query:
    """One statement: ``$1``-style SQL and its arguments."""

    sql: str
    args: tuple[Any, ...]


async def _fetch(query: Query, database: Database | None) -> list[asyncpg.Record]:
    if database is None:
        return await replicas.read_query(query.sql, *query.args)
    return await database.query(query.sql, *query.args)


def _check_limit(limit: int, name: str = "limit") -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"{name} must be between 1 and {MAX_PAGE_SIZE}, got {limit}")


# --- Active participants of a meeting ---------------------------------------


@dataclass(slots=True)
class ActiveParticipant:
    """A participant session still in its meeting (no ``left_at`` yet)."""

    id: UUID
    identity: str
    joined_at: datetime
    participant_sid: str | None
    #: JSON text.
    metadata: str


# Index: participants (meeting_id, left_at).
_ACTIVE_PARTICIPANTS = """
SELECT id, identity, joined_at, participant_sid, metadata::text
FROM participants
WHERE meeting_id = $1 AND left_at IS NULL
ORDER BY joined_at, id
"""


def active_participants_query(meeting_id: UUID) -> Query:
    """The statement of :func:`active_participants`."""
    return Query(_ACTIVE_PARTICIPANTS, (meeting_id,))


@timed_query
async def active_participants(
    meeting_id: UUID, *, database: Database | None = None
) -> list[ActiveParticipant]:
    """
    The participant sessions of a meeting that have not left, in the order
    they joined. A participant who reconnected has one row per session; only
    the current one is active.

    :param meeting_id:
        The meeting; an unknown id gives an empty list.
    :param database:
        Default: the engine of ``piccolo_conf``.
    """
    rows = await _fetch(active_participants_query(meeting_id), database)
    return [ActiveParticipant(*row) for row in rows]


# --- Active meetings ------------------------------------------------------------


@dataclass(slots=True)
class ActiveMeeting:
    """A meeting that has not ended (no ``ended_at`` yet)."""

    id: UUID
    room_name: str
    created_at: datetime
    room_sid: str | None
    #: JSON text.
    metadata: str


# Index: meetings_active, a partial index on meetings (created_at) WHERE
# ended_at IS NULL: it holds only the running meetings, so it stays small
# however many meetings have ended.
_ACTIVE_MEETINGS = """
SELECT id, room_name, created_at, room_sid, metadata::text
FROM meetings
WHERE ended_at IS NULL
ORDER BY created_at DESC, id DESC
LIMIT $1
"""

_ACTIVE_MEETINGS_IN_ROOM = """
SELECT id, room_name, created_at, room_sid, metadata::text
FROM meetings
WHERE ended_at IS NULL AND room_name = $1
ORDER BY created_at DESC, id DESC
LIMIT $2
"""


def active_meetings_query(
    room_name: str | None = None, limit: int = DEFAULT_ACTIVE_MEETINGS_LIMIT
) -> Query:
    """The statement of :func:`active_meetings`."""
    _check_limit(limit)
    if room_name is None:
        return Query(_ACTIVE_MEETINGS, (limit,))
    return Query(_ACTIVE_MEETINGS_IN_ROOM, (room_name, limit))


@timed_query
async def active_meetings(
    room_name: str | None = None,
    *,
    limit: int = DEFAULT_ACTIVE_MEETINGS_LIMIT,
    database: Database | None = None,
) -> list[ActiveMeeting]:
    """
    Meetings in progress, newest first.

    :param room_name:
        Only meetings of this room (exact name).
    :param limit:
        At most this many (1 to :data:`MAX_PAGE_SIZE`).
    :param database:
        Default: the engine of ``piccolo_conf``.
    """
    rows = await _fetch(active_meetings_query(room_name, limit), database)
    return [ActiveMeeting(*row) for row in rows]


# --- A meeting's event timeline ---------------------------------------------------


@dataclass(slots=True)
class TimelineEvent:
    """One analytics event of a meeting."""

    id: UUID
    created_at: datetime
    event_type: str
    participant_id: UUID | None
    #: JSON text: for webhooks, the body LiveKit sent.
    event_data: str


@dataclass(frozen=True, slots=True)
class TimelineCursor:
    """Where a timeline page ended: pass it as ``after=`` for the next page."""

    created_at: datetime
    id: UUID


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """
    :param events:
        Oldest first.
    :param next:
        The cursor of the next page, ``None`` on the last page.
    """

    events: list[TimelineEvent]
    next: TimelineCursor | None


def event_timeline_query(
    meeting_id: UUID,
    since: datetime | None = None,
    until: datetime | None = None,
    after: TimelineCursor | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> Query:
    """
    The statement of :func:`event_timeline`; it asks for one row more than
    ``limit`` to learn whether another page follows.
    """
    _check_limit(limit)
    # Only the bounds that are given are written into the SQL: a condition
    # like "$2 IS NULL OR created_at >= $2" would hide the range from the
    # index in a generic plan. Index: analytics (meeting_id, created_at, id),
    # which also answers the keyset condition and the ORDER BY.
    conditions = ["meeting_id = $1"]
    args: list[Any] = [meeting_id]
    if since is not None:
        args.append(since)
        conditions.append(f"created_at >= ${len(args)}")
    if until is not None:
        args.append(until)
        conditions.append(f"created_at < ${len(args)}")
    if after is not None:
        args += [after.created_at, after.id]
        conditions.append(f"(created_at, id) > (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    sql = (
        "SELECT id, created_at, event_type, participant_id, event_data::text\n"
        "FROM analytics\n"
        f"WHERE {' AND '.join(conditions)}\n"
        "ORDER BY created_at, id\n"
        f"LIMIT ${len(args)}"
    )
    return Query(sql, tuple(args))


@timed_query
async def event_timeline(
    meeting_id: UUID,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    after: TimelineCursor | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    database: Database | None = None,
) -> TimelinePage:
    """
    A meeting's analytics events with ``since <= created_at < until``,
    oldest first, a page at a time (keyset pagination: each page costs the
    same, however deep, and events recorded meanwhile are neither skipped
    nor repeated)::

        page = await event_timeline(meeting_id, since, until)
        while True:
            handle(page.events)
            if page.next is None:
                break
            page = await event_timeline(meeting_id, since, until, after=page.next)

    :param meeting_id:
        The meeting.
    :param since:
        Earliest ``created_at`` (inclusive); default: from the first event.
    :param until:
        Latest ``created_at`` (exclusive); default: up to the last event.
    :param after:
        The previous page's :attr:`TimelinePage.next`.
    :param limit:
        Events per page (1 to :data:`MAX_PAGE_SIZE`).
    :param database:
        Default: the engine of ``piccolo_conf``.
    """
    rows = await _fetch(event_timeline_query(meeting_id, since, until, after, limit), database)
    events = [TimelineEvent(*row) for row in rows[:limit]]
    next_page = None
    if len(rows) > limit:
        last = events[-1]
        next_page = TimelineCursor(last.created_at, last.id)
    return TimelinePage(events, next_page)


# --- Recordings by status ---------------------------------------------------------


@dataclass(slots=True)
class RecordingSummary:
    """One recording (LiveKit egress)."""

    id: UUID
    meeting_id: UUID
    egress_id: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    #: Seconds.
    duration: float | None
    #: Bytes.
    file_size: int | None
    storage_path: str | None


@dataclass(frozen=True, slots=True)
class RecordingCursor:
    """Where a recordings page ended: pass it as ``after=`` for the next page."""

    started_at: datetime | None
    id: UUID


@dataclass(frozen=True, slots=True)
class RecordingPage:
    """
    :param recordings:
        Newest first.
    :param next:
        The cursor of the next page, ``None`` on the last page.
    """

    recordings: list[RecordingSummary]
    next: RecordingCursor | None


_RECORDING_COLUMNS = (
    "id, meeting_id, egress_id, status, started_at, completed_at, duration, file_size, storage_path"
)

# Index: recordings (status, started_at, id), read backwards: newest first,
# recordings not started yet (no started_at) before all others.
_RECORDINGS = f"""
SELECT {_RECORDING_COLUMNS}
FROM recordings
WHERE status = $1
ORDER BY started_at DESC NULLS FIRST, id DESC
LIMIT $2
"""

# After a recording with a start time: the older ones. (Row comparison is
# never true for a NULL started_at, and those came first.)
_RECORDINGS_AFTER_STARTED = f"""
SELECT {_RECORDING_COLUMNS}
FROM recordings
WHERE status = $1 AND (started_at, id) < ($2, $3)
ORDER BY started_at DESC NULLS FIRST, id DESC
LIMIT $4
"""

# After a recording without a start time: the rest of those, then every
# recording with one. Two index ranges, merged in order.
_RECORDINGS_AFTER_NOT_STARTED = f"""
SELECT * FROM (
    (SELECT {_RECORDING_COLUMNS} FROM recordings
     WHERE status = $1 AND started_at IS NULL AND id < $2
     ORDER BY started_at DESC NULLS FIRST, id DESC LIMIT $3)
    UNION ALL
    (SELECT {_RECORDING_COLUMNS} FROM recordings
     WHERE status = $1 AND started_at IS NOT NULL
     ORDER BY started_at DESC NULLS FIRST, id DESC LIMIT $3)
) AS page
ORDER BY started_at DESC NULLS FIRST, id DESC
LIMIT $3
"""


def _recording_status_value(status: RecordingStatus | str) -> str:
    try:
        return RecordingStatus(status).value
    except ValueError:
        known = ", ".join(member.value for member in RecordingStatus)
        raise ValueError(f"unknown recording status {status!r}; one of {known}") from None


def recordings_by_status_query(
    status: RecordingStatus | str,
    after: RecordingCursor | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> Query:
    """
    The statement of :func:`recordings_by_status`; it asks for one row more
    than ``limit`` to learn whether another page follows.
    """
    _check_limit(limit)
    value = _recording_status_value(status)
    if after is None:
        return Query(_RECORDINGS, (value, limit + 1))
    if after.started_at is None:
        return Query(_RECORDINGS_AFTER_NOT_STARTED, (value, after.id, limit + 1))
    return Query(_RECORDINGS_AFTER_STARTED, (value, after.started_at, after.id, limit + 1))


@timed_query
async def recordings_by_status(
    status: RecordingStatus | str,
    *,
    after: RecordingCursor | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    database: Database | None = None,
) -> RecordingPage:
    """
    Recordings in one status, newest ``started_at`` first (those not started
    yet first of all), a page at a time with keyset pagination, like
    :func:`event_timeline`.

    :param status:
        A :class:`~conference.tables.RecordingStatus` or its value
        (``"failed"``); anything else raises ``ValueError``.
    :param after:
        The previous page's :attr:`RecordingPage.next`.
    :param limit:
        Recordings per page (1 to :data:`MAX_PAGE_SIZE`).
    :param database:
        Default: the engine of ``piccolo_conf``.
    """
    rows = await _fetch(recordings_by_status_query(status, after, limit), database)
    recordings = [RecordingSummary(*row) for row in rows[:limit]]
    next_page = None
    if len(rows) > limit:
        last = recordings[-1]
        next_page = RecordingCursor(last.started_at, last.id)
    return RecordingPage(recordings, next_page)


# --- Per-meeting statistics ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeetingStats:
    """
    :param participants_total:
        Participant sessions, ever (a reconnect is a new session).
    :param participants_active:
        Sessions that have not left.
    :param recordings:
        Recordings (egresses) of the meeting, in any status.
    :param recording_seconds:
        Total ``duration`` of its recordings, in seconds (recordings
        without a duration yet count 0).
    :param events_by_type:
        Analytics events per ``event_type``.
    """

    meeting_id: UUID
    participants_total: int
    participants_active: int
    recordings: int
    recording_seconds: float
    events_by_type: dict[str, int]

    @property
    def events_total(self) -> int:
        """All analytics events of the meeting."""
        return sum(self.events_by_type.values())


# One row per meeting, each part from an index on its meeting_id:
# participants (meeting_id, left_at), recordings (meeting_id) and
# analytics (meeting_id, created_at, id).
_MEETING_STATS = """
SELECT m.id, p.total, p.active, r.recordings, r.seconds, e.types, e.counts
FROM meetings AS m
CROSS JOIN LATERAL (
    SELECT count(*) AS total, count(*) FILTER (WHERE left_at IS NULL) AS active
    FROM participants WHERE meeting_id = m.id
) AS p
CROSS JOIN LATERAL (
    SELECT count(*) AS recordings, coalesce(sum(duration), 0) AS seconds
    FROM recordings WHERE meeting_id = m.id
) AS r
CROSS JOIN LATERAL (
    SELECT array_agg(event_type ORDER BY event_type) AS types,
           array_agg(events ORDER BY event_type) AS counts
    FROM (
        SELECT event_type, count(*) AS events
        FROM analytics WHERE meeting_id = m.id
        GROUP BY event_type
    ) AS by_type
) AS e
WHERE m.id = $1
"""


def meeting_stats_query(meeting_id: UUID) -> Query:
    """The statement of :func:`meeting_stats`."""
    return Query(_MEETING_STATS, (meeting_id,))


@timed_query
async def meeting_stats(
    meeting_id: UUID, *, database: Database | None = None
) -> MeetingStats | None:
    """
    Counts for one meeting: participant sessions (total and active),
    recordings and their total duration, analytics events by type. ``None``
    when there is no such meeting.

    :param meeting_id:
        The meeting.
    :param database:
        Default: the engine of ``piccolo_conf``.
    """
    rows = await _fetch(meeting_stats_query(meeting_id), database)
    if not rows:
        return None
    meeting, total, active, recordings, seconds, types, counts = rows[0]
    return MeetingStats(
        meeting_id=meeting,
        participants_total=total,
        participants_active=active,
        recordings=recordings,
        recording_seconds=float(seconds),
        events_by_type=dict(zip(types or (), counts or (), strict=True)),
    )
