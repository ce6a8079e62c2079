"""
The usage rollups: ``report_hours`` and ``report_event_hours`` (one row per
UTC hour and room, plus the all-rooms series under the room name ``""``),
kept equal to what :mod:`conference.reports.reference` computes from the raw
tables, by :func:`refresh`.

**What changed, without triggers or new columns.** A refresh runs in one
``REPEATABLE READ`` transaction and records a watermark: the oldest
transaction still running at its snapshot that could write to this database
(or, with none, the snapshot's ``xmax``). The next refresh treats as changed
every row whose ``xmin`` (the transaction that wrote this version of it) is
that old or newer: a superset of what was written since, whatever the order in
which LiveKit's webhooks arrived or who wrote the row (webhooks, the admin,
another service). ``meetings``, ``participants`` and ``recordings`` are
scanned for that; ``analytics`` rows are never updated and their keys are
``uuidv7()`` (time-ordered), so only its newest keys are read, through the
primary key.

**Which hours.** A changed row marks its meeting. ``report_meetings`` holds,
per meeting, its room and the span of every timestamp of its rows, as the
last refresh saw them; a changed meeting's hours before (old span, old room)
and after (new span, new room) are recomputed, from the raw rows, hour by
hour: so a ``participant_left`` for yesterday recomputes yesterday, and
a room renamed moves its history. Meetings still running (a participant or a
recording without an end) also get the hours from the last refresh to now.
Deleted meetings, participants and recordings are found by comparing row
counts with ``report_meetings``. A ``TRUNCATE`` (``seed``, ``generate
--replace``) changes the tables' file nodes, and the next refresh rebuilds.

**Not seen:** ``analytics`` rows deleted on their own (retention): the
rollups go on counting them until their meetings' hours are recomputed for
another reason, :func:`invalidate` or a rebuild; and ``analytics`` rows
written with a key chosen by the writer that is older than the last refresh
(give such backfills to :func:`invalidate`, or rebuild).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from conference.db import Database, get_database
from conference.errors import QueryTimeout

logger = logging.getLogger(__name__)

#: The advisory lock that keeps two refreshes from running at once.
LOCK_KEY = 0x636F6E6617  # "conf" + issue 17

#: Analytics keys generated up to this long before the oldest transaction
#: still running at a refresh are read again by the next one (clock skew
#: between backends, a transaction that began before its key was made).
ANALYTICS_KEY_MARGIN = timedelta(minutes=10)

#: Past this many transactions between two refreshes, ``age(xmin)`` is no
#: longer reliable (wraparound): rebuild instead.
MAX_TRANSACTIONS_BETWEEN_REFRESHES = 1_000_000_000

SOURCE_TABLES = ("meetings", "participants", "recordings", "analytics")

#: Milliseconds :func:`refresh` waits for each raw table before it lets go
#: of them all and tries again; under PostgreSQL's ``deadlock_timeout`` (1 s).
LOCK_ATTEMPT_MS = 200

#: Seconds between those tries, and how long :func:`refresh` keeps trying.
LOCK_RETRY_PAUSE = 0.2
LOCK_WAIT_SECONDS = 60.0

REPORT_TABLE_NAMES = ("report_meetings", "report_hours", "report_event_hours", "report_days")

#: A recording in one of these states without ``completed_at`` is running.
RUNNING_RECORDING_STATES = ("starting", "active", "ending")


@dataclass(frozen=True)
class RefreshResult:
    """
    What one :func:`refresh` did.

    :param as_of:
        The rollups now hold everything up to this moment.
    :param rebuilt:
        Everything was recomputed (first run, a ``TRUNCATE`` seen, or asked).
    :param meetings:
        Meetings whose rows changed (or were deleted) since the last refresh.
    :param hours:
        ``(hour, room)`` rows recomputed, the all-rooms series included.
    :param skipped:
        Another refresh was running; this one did nothing.
    """

    as_of: datetime | None
    rebuilt: bool
    meetings: int
    hours: int
    seconds: float
    skipped: bool = False


def uuid7_floor(moment: datetime) -> uuid.UUID:
    """The smallest UUIDv7 whose timestamp is ``moment`` (to the millisecond)."""
    milliseconds = max(int(moment.timestamp() * 1000), 0)
    return uuid.UUID(int=milliseconds << 80)


# --- Statements -------------------------------------------------------------

# The watermark: the oldest transaction running at our snapshot that may
# write to this database (those of backends seen connected to another one
# cannot), else the snapshot's xmax. Rows written from it on may be new.
_SNAPSHOT = """
WITH snapshot AS (SELECT pg_current_snapshot() AS s)
SELECT pg_current_xact_id()::text::bigint AS xid,
       coalesce(
           (SELECT min(x::text::bigint) FROM pg_snapshot_xip(snapshot.s) AS x
             WHERE x::text::bigint % 4294967296 NOT IN (
                 SELECT backend_xid::text::bigint FROM pg_stat_activity
                  WHERE backend_xid IS NOT NULL AND datname <> current_database())),
           pg_snapshot_xmax(snapshot.s)::text::bigint) AS xmin,
       now() AS as_of,
       (SELECT least(now(), min(xact_start)) FROM pg_stat_activity
         WHERE backend_xid IS NOT NULL AND datname = current_database()) AS oldest_running,
       (SELECT string_agg(pg_relation_filenode(name::regclass)::text, ',' ORDER BY name)
          FROM unnest($1::text[]) AS name) AS filenodes
