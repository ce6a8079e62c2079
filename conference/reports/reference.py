"""
The same reports computed the slow, obvious way: straight from the raw
tables, bucket by bucket at the report's grain, with no rollup, no span and
no hour in between. The tests hold the rollups to it exactly, and the
benchmark times the rollups against it.
"""

from __future__ import annotations

from datetime import datetime

from conference.db import Database, get_database
from conference.reports.model import Grain, Report, bucket_bounds
from conference.reports.query import build_report
from conference.reports.rollup import RUNNING_RECORDING_STATES

# $1, $2: bucket starts and ends; $3: as of; $4: the room, or NULL for all.
_BUCKETS = """
WITH buckets AS (
    SELECT lo AS bucket, lo, least(hi, $3) AS hi
    FROM unnest($1::timestamptz[], $2::timestamptz[]) AS b(lo, hi)
), rooms AS (
    SELECT id, created_at FROM meetings WHERE $4::text IS NULL OR room_name = $4::text
)
"""

_FIGURES = (
    _BUCKETS
    + f"""
, sessions AS (
    SELECT b.bucket, p.joined_at >= b.lo AS joined_here,
           greatest(p.joined_at, b.lo) AS cs, least(coalesce(p.left_at, $3), b.hi) AS ce
    FROM buckets b
    JOIN participants p ON p.joined_at < b.hi AND (p.left_at IS NULL OR p.left_at >= b.lo)
    JOIN rooms m ON m.id = p.meeting_id
), steps AS (
    SELECT bucket, t, sum(delta) AS delta FROM (
        SELECT bucket, cs AS t, 1 AS delta FROM sessions WHERE ce > cs
        UNION ALL
        SELECT bucket, ce, -1 FROM sessions WHERE ce > cs
    ) e GROUP BY bucket, t
), peaks AS (
    SELECT bucket, max(level) AS peak FROM (
        SELECT bucket, sum(delta) OVER (PARTITION BY bucket ORDER BY t) AS level FROM steps
    ) l GROUP BY bucket
), recorded AS (
    SELECT b.bucket,
           sum((extract(epoch FROM least(x.rec_end, b.hi))
                - extract(epoch FROM greatest(r.started_at, b.lo))) * 1000000)
               FILTER (WHERE least(x.rec_end, b.hi) > greatest(r.started_at, b.lo)) AS us
    FROM buckets b
    JOIN recordings r ON r.started_at IS NOT NULL AND r.started_at < b.hi
    JOIN rooms m ON m.id = r.meeting_id
    CROSS JOIN LATERAL (SELECT CASE
        WHEN r.completed_at IS NOT NULL THEN r.completed_at
        WHEN r.status IN {RUNNING_RECORDING_STATES!r} THEN $3
        ELSE r.started_at END AS rec_end) x
    GROUP BY b.bucket
)
SELECT b.bucket,
       (SELECT count(*) FROM rooms m WHERE m.created_at >= b.lo AND m.created_at < b.hi)
           AS meetings_started,
       (SELECT count(*) FROM sessions s WHERE s.bucket = b.bucket AND s.joined_here)
           AS participant_sessions,
       (SELECT coalesce(sum((extract(epoch FROM ce) - extract(epoch FROM cs)) * 1000000)
                        FILTER (WHERE ce > cs), 0)::bigint
          FROM sessions s WHERE s.bucket = b.bucket) AS participant_us,
       coalesce((SELECT peak FROM peaks p WHERE p.bucket = b.bucket), 0) AS peak_participants,
       coalesce((SELECT us FROM recorded r WHERE r.bucket = b.bucket), 0)::bigint AS recording_us
FROM buckets b
"""
)

_EVENTS = (
    _BUCKETS
    + """
SELECT b.bucket, a.event_type, count(*) AS events
FROM buckets b
JOIN analytics a ON a.created_at >= b.lo AND a.created_at < b.hi
JOIN rooms m ON m.id = a.meeting_id
GROUP BY b.bucket, a.event_type
"""
)


async def brute_force_report(
    start: datetime,
    end: datetime,
    *,
    as_of: datetime,
    grain: Grain | str = Grain.day,
    room_name: str | None = None,
    tz: str = "UTC",
    database: Database | None = None,
) -> Report:
    """
    :func:`~conference.reports.usage_report` computed from the raw tables,
    with running sessions and recordings counted up to ``as_of`` and rows
    dated later ignored. Slow at scale (it reads every participant session
    and event in the range): a reference, not an API for dashboards.
    """
    bounds = bucket_bounds(start, end, grain, tz)
    database = database or get_database()
    starts = [lo for lo, _ in bounds]
    ends = [hi for _, hi in bounds]
    figures = await database.query(_FIGURES, starts, ends, as_of, room_name)
    events = await database.query(_EVENTS, starts, ends, as_of, room_name)
    return build_report(bounds, Grain(grain), tz, room_name, as_of, figures, events)
