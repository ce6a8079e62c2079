"""
Reports read from the rollups: :func:`usage_report`.

One statement for the figures and one for the events, each an index range
scan (the unique keys lead with the room name, ``""`` for all rooms) grouped
into the report's buckets with ``date_trunc`` in the report's time zone: of
``report_days`` when every bucket starts at a UTC midnight (day and week
reports in UTC), else of ``report_hours`` / ``report_event_hours``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from conference.db import Database, get_database
from conference.reports.model import Bucket, Grain, Report, bucket_bounds

ALL_ROOMS = ""

_FIGURES = """
SELECT date_trunc($1, hour, $2) AS bucket,
       sum(meetings_started)::bigint AS meetings_started,
       sum(participant_sessions)::bigint AS participant_sessions,
       sum(participant_us)::bigint AS participant_us,
       max(peak_participants) AS peak_participants,
       sum(recording_us)::bigint AS recording_us
FROM report_hours
WHERE room_name = $3 AND hour >= $4 AND hour < $5
GROUP BY 1
"""

_EVENTS = """
SELECT date_trunc($1, hour, $2) AS bucket, event_type, sum(events)::bigint AS events
FROM report_event_hours
WHERE room_name = $3 AND hour >= $4 AND hour < $5
GROUP BY 1, 2
"""

# The same from report_days, when every bucket starts at a UTC midnight.
_DAY_FIGURES = """
SELECT date_trunc($1, day, $2) AS bucket,
       sum(meetings_started)::bigint AS meetings_started,
       sum(participant_sessions)::bigint AS participant_sessions,
       sum(participant_us)::bigint AS participant_us,
       max(peak_participants) AS peak_participants,
       sum(recording_us)::bigint AS recording_us
FROM report_days
WHERE room_name = $3 AND day >= $4 AND day < $5
GROUP BY 1
"""

_DAY_EVENTS = """
SELECT date_trunc($1, d.day, $2) AS bucket, e.key AS event_type,
       sum(e.value::bigint)::bigint AS events
FROM report_days d CROSS JOIN LATERAL jsonb_each_text(d.events) AS e
WHERE d.room_name = $3 AND d.day >= $4 AND d.day < $5
GROUP BY 1, 2
"""

_AS_OF = "SELECT as_of FROM report_state ORDER BY id LIMIT 1"


def _one_statement(figures: str, events: str) -> str:
    """
    Figures, events (a JSON object per bucket) and ``as_of`` in one
    statement: one round trip instead of three. Always at least one row
    (``bucket`` NULL when there is no data).
    """
    return f"""
WITH figures AS ({figures}),
events AS (
    SELECT bucket, jsonb_object_agg(event_type, events)::text AS events
    FROM ({events}) e GROUP BY bucket
)
SELECT ({_AS_OF}) AS as_of, bucket, f.meetings_started, f.participant_sessions,
       f.participant_us, f.peak_participants, f.recording_us, e.events
FROM (SELECT 1) AS one
LEFT JOIN (figures f FULL JOIN events e USING (bucket)) ON true
"""


_HOUR_REPORT = _one_statement(_FIGURES, _EVENTS)
_DAY_REPORT = _one_statement(_DAY_FIGURES, _DAY_EVENTS)

# A daily report in UTC days: the rows of report_days as they are, with no
# grouping at all ($1 room, $2 and $3 the range).
_DAILY_REPORT = f"""
SELECT ({_AS_OF}) AS as_of, d.day AS bucket, d.meetings_started, d.participant_sessions,
       d.participant_us, d.peak_participants, d.recording_us, d.events::text AS events