FROM snapshot
"""

_STATE = """
SELECT as_of, snapshot_xmin, analytics_floor, filenodes FROM report_state ORDER BY id LIMIT 1
"""

_TEMP_TABLES = """
CREATE TEMP TABLE report_changed (meeting_id uuid PRIMARY KEY) ON COMMIT DROP;
CREATE TEMP TABLE report_dirty (hour timestamptz, room_name text,
                                PRIMARY KEY (hour, room_name)) ON COMMIT DROP;
CREATE TEMP TABLE report_spans (meeting_id uuid PRIMARY KEY, room_name text,
                                created_at timestamptz, span_start timestamptz,
                                span_end timestamptz, sessions int,
                                recordings int) ON COMMIT DROP
"""

# Every row written by a transaction at least as new as the last refresh's
# snapshot xmin: age(xmin) counts transactions from it to ours.
_CHANGED_SINCE = """
INSERT INTO report_changed
SELECT id FROM meetings WHERE age(xmin) <= $1
UNION SELECT meeting_id FROM participants WHERE age(xmin) <= $1
UNION SELECT meeting_id FROM recordings WHERE age(xmin) <= $1
UNION SELECT meeting_id FROM analytics WHERE id >= $2 AND age(xmin) <= $1
ON CONFLICT DO NOTHING
"""

_CHANGED_ALL = "INSERT INTO report_changed SELECT id FROM meetings"

# The span of every timestamp of a changed meeting's rows; no end while a
# session or a recording runs. least/greatest skip NULLs.
_SPANS = f"""
INSERT INTO report_spans
SELECT m.id, m.room_name, m.created_at,
       least(m.created_at, m.ended_at, p.first, r.first, a.first),
       CASE WHEN p.running OR r.running THEN NULL
            ELSE greatest(m.created_at, m.ended_at, p.last, r.last, a.last) END,
       coalesce(p.n, 0), coalesce(r.n, 0)
FROM report_changed c
JOIN meetings m ON m.id = c.meeting_id
LEFT JOIN LATERAL (
    SELECT count(*) AS n, min(joined_at) AS first, max(left_at) AS last,
           bool_or(left_at IS NULL) AS running
    FROM participants WHERE meeting_id = m.id
) p ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS n, min(started_at) AS first,
           max(coalesce(completed_at, started_at)) AS last,
           bool_or(started_at IS NOT NULL AND completed_at IS NULL
                   AND status IN {RUNNING_RECORDING_STATES!r}) AS running
    FROM recordings WHERE meeting_id = m.id
) r ON true
LEFT JOIN LATERAL (
    SELECT (SELECT min(created_at) FROM analytics WHERE meeting_id = m.id) AS first,
           (SELECT max(created_at) FROM analytics WHERE meeting_id = m.id) AS last
) a ON true
"""

# The hours a span covers, up to the refresh ($1 as_of); an open span (no
# end) covered the hours up to the moment it was last computed ($2).
_DIRTY_FROM = """
INSERT INTO report_dirty
SELECT DISTINCT g.hour, room.name
FROM {source} s
CROSS JOIN LATERAL generate_series(
    date_trunc('hour', s.span_start, 'UTC'),
    date_trunc('hour', least(coalesce(s.span_end, $2), $1), 'UTC'),
    interval '1 hour') AS g(hour)
