"""
The shape of a usage report: grains, buckets and results, as plain data.

Buckets are half-open ``[start, end)``. A day starts at midnight and a week
on Monday at midnight, in the report's time zone (UTC unless told). The
rollups are kept per UTC hour, so a time zone is accepted when every bucket
boundary of the report falls on a whole UTC hour there (most zones, DST
included); a zone such as ``Asia/Kolkata`` (UTC+5:30) is refused with an
error rather than answered approximately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Microseconds in a minute and in an hour: participant and recording time
#: are kept in exact microseconds and divided only when reported.
MICROSECONDS_PER_MINUTE = 60_000_000
MICROSECONDS_PER_HOUR = 3_600_000_000

#: The most buckets one report may have (a year of hours, ten years of days).
MAX_BUCKETS = 10_000


class Grain(str, Enum):
    """How long one bucket of a report is."""

    hour = "hour"
    day = "day"
    week = "week"


@dataclass(frozen=True, slots=True)
class Bucket:
    """
    The usage in ``[start, end)``. Times are clipped to the report's
    ``as_of``: a bucket that is still running counts up to then.

    :param meetings_started:
        Meetings whose ``created_at`` is in the bucket.
    :param participant_sessions:
        Participant sessions (rows of ``participants``: a reconnect is a new
        session) whose ``joined_at`` is in the bucket.
    :param participant_us:
        Participant time inside the bucket, in microseconds: for every
        session, the overlap of ``[joined_at, left_at)`` (``left_at`` unknown:
        up to ``as_of``) with the bucket, summed.
    :param peak_participants:
        The largest number of sessions open at the same instant in the
        bucket, exact from the join and leave times (a session open at
        instant t: ``joined_at <= t < left_at``).
    :param recording_us:
        Recording time inside the bucket, in microseconds: the overlap of
        ``[started_at, completed_at)`` with the bucket; a recording still
        starting, active or ending counts up to ``as_of``, one that failed
        or was aborted without a ``completed_at`` counts nothing.
    :param events:
        Analytics events whose ``created_at`` is in the bucket, by
        ``event_type``.
    """

    start: datetime
    end: datetime
    meetings_started: int = 0
    participant_sessions: int = 0
    participant_us: int = 0
    peak_participants: int = 0
    recording_us: int = 0
    events: dict[str, int] = field(default_factory=dict)

    @property
    def participant_minutes(self) -> float:
        """Participant time in minutes (``participant_us / 60e6``)."""
        return self.participant_us / MICROSECONDS_PER_MINUTE

    @property
    def recording_hours(self) -> float:
        """Recording time in hours (``recording_us / 3.6e9``)."""
        return self.recording_us / MICROSECONDS_PER_HOUR

    def as_dict(self) -> dict[str, object]:
        """The bucket as JSON-ready values (ISO 8601 times)."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "meetings_started": self.meetings_started,
            "participant_sessions": self.participant_sessions,
            "participant_minutes": self.participant_minutes,
            "peak_participants": self.peak_participants,
            "recording_hours": self.recording_hours,
            "events": dict(sorted(self.events.items())),
        }


@dataclass(frozen=True, slots=True)
class Report:
    """
    A usage report: one :class:`Bucket` per grain step from ``start`` to
    ``end``, for one room or all of them, as of ``as_of``.

    :param as_of:
        The moment the rollups were last refreshed: later rows are not in
        the report yet, and running sessions count up to this moment.
        ``None`` when the rollups were never built.
    """

    start: datetime
    end: datetime
    grain: Grain
    tz: str
    room_name: str | None
    as_of: datetime | None
    buckets: list[Bucket]

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready values."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "grain": self.grain.value,
            "tz": self.tz,
            "room_name": self.room_name,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "buckets": [bucket.as_dict() for bucket in self.buckets],
        }


def zone(tz: str) -> ZoneInfo:
    """The IANA time zone ``tz``, or a ValueError saying it is unknown."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Paris'"
        ) from error


def bucket_bounds(
    start: datetime, end: datetime, grain: Grain | str, tz: str = "UTC"
) -> list[tuple[datetime, datetime]]:
    """
    The ``[start, end)`` of every bucket of a report, in UTC. ``start`` is
    moved back to the start of its bucket; the last bucket is the one that
    contains the instant just before ``end``.

    :raises ValueError:
        naive datetimes, ``end`` not after ``start``, too many buckets, an
        unknown grain or zone, or a zone whose bucket boundaries do not fall
        on whole UTC hours.
    """
    grain = _grain(grain)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes (e.g. with tzinfo=UTC)")
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    local_zone = zone(tz)
    local = start.astimezone(local_zone).replace(tzinfo=None)
    if grain is Grain.hour:
        # Local hours are UTC hours wherever the offset is whole hours.
        cursor = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        step = timedelta(hours=1)
        bounds = []
        while cursor < end:
            bounds.append((cursor, cursor + step))
            cursor += step
            if len(bounds) > MAX_BUCKETS:
                raise _too_many()
        for edge, _ in bounds:
            offset = edge.astimezone(local_zone).utcoffset() or timedelta()
            if offset.total_seconds() % 3600:
                raise _not_whole_hours(tz, offset, edge)
        return bounds
    local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if grain is Grain.week:
        local -= timedelta(days=local.weekday())
    step_days = 7 if grain is Grain.week else 1
    edges = [local.replace(tzinfo=local_zone).astimezone(UTC)]
    while edges[-1] < end:
        local += timedelta(days=step_days)
        edges.append(local.replace(tzinfo=local_zone).astimezone(UTC))
        if len(edges) > MAX_BUCKETS:
            raise _too_many()
    _check_whole_hours(edges, local_zone, tz)
    return list(pairwise(edges))


def _grain(grain: Grain | str) -> Grain:
    try:
        return Grain(grain)
    except ValueError:
        names = ", ".join(g.value for g in Grain)
        raise ValueError(f"unknown grain {grain!r}; use one of {names}") from None


def _too_many() -> ValueError:
    return ValueError(f"the report would have more than {MAX_BUCKETS} buckets; use a coarser grain")


def _check_whole_hours(edges: list[datetime], local_zone: ZoneInfo, tz: str) -> None:
    for edge in edges:
        if edge.minute or edge.second or edge.microsecond:
            raise _not_whole_hours(tz, edge.astimezone(local_zone).utcoffset(), edge)


def _not_whole_hours(tz: str, offset: timedelta | None, edge: datetime) -> ValueError:
    return ValueError(
        f"time zone {tz} is UTC{_format_offset(offset)} at {edge.isoformat()}: reports are "
        "rolled up per UTC hour, so their bucket boundaries must fall on whole UTC hours; "
        "use UTC or a zone with whole-hour offsets"
    )


def _format_offset(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