FROM (SELECT 1) AS one
LEFT JOIN report_days d ON d.room_name = $1 AND d.day >= $2 AND d.day < $3
"""

_ROOMS = """
SELECT DISTINCT room_name FROM report_hours
WHERE room_name <> '' AND hour >= $1 AND hour < $2
ORDER BY room_name LIMIT $3
"""


async def usage_report(
    start: datetime,
    end: datetime,
    *,
    grain: Grain | str = Grain.day,
    room_name: str | None = None,
    tz: str = "UTC",
    database: Database | None = None,
) -> Report:
    """
    Usage from ``start`` to ``end``, one bucket per ``grain``, from the
    rollups (as fresh as the last :func:`conference.reports.refresh`; see
    :attr:`Report.as_of`). Every bucket is present, with zeros where nothing
    happened.

    Example::

        from conference import reports

        report = await reports.usage_report(
            datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), grain="day"
        )
        for bucket in report.buckets:
            print(bucket.start.date(), bucket.participant_minutes, bucket.peak_participants)

    :param start:
        Timezone-aware; moved back to the start of its bucket.
    :param end:
        Timezone-aware, exclusive.
    :param grain:
        ``hour``, ``day`` (from midnight) or ``week`` (from Monday midnight).
    :param room_name:
        One room's usage; default all rooms.
    :param tz:
        The IANA time zone of the day and week boundaries (default UTC); one
        whose boundaries fall on whole UTC hours (see
        :func:`~conference.reports.model.bucket_bounds`).
    :param database:
        Default: the engine of ``piccolo_conf``.
    :raises ValueError:
        a bad range, grain or time zone.
    """
    bounds = bucket_bounds(start, end, grain, tz)
    grain = Grain(grain)
    database = database or get_database()
    room = ALL_ROOMS if room_name is None else room_name
    lo, hi = bounds[0][0], bounds[-1][1]
    by_day = grain is not Grain.hour and all(
        edge.hour == 0 and edge.minute == 0 for bound in bounds for edge in bound
    )
    if by_day and grain is Grain.day:
        rows = await database.query(_DAILY_REPORT, room, lo, hi)
    else:
        rows = await database.query(
            _DAY_REPORT if by_day else _HOUR_REPORT, grain.value, tz, room, lo, hi
        )
    figures = [row for row in rows if row["bucket"] is not None]
    events = [
        {"bucket": row["bucket"], "event_type": event_type, "events": count}
        for row in figures
        if row["events"]
        for event_type, count in json.loads(row["events"]).items()
    ]
    return build_report(bounds, grain, tz, room_name, rows[0]["as_of"], figures, events)


def build_report(
    bounds: list[tuple[datetime, datetime]],
    grain: Grain,
    tz: str,
    room_name: str | None,
    as_of: datetime | None,
    figures: list[Any],
    events: list[Any],
) -> Report:
    """A :class:`Report` from rows keyed by bucket start (figures and events)."""
    by_start = {row["bucket"]: row for row in figures}
    events_by_start: dict[datetime, dict[str, int]] = {}
    for row in events:
        if row["events"]:
            events_by_start.setdefault(row["bucket"], {})[row["event_type"]] = int(row["events"])
    buckets = []
    for bucket_start, bucket_end in bounds:
        row = by_start.get(bucket_start)
        buckets.append(
            Bucket(
                start=bucket_start,
                end=bucket_end,
                meetings_started=int(row["meetings_started"] or 0) if row else 0,
                participant_sessions=int(row["participant_sessions"] or 0) if row else 0,
                participant_us=int(row["participant_us"] or 0) if row else 0,
                peak_participants=int(row["peak_participants"] or 0) if row else 0,
                recording_us=int(row["recording_us"] or 0) if row else 0,
                events=dict(sorted(events_by_start.get(bucket_start, {}).items())),
            )
        )
    return Report(
        start=bounds[0][0],
        end=bounds[-1][1],
        grain=grain,
        tz=tz,
        room_name=room_name,
        as_of=as_of,
        buckets=buckets,
    )


async def room_names(
    start: datetime, end: datetime, *, limit: int = 1000, database: Database | None = None
) -> list[str]:
    """The rooms with usage from ``start`` to ``end``, by name (at most ``limit``)."""
    database = database or get_database()
    rows = await database.query(_ROOMS, start, end, limit)
    return [row["room_name"] for row in rows]