CROSS JOIN LATERAL (VALUES (s.room_name), ('')) AS room(name)
WHERE s.span_start < $1 {where}
ON CONFLICT DO NOTHING
"""

_DIRTY_OLD_SPANS = _DIRTY_FROM.format(
    source="report_meetings",
    where="AND s.meeting_id IN (SELECT meeting_id FROM report_changed)",
)
_DIRTY_NEW_SPANS = _DIRTY_FROM.format(source="report_spans", where="")

# Meetings that were running (or had rows dated later) at the last refresh
# ($2): the hours from then to now ($1) changed for them, rows or not.
_DIRTY_TAIL = """
INSERT INTO report_dirty
SELECT DISTINCT g.hour, room.name
FROM report_meetings s
CROSS JOIN LATERAL generate_series(
    date_trunc('hour', greatest(s.span_start, $2), 'UTC'),
    date_trunc('hour', least(coalesce(s.span_end, $1), $1), 'UTC'),
    interval '1 hour') AS g(hour)
CROSS JOIN LATERAL (VALUES (s.room_name), ('')) AS room(name)
WHERE (s.span_end IS NULL OR s.span_end >= $2) AND s.span_start < $1
ON CONFLICT DO NOTHING
"""

_COUNTS = """
SELECT (SELECT count(*) FROM meetings) AS meetings,
       (SELECT count(*) FROM report_meetings) AS known_meetings,
       (SELECT count(*) FROM participants) AS participants,
       (SELECT coalesce(sum(sessions), 0) FROM report_meetings) AS known_participants,
       (SELECT count(*) FROM recordings) AS recordings,
       (SELECT coalesce(sum(recordings), 0) FROM report_meetings) AS known_recordings
"""

_DELETED_MEETINGS = """
SELECT meeting_id FROM report_meetings rm
WHERE NOT EXISTS (SELECT 1 FROM meetings m WHERE m.id = rm.meeting_id)
"""

_MISCOUNTED_MEETINGS = """
INSERT INTO report_changed
SELECT rm.meeting_id FROM report_meetings rm
LEFT JOIN (SELECT meeting_id, count(*) AS n FROM participants GROUP BY meeting_id) p
       ON p.meeting_id = rm.meeting_id
LEFT JOIN (SELECT meeting_id, count(*) AS n FROM recordings GROUP BY meeting_id) r
       ON r.meeting_id = rm.meeting_id
WHERE rm.sessions <> coalesce(p.n, 0) OR rm.recordings <> coalesce(r.n, 0)
ON CONFLICT DO NOTHING
"""

_DIRTY_DELETED = _DIRTY_FROM.format(
    source="report_meetings", where="AND s.meeting_id = ANY($3::uuid[])"
)

_SAVE_SPANS = """
INSERT INTO report_meetings AS rm
    (meeting_id, room_name, created_at, span_start, span_end, sessions, recordings)
SELECT meeting_id, room_name, created_at, span_start, span_end, sessions, recordings
FROM report_spans
ON CONFLICT (meeting_id) DO UPDATE SET
    room_name = EXCLUDED.room_name, created_at = EXCLUDED.created_at,
    span_start = EXCLUDED.span_start, span_end = EXCLUDED.span_end,
    sessions = EXCLUDED.sessions, recordings = EXCLUDED.recordings
"""

# The meetings behind each dirty cell: those whose span reaches into its
# hour, in its room (any room for ""). $1: as_of.
_CELL_MEETINGS = """
WITH bounds AS (
    SELECT min(hour) AS lo, max(hour) + interval '1 hour' AS hi FROM report_dirty
), candidates AS (
    SELECT rm.meeting_id, rm.room_name, rm.created_at, rm.span_start, rm.span_end
    FROM report_meetings rm, bounds b
    WHERE (rm.span_end IS NULL OR rm.span_end >= b.lo) AND rm.span_start < b.hi
      AND rm.span_start < $1
), meeting_hours AS (
    SELECT g.hour, c.room_name, c.meeting_id, c.created_at
    FROM candidates c
    CROSS JOIN bounds b
    CROSS JOIN LATERAL generate_series(
        date_trunc('hour', greatest(c.span_start, b.lo), 'UTC'),
        least(coalesce(c.span_end, $1), $1, b.hi), interval '1 hour') AS g(hour)
)
-- Two equality joins (hash joins), not one join on an OR.
SELECT d.hour, d.room_name, m.meeting_id, m.created_at,
       least(d.hour + interval '1 hour', $1) AS cell_end
FROM meeting_hours m JOIN report_dirty d ON d.hour = m.hour AND d.room_name = m.room_name
UNION ALL
SELECT d.hour, d.room_name, m.meeting_id, m.created_at,
       least(d.hour + interval '1 hour', $1) AS cell_end
FROM meeting_hours m JOIN report_dirty d ON d.hour = m.hour AND d.room_name = ''
"""

_CELL_MEETINGS_TABLE = "CREATE TEMP TABLE report_cell_meetings ON COMMIT DROP AS " + _CELL_MEETINGS

_DELETE_DIRTY = """
DELETE FROM report_hours h USING report_dirty d
WHERE h.hour = d.hour AND h.room_name = d.room_name;
DELETE FROM report_event_hours h USING report_dirty d
WHERE h.hour = d.hour AND h.room_name = d.room_name
"""

# Every figure of every dirty cell, from the raw rows. $1: as_of.
_INSERT_HOURS = f"""
WITH sessions AS (
    SELECT cm.hour, cm.room_name, p.joined_at >= cm.hour AS joined_here,
           greatest(p.joined_at, cm.hour) AS cs,
           least(coalesce(p.left_at, $1), cm.cell_end) AS ce
    FROM report_cell_meetings cm
    JOIN participants p ON p.meeting_id = cm.meeting_id
    WHERE p.joined_at < cm.cell_end AND (p.left_at IS NULL OR p.left_at >= cm.hour)
), session_totals AS (
    SELECT hour, room_name, count(*) FILTER (WHERE joined_here) AS joined,
           coalesce(sum((extract(epoch FROM ce) - extract(epoch FROM cs)) * 1000000)
                    FILTER (WHERE ce > cs), 0)::bigint AS us
    FROM sessions GROUP BY hour, room_name
), steps AS (
    SELECT hour, room_name, t, sum(delta) AS delta FROM (
        SELECT hour, room_name, cs AS t, 1 AS delta FROM sessions WHERE ce > cs
        UNION ALL
        SELECT hour, room_name, ce, -1 FROM sessions WHERE ce > cs
    ) e GROUP BY hour, room_name, t
), peaks AS (
    SELECT hour, room_name, max(level) AS peak FROM (
        SELECT hour, room_name,
               sum(delta) OVER (PARTITION BY hour, room_name ORDER BY t) AS level
        FROM steps
    ) l GROUP BY hour, room_name
), recorded AS (
    SELECT cm.hour, cm.room_name,
           coalesce(sum((extract(epoch FROM least(x.rec_end, cm.cell_end))
                         - extract(epoch FROM greatest(r.started_at, cm.hour))) * 1000000)
                    FILTER (WHERE least(x.rec_end, cm.cell_end)
                                  > greatest(r.started_at, cm.hour)), 0)::bigint AS us
    FROM report_cell_meetings cm
    JOIN recordings r ON r.meeting_id = cm.meeting_id
    CROSS JOIN LATERAL (SELECT CASE
        WHEN r.completed_at IS NOT NULL THEN r.completed_at
        WHEN r.status IN {RUNNING_RECORDING_STATES!r} THEN $1
        ELSE r.started_at END AS rec_end) x
    WHERE r.started_at IS NOT NULL AND r.started_at < cm.cell_end
    GROUP BY cm.hour, cm.room_name
), started AS (
    SELECT hour, room_name,
           count(*) FILTER (WHERE created_at >= hour AND created_at < cell_end) AS n
    FROM report_cell_meetings GROUP BY hour, room_name
)
INSERT INTO report_hours (hour, room_name, meetings_started, participant_sessions,
                          participant_us, peak_participants, recording_us)
SELECT s.hour, s.room_name, s.n, coalesce(t.joined, 0), coalesce(t.us, 0),
       coalesce(p.peak, 0), coalesce(r.us, 0)
FROM started s
LEFT JOIN session_totals t USING (hour, room_name)
LEFT JOIN peaks p USING (hour, room_name)
LEFT JOIN recorded r USING (hour, room_name)
WHERE s.n > 0 OR t.joined > 0 OR t.us > 0 OR p.peak > 0 OR r.us > 0
"""

_INSERT_EVENT_HOURS = """
INSERT INTO report_event_hours (hour, room_name, event_type, events)
SELECT cm.hour, cm.room_name, a.event_type, count(*)
FROM report_cell_meetings cm
JOIN analytics a ON a.meeting_id = cm.meeting_id
                AND a.created_at >= cm.hour AND a.created_at < cm.cell_end
GROUP BY cm.hour, cm.room_name, a.event_type
"""

# The UTC days of the dirty hours, added up again from the hour rows.
_DIRTY_DAYS = """
CREATE TEMP TABLE report_dirty_days ON COMMIT DROP AS
SELECT DISTINCT date_trunc('day', hour, 'UTC') AS day, room_name FROM report_dirty
"""

_DELETE_DIRTY_DAYS = """
DELETE FROM report_days d USING report_dirty_days x
WHERE d.day = x.day AND d.room_name = x.room_name
"""

_INSERT_DAYS = """
INSERT INTO report_days (day, room_name, meetings_started, participant_sessions,
                         participant_us, peak_participants, recording_us, events)
SELECT x.day, x.room_name, coalesce(h.started, 0), coalesce(h.sessions, 0),
       coalesce(h.participant_us, 0), coalesce(h.peak, 0), coalesce(h.recording_us, 0),
       coalesce(e.events, '{}'::jsonb)
FROM report_dirty_days x
CROSS JOIN LATERAL (
    SELECT count(*) AS n, sum(meetings_started) AS started, sum(participant_sessions) AS sessions,
           sum(participant_us) AS participant_us, max(peak_participants) AS peak,
           sum(recording_us) AS recording_us
    FROM report_hours
    WHERE room_name = x.room_name AND hour >= x.day AND hour < x.day + interval '24 hours'
) h
CROSS JOIN LATERAL (
    SELECT jsonb_object_agg(event_type, n) AS events FROM (
        SELECT event_type, sum(events) AS n FROM report_event_hours
        WHERE room_name = x.room_name AND hour >= x.day AND hour < x.day + interval '24 hours'
        GROUP BY event_type
    ) t
) e
WHERE h.n > 0 OR e.events IS NOT NULL
"""

_SAVE_STATE = """
WITH gone AS (DELETE FROM report_state)
INSERT INTO report_state (as_of, snapshot_xmin, analytics_floor, filenodes, refreshed_at)
VALUES ($1, $2, $3, $4, clock_timestamp())
"""

# Read one by one, a refresh held meetings while it waited for analytics,
# which `seed --force` held while it waited for meetings: a deadlock. In the
# order a TRUNCATE of them takes them (children first), to wait less.
_LOCK_SOURCES = f"LOCK TABLE {', '.join(reversed(SOURCE_TABLES))} IN ACCESS SHARE MODE"

_REBUILD = "TRUNCATE report_meetings, report_hours, report_event_hours, report_days"


# --- Refresh ----------------------------------------------------------------


async def refresh(
    *,
    rebuild: bool = False,
    lock_wait: float = LOCK_WAIT_SECONDS,
    database: Database | None = None,
) -> RefreshResult:
    """
    Bring the rollups up to date with the raw tables, in one transaction:
    only the hours that changed since the last refresh, or everything on the
    first run, after a ``TRUNCATE`` or with ``rebuild``. Safe to run at any
    time and as often as wanted (a refresh with nothing new only extends
    running meetings up to now); a refresh that finds another one running
    returns at once with ``skipped``.

    It first takes the four raw tables (``ACCESS SHARE``: writes go on), so
    that it never waits for one while holding another: a ``TRUNCATE`` or a
    schema change that holds one is waited for, and is never the victim of a
    deadlock with the refresh.

    :param rebuild:
        Recompute everything from the raw tables.
    :param lock_wait:
        Seconds to keep trying to take the raw tables before raising
        :class:`~conference.errors.QueryTimeout`.
    :param database:
        Default: the engine of ``piccolo_conf``.
    :raises ValueError:
        when called inside a transaction: a refresh needs its own
        (``REPEATABLE READ``, one snapshot for every statement).
    """
    database = database or get_database()
    if database.engine.current_transaction.get() is not None:
        raise ValueError("refresh() runs its own REPEATABLE READ transaction; call it outside one")
    began = time.perf_counter()
    give_up = time.monotonic() + lock_wait
    while True:
        try:
            async with database.transaction():
                await database.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                await _lock_sources(database)
                locked = await database.query(
                    "SELECT pg_try_advisory_xact_lock($1) AS ok", LOCK_KEY
                )
                if not locked[0]["ok"]:
                    logger.info("another rollup refresh is running; skipped")
                    seconds = time.perf_counter() - began
                    return RefreshResult(None, False, 0, 0, seconds, skipped=True)
                result = await _refresh(database, rebuild)
            break
        except _SourcesBusy as busy:
            if time.monotonic() >= give_up:
                raise QueryTimeout(
                    f"the raw tables stayed locked for {lock_wait:g} s (by a TRUNCATE, a "
                    "schema change or another long transaction); the rollups were not "
                    "refreshed, try again later",
                    sqlstate=busy.sqlstate,
                ) from busy
            await asyncio.sleep(LOCK_RETRY_PAUSE)
    seconds = time.perf_counter() - began
    logger.info(
        "rollups refreshed as of %s%s: %s meetings, %s hour rows in %.2f s",
        result.as_of.isoformat() if result.as_of else "-",
        " (rebuilt)" if result.rebuilt else "",
        result.meetings,
        result.hours,
        seconds,
    )
    return RefreshResult(result.as_of, result.rebuilt, result.meetings, result.hours, seconds)


class _SourcesBusy(Exception):
    """Another transaction holds a raw table too strongly; try again."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


async def _lock_sources(database: Database) -> None:
    """
    Take the raw tables before the first query takes the snapshot (so that
    it sees what a ``TRUNCATE`` that held them committed). Each is waited for
    only :data:`LOCK_ATTEMPT_MS`, well under ``deadlock_timeout``: then all
    are let go (:class:`_SourcesBusy`), and whoever holds one never waits on
    the refresh long enough to be chosen as a deadlock's victim.
    """
    await database.query(f"SET LOCAL lock_timeout = {LOCK_ATTEMPT_MS}")
    try:
        await database.query(_LOCK_SOURCES)
    except QueryTimeout as error:
        raise _SourcesBusy(error.sqlstate) from error
    await database.query("SET LOCAL lock_timeout TO DEFAULT")


async def _refresh(database: Database, rebuild: bool) -> RefreshResult:
    (now,) = await database.query(_SNAPSHOT, list(SOURCE_TABLES))
    as_of: datetime = now["as_of"]
    states = await database.query(_STATE)
    state = states[0] if states else None
    transactions = now["xid"] - state["snapshot_xmin"] if state else 0
    if state is None:
        reason = "no rollups yet"
    elif state["filenodes"] != now["filenodes"]:
        reason = "a conference table was truncated or rewritten"
    elif transactions > MAX_TRANSACTIONS_BETWEEN_REFRESHES:
        reason = f"{transactions} transactions since the last refresh"
    elif rebuild:
        reason = "asked to"
    else:
        reason = ""
    for statement in _TEMP_TABLES.split(";"):
        await database.query(statement)

    if reason:
        logger.info("rebuilding the usage rollups: %s", reason)
        await database.query(_REBUILD)
        await database.query(_CHANGED_ALL)
        last_as_of = as_of
    else:
        assert state is not None
        last_as_of = state["as_of"]
        await database.query(_CHANGED_SINCE, int(transactions), state["analytics_floor"])

    # Hours of running meetings since the last refresh, and the old spans of
    # the changed meetings (the mirror still holds what it knew then).
    if not reason:
        await database.query(_DIRTY_TAIL, as_of, last_as_of)
    meetings = await _mark_changed(database, as_of, last_as_of)

    counts = (await database.query(_COUNTS))[0]
    if counts["known_meetings"] > counts["meetings"]:
        deleted = [row["meeting_id"] for row in await database.query(_DELETED_MEETINGS)]
        await database.query(_DIRTY_DELETED, as_of, last_as_of, deleted)
        await database.query(
            "DELETE FROM report_meetings WHERE meeting_id = ANY($1::uuid[])", deleted
        )
        meetings += len(deleted)
        counts = (await database.query(_COUNTS))[0]
    if (
        counts["known_participants"] != counts["participants"]
        or counts["known_recordings"] != counts["recordings"]
    ):
        await database.query("TRUNCATE report_changed, report_spans")
        await database.query(_MISCOUNTED_MEETINGS)
        meetings += await _mark_changed(database, as_of, last_as_of)

    # Temporary tables have no statistics until analysed: without them the
    # planner guesses a handful of rows and picks nested loops.
    await database.query("ANALYZE report_dirty")
    await database.query(_CELL_MEETINGS_TABLE, as_of)
    await database.query("ANALYZE report_cell_meetings")
    for statement in _DELETE_DIRTY.split(";"):
        await database.query(statement)
    await database.query(_INSERT_HOURS, as_of)
    await database.query(_INSERT_EVENT_HOURS)
    for statement in (_DIRTY_DAYS, _DELETE_DIRTY_DAYS, _INSERT_DAYS):
        await database.query(statement)
    hours = (await database.query("SELECT count(*) AS n FROM report_dirty"))[0]["n"]

    if reason:
        # Fresh planner statistics for tables just filled from empty.
        await database.query("ANALYZE " + ", ".join(REPORT_TABLE_NAMES))
    oldest = now["oldest_running"] or as_of
    await database.query(
        _SAVE_STATE,
        as_of,
        now["xmin"],
        uuid7_floor(oldest - ANALYTICS_KEY_MARGIN),
        now["filenodes"],
    )
    return RefreshResult(as_of, bool(reason), meetings, hours, 0.0)


async def _mark_changed(database: Database, as_of: datetime, last_as_of: datetime) -> int:
    """Spans of the meetings in ``report_changed``: dirty hours before and after, saved."""
    await database.query(_DIRTY_OLD_SPANS, as_of, last_as_of)
    await database.query(_SPANS)
    # A span without an end now runs up to this refresh.
    await database.query(_DIRTY_NEW_SPANS, as_of, as_of)
    await database.query(_SAVE_SPANS)
    rows = await database.query("SELECT count(*) AS n FROM report_spans")
    return int(rows[0]["n"])


async def invalidate(start: datetime, end: datetime, *, database: Database | None = None) -> int:
    """
    Recompute the hours from ``start`` to ``end`` at the next refresh, for
    every room: after deleting ``analytics`` rows on their own (retention)
    or backfilling rows with keys of your own. Returns how many meetings
    were marked.

    It marks the meetings whose span reaches into the range as changed, by
    forgetting their known counts; the next :func:`refresh` recomputes all
    their hours.
    """
    database = database or get_database()
    rows = await database.query(
        """
        UPDATE report_meetings SET sessions = -1
        WHERE span_start < $2 AND (span_end IS NULL OR span_end >= $1)
        RETURNING meeting_id
        """,
        start,
        end,
    )
    return len(rows)
