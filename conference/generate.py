"""
Synthetic conference data at scale, for benchmarks and demos.

:class:`SyntheticData` invents ``meetings`` LiveKit meetings spread over
``days`` of history up to ``until``: busier on weekdays and in working
hours, mostly small meetings with a long tail of all-hands and webinars,
participants who join late, leave early, drop and reconnect, publish
microphone, camera and screen share, and recordings that mostly complete.
Meetings still running at ``until`` have no ``ended_at``, their present
participants no ``left_at``, and no event lies after ``until``.

Everything, UUIDs included, comes from one ``random.Random(seed)`` stream,
so the same ``seed``, ``meetings``, ``days`` and ``until`` give identical
rows, whatever the batch size. :func:`generate` streams the rows into
PostgreSQL with ``COPY`` (asyncpg ``copy_records_to_table``) over two
connections, one transaction per batch of whole meetings, while a worker
thread invents the next batch; memory stays at a few batches (about 250 MB
with the default batch size), however many meetings.

Example::

    from conference.generate import generate

    result = await generate(meetings=1_000, seed=1)
    print(result.counts)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import random
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

# asyncpg's own UUID type: built from 16 bytes without the checks of
# uuid.UUID (a quarter of its cost), and encoded by asyncpg as it is.
from asyncpg.pgproto.pgproto import UUID as PgUUID
from piccolo.columns import Column
from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

from conference.errors import DatabaseNotEmpty
from conference.events import (
    EventType,
    egress_json,
    participant_json,
    room_json,
    track_json,
    webhook_json,
    webhook_parts,
)
from conference.seed import CONFERENCE_TABLES, current_database, ensure_not_production
from conference.tables import AnalyticsEvent, Meeting, Participant, Recording, RecordingStatus

logger = logging.getLogger(__name__)

#: Meetings per COPY batch (and per transaction) unless told otherwise.
DEFAULT_BATCH_SIZE = 1_000

#: COPY streams at once. The server's share of the work (six indexes, two
#: foreign key checks and a JSON body per analytics row) is several times
#: Python's, so two streams keep a 2-core machine busy.
COPY_CONNECTIONS = 2

#: Analytics rows per meeting on average with the distributions below (41.5
#: measured); a guide for choosing ``meetings``: 10 million analytics rows
#: take about 242,000 meetings.
ANALYTICS_PER_MEETING = 41.5

# The columns each COPY fills, named through tables.py so that a renamed
# column fails here at import, not halfway through a load.
COLUMNS: dict[type[Table], tuple[Column, ...]] = {
    Meeting: (
        Meeting.id,
        Meeting.room_sid,
        Meeting.room_name,
        Meeting.created_at,
        Meeting.ended_at,
        Meeting.metadata,
    ),
    Participant: (
        Participant.id,
        Participant.participant_sid,
        Participant.meeting_id,
        Participant.identity,
        Participant.joined_at,
        Participant.left_at,
        Participant.metadata,
    ),
    Recording: (
        Recording.id,
        Recording.meeting_id,
        Recording.egress_id,
        Recording.storage_path,
        Recording.status,
        Recording.started_at,
        Recording.completed_at,
        Recording.file_size,
        Recording.duration,
        Recording.metadata,
    ),
    AnalyticsEvent: (
        AnalyticsEvent.id,
        AnalyticsEvent.webhook_event_id,
        AnalyticsEvent.meeting_id,
        AnalyticsEvent.participant_id,
        AnalyticsEvent.event_type,
        AnalyticsEvent.event_data,
        AnalyticsEvent.created_at,
    ),
}

Row = tuple[Any, ...]

# --- Distributions ----------------------------------------------------------

# Relative meeting starts per UTC hour of day: a team spread over Europe and
# the Americas, quiet at night.
_HOUR_WEIGHTS = (
    0.15, 0.1, 0.1, 0.1, 0.1, 0.15, 0.3, 0.6, 1.0, 1.4, 1.6, 1.5,
    1.1, 1.4, 1.7, 1.8, 1.6, 1.3, 0.9, 0.6, 0.45, 0.35, 0.25, 0.2,
)  # fmt: skip
_WEEKEND_WEIGHT = 0.15

_FIRST_NAMES = (
    "alice", "bob", "carol", "dana", "erik", "frank", "grace", "heidi", "ivan", "judy",
    "kofi", "lena", "mateo", "nina", "omar", "priya", "quinn", "rosa", "sven", "tariq",
    "uma", "victor", "wei", "xenia", "yusuf", "zoe", "amara", "bruno", "chen", "diego",
    "elif", "farah", "goran", "hana", "ines", "jonas", "kenji", "leila", "marta", "noah",
)  # fmt: skip
_LAST_NAMES = (
    "martin", "okafor", "nguyen", "kowalski", "johansson", "mendes", "adeyemi", "braun",
    "petrov", "garcia", "mensah", "schmidt", "rossi", "haddad", "sharma", "obrien",
    "larsen", "silva", "tanaka", "novak", "dubois", "yilmaz", "kim", "moreau", "costa",
    "fischer", "ali", "jensen", "lopez", "murphy", "weber", "ivanova", "sato", "popescu",
    "horvat", "bianchi", "nowak", "ferreira", "keller", "andersen",
)  # fmt: skip
_TEAMS = (
    "platform", "payments", "growth", "mobile", "data", "infra", "design", "sales",
    "support", "marketing", "security", "search", "billing", "identity", "media", "web",
)  # fmt: skip
_RITUALS = ("standup", "weekly-sync", "planning", "retro", "demo", "backlog-grooming")
_AD_HOC = (
    "customer-call", "interview", "incident", "pairing", "office-hours", "design-review",
    "sales-demo", "onboarding",
)  # fmt: skip

_LEAVE_REASONS = ("CLIENT_INITIATED",) * 17 + (
    "PARTICIPANT_REMOVED",
    "CONNECTION_TIMEOUT",
    "MEDIA_FAILURE",
)
_FAILURES = (
    "Start signal not received",
    "pipeline frozen",
    "upload failed: storage returned 503",
)

# Event names as plain strings: the hot loop skips the Enum lookups.
_ROOM_STARTED = EventType.room_started.value
_ROOM_FINISHED = EventType.room_finished.value
_PARTICIPANT_JOINED = EventType.participant_joined.value
_PARTICIPANT_LEFT = EventType.participant_left.value
_TRACK_PUBLISHED = EventType.track_published.value
_TRACK_UNPUBLISHED = EventType.track_unpublished.value

_MINUTE = 60_000  # ms
_DEPARTURE_TIMEOUT = 20_000  # ms: LiveKit closes an empty room 20 s after the last leave


# --- Ids ---------------------------------------------------------------------

# UUIDv7 in RFC 9562's basic layout: 48 bits of Unix milliseconds, version
# 7, variant 10 and 74 random bits (here from the seeded RNG, so ids repeat
# with the seed). PostgreSQL 18's uuidv7() spends the first 12 of those
# random bits on a sub-millisecond fraction instead; both order by the
# millisecond, which is what matters to an index: time-ordered ids land at
# its right edge, so a load touches a few hot pages instead of all of it.
_V7_BITS = (0x7 << 76) | (0x2 << 62)
_LOW_62 = (1 << 62) - 1


_BASE64_TO_ALNUM = bytes.maketrans(b"+/", b"xz")


def _sid(rng: random.Random, prefix: str) -> str:
    """A LiveKit-style id such as ``RM_Xq7NcV2pL9sK``: 12 letters and digits."""
    encoded = binascii.b2a_base64(rng.randbytes(9), newline=False)
    return prefix + encoded.translate(_BASE64_TO_ALNUM).decode()


# --- Rows ---------------------------------------------------------------------


@dataclass
class Batch:
    """The rows of a batch of whole meetings, per table, as COPY records."""

    meetings: list[Row] = field(default_factory=list)
    participants: list[Row] = field(default_factory=list)
    recordings: list[Row] = field(default_factory=list)
    analytics: list[Row] = field(default_factory=list)

    def by_table(self) -> list[tuple[type[Table], list[Row]]]:
        """``(table, records)``, parents before children (the COPY order)."""
        return [
            (Meeting, self.meetings),
            (Participant, self.participants),
            (Recording, self.recordings),
            (AnalyticsEvent, self.analytics),
        ]

    def counts(self) -> dict[str, int]:
        """Rows per table name."""
        return {table._meta.tablename: len(rows) for table, rows in self.by_table()}


class SyntheticData:
    """
    A deterministic stream of synthetic meetings, oldest first.

    :param meetings:
        How many meetings to invent.
    :param seed:
        The random seed: the same seed (with the same other arguments) gives
        the same rows.
    :param days:
        Days of history before ``until`` that the meetings start in.
    :param until:
        The generated "now": meetings running at this moment stay open, and
        no event lies after it.
    """

    def __init__(self, meetings: int, seed: int, days: int, until: datetime) -> None:
        if meetings < 0:
            raise ValueError(f"meetings must be 0 or more, got {meetings}")
        if days < 1:
            raise ValueError(f"days must be 1 or more, got {days}")
        self.meetings = meetings
        self.seed = seed
        self.until = until.astimezone(UTC)
        self.until_ms = _to_ms(self.until)
        self.start_ms = self.until_ms - days * 24 * 60 * _MINUTE
        self._rng = random.Random(seed)
        self._hour_starts, self._hour_cumulative = self._hourly_weights()

    # -- start times: sorted, exactly `meetings` of them, in O(1) memory ----

    def _hourly_weights(self) -> tuple[list[int], list[float]]:
        starts: list[int] = []
        cumulative: list[float] = []
        total = 0.0
        hour_ms = 60 * _MINUTE
        first = self.start_ms - self.start_ms % hour_ms
        for hour_start in range(first, self.until_ms, hour_ms):
            moment = datetime.fromtimestamp(hour_start / 1000, UTC)
            weight = _HOUR_WEIGHTS[moment.hour]
            if moment.weekday() >= 5:
                weight *= _WEEKEND_WEIGHT
            starts.append(hour_start)
            total += weight
            cumulative.append(total)
        return starts, cumulative

    def _start_times(self) -> Iterator[int]:
        """
        Meeting starts in ascending order: sorted uniform quantiles (the
        sequential order-statistics method, no list of N values), mapped
        through the hour-by-hour density.
        """
        rng = self._rng
        n = self.meetings
        total = self._hour_cumulative[-1]
        hour_ms = 60 * _MINUTE
        quantile = 0.0
        for index in range(n):
            quantile = 1.0 - (1.0 - quantile) * rng.random() ** (1.0 / (n - index))
            target = quantile * total
            hour = min(bisect_right(self._hour_cumulative, target), len(self._hour_starts) - 1)
            below = self._hour_cumulative[hour - 1] if hour else 0.0
            width = self._hour_cumulative[hour] - below
            within = (target - below) / width if width else 0.0
            start = self._hour_starts[hour] + int(within * hour_ms)
            yield min(max(start, self.start_ms), self.until_ms)

    # -- batches ---------------------------------------------------------------

    def batches(self, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[Batch]:
        """The meetings with all their rows, ``batch_size`` meetings a batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
        batch = Batch()
        in_batch = 0
        for start in self._start_times():
            self._meeting(start, batch)
            in_batch += 1
            if in_batch == batch_size:
                yield batch
                batch = Batch()
                in_batch = 0
        if in_batch:
            yield batch

    def _uuid(self, ms: int) -> PgUUID:
        """A UUIDv7 for the moment ``ms``, its random bits from the seeded RNG."""
        random_bits = self._rng.getrandbits(74)
        bits = (ms << 80) | _V7_BITS | ((random_bits >> 62) << 64) | (random_bits & _LOW_62)
        return PgUUID(bits.to_bytes(16, "big"))

    def _meeting(self, start: int, batch: Batch) -> None:
        rng = self._rng
        meeting_id = self._uuid(start)
        size = _participant_count(rng)
        people = rng.sample(range(len(_FIRST_NAMES) * len(_LAST_NAMES)), size)
        room_name = _room_name(rng, size, people)
        room = _Room(meeting_id, _sid(rng, "RM_"), room_name, start)
        room.json = room_json(room.sid, room_name, start)
        duration = _clamp(
            int(rng.lognormvariate(math.log(30), 0.6) * _MINUTE), 2 * _MINUTE, 240 * _MINUTE
        )
        planned_end = start + duration
        room_parts = webhook_parts(room=room.json)
        self._event(batch, room.id, None, _ROOM_STARTED, start, room_parts)

        last_leave = start
        first_join = planned_end
        for position, person in enumerate(people):
            first, last = divmod(person, len(_LAST_NAMES))
            identity = f"{_FIRST_NAMES[first]}.{_LAST_NAMES[last]}"
            name = f"{_FIRST_NAMES[first].title()} {_LAST_NAMES[last].title()}"
            joined, left = _session_times(rng, start, planned_end, duration, position)
            # One in twelve drops out and comes back a few seconds later: two
            # participant rows (sessions) with the same identity.
            if rng.random() < 1 / 12 and left - joined > 2 * _MINUTE:
                drop = joined + _MINUTE + int(rng.random() * (left - joined - 2 * _MINUTE))
                back = drop + 2_000 + int(rng.random() * 13_000)
                sessions = [(joined, drop, "SIGNAL_CLOSE"), (back, left, "CLIENT_INITIATED")]
            else:
                sessions = [(joined, left, rng.choice(_LEAVE_REASONS))]
            for session_joined, session_left, reason in sessions:
                if session_joined > self.until_ms:
                    continue  # joins after the generated "now": not yet
                first_join = min(first_join, session_joined)
                last_leave = max(last_leave, session_left)
                role = "host" if position == 0 else "member"
                self._session(
                    batch, room, identity, name, role, session_joined, session_left, reason
                )

        ended = last_leave + _DEPARTURE_TIMEOUT
        if first_join < planned_end and rng.random() < (0.1 if size == 2 else 0.3):
            self._recording(batch, room, first_join, last_leave)
        self._event(batch, room.id, None, _ROOM_FINISHED, ended, room_parts)
        batch.meetings.append(
            (
                meeting_id,
                room.sid,
                room_name,
                _dt(start),
                _dt(ended) if ended <= self.until_ms else None,
                '{"synthetic": true}',
            )
        )

    def _event(
        self,
        batch: Batch,
        meeting_id: PgUUID,
        participant_id: PgUUID | None,
        event_type: str,
        at: int,
        parts: str,
    ) -> None:
        """An analytics row, unless ``at`` lies after the generated "now"."""
        if at > self.until_ms:
            return
        event_id = _sid(self._rng, "EV_")
        data = webhook_json(event_type, event_id, at, parts)
        batch.analytics.append(
            (self._uuid(at), event_id, meeting_id, participant_id, event_type, data, _dt(at))
        )

    def _session(
        self,
        batch: Batch,
        room: _Room,
        identity: str,
        name: str,
        role: str,
        joined: int,
        left: int,
        reason: str,
    ) -> None:
        rng = self._rng
        participant_id = self._uuid(joined)
        sid = _sid(rng, "PA_")
        present = left > self.until_ms
        # As the webhook store keeps it: the app's metadata, the name, and
        # why the participant left once it has.
        metadata = f'{{"name": "{name}", "role": "{role}"'
        metadata += "}" if present else f', "disconnect_reason": "{reason}"}}'
        batch.participants.append(
            (
                participant_id,
                sid,
                room.id,
                identity,
                _dt(joined),
                None if present else _dt(left),
                metadata,
            )
        )
        active = participant_json(sid, identity, name, joined)
        self._event(
            batch, room.id, participant_id, _PARTICIPANT_JOINED, joined,
            webhook_parts(room=room.json, participant=active),
        )  # fmt: skip
        tracks = []
        if rng.random() < 0.95:
            tracks.append(("MICROPHONE", joined + 300 + int(rng.random() * 2_700), left))
        if rng.random() < 0.75:
            tracks.append(("CAMERA", joined + 1_000 + int(rng.random() * 4_000), left))
        if rng.random() < 0.12 and left - joined > 2 * _MINUTE:
            shared = joined + int(rng.random() * (left - joined - _MINUTE))
            stopped = min(left, shared + 30_000 + int(rng.expovariate(1 / 480) * 1000))
            tracks.append(("SCREEN_SHARE", shared, stopped))
        for source, published, unpublished in tracks:
            published = min(published, left)
            unpublished = max(published, unpublished - int(rng.random() * 500))
            track = track_json(_sid(rng, "TR_"), source)
            parts = webhook_parts(room=room.json, participant=active, track=track)
            self._event(batch, room.id, participant_id, _TRACK_PUBLISHED, published, parts)
            self._event(batch, room.id, participant_id, _TRACK_UNPUBLISHED, unpublished, parts)
        gone = participant_json(sid, identity, name, joined, disconnect_reason=reason)
        self._event(
            batch, room.id, participant_id, _PARTICIPANT_LEFT, left,
            webhook_parts(room=room.json, participant=gone),
        )  # fmt: skip

    def _recording(self, batch: Batch, room: _Room, first_join: int, last_leave: int) -> None:
        rng = self._rng
        started = first_join + 5_000 + int(rng.random() * 115_000)
        if started + 10_000 > last_leave or started > self.until_ms:
            return  # nobody stayed long enough to record, or not started yet
        # Most recordings run until the room empties; some are stopped early.
        if rng.random() < 0.85:
            stopped = last_leave - int(rng.random() * 10_000)
        else:
            stopped = started + int(rng.random() * (last_leave - started))
        stopped = max(stopped, started + 5_000)
        completed = stopped + 1_000 + int(rng.random() * 7_000)
        updated = started + 1_000 + int(rng.random() * 2_000)
        egress_id = _sid(rng, "EG_")
        day = datetime.fromtimestamp(room.start / 1000, UTC).date().isoformat()
        path = f"s3://livekit-recordings/{room.name}/{day}/{egress_id}.mp4"
        bytes_per_second = 150_000 + int(rng.random() * 250_000)  # 1.2 to 3.2 Mbit/s
        seconds = (stopped - started) / 1000
        error: str | None = None
        file_size: int | None = None
        duration: float | None = None
        if completed > self.until_ms:
            status = RecordingStatus.active
        else:
            roll = rng.random()
            if roll < 0.93:
                status, duration = RecordingStatus.complete, seconds
            elif roll < 0.97:
                status, error = RecordingStatus.failed, rng.choice(_FAILURES)
            elif roll < 0.99:
                status = RecordingStatus.aborted
            else:
                status, duration = RecordingStatus.limit_reached, seconds
            if duration is not None:
                file_size = int(duration * bytes_per_second)
        finished = status is not RecordingStatus.active
        metadata = '{"request": "room_composite", "layout": "grid"}'
        if error is not None:
            metadata = f'{{"request": "room_composite", "layout": "grid", "error": "{error}"}}'
        batch.recordings.append(
            (
                self._uuid(started),
                room.id,
                egress_id,
                path,
                status.value,
                _dt(started),
                _dt(completed) if finished else None,
                file_size,
                duration,
                metadata,
            )
        )
        lifecycle: list[tuple[EventType, RecordingStatus, int, int | None]] = [
            (EventType.egress_started, RecordingStatus.starting, started, None),
            (EventType.egress_updated, RecordingStatus.active, updated, None),
        ]
        if finished:
            lifecycle.append((EventType.egress_ended, status, completed, completed))
        for event_type, state, at, ended in lifecycle:
            egress = egress_json(
                egress_id, room.sid, room.name, state.value, started, at, ended,
                location=path if ended is not None else None,
                size=file_size, duration=duration, error=error if ended else None,
            )  # fmt: skip
            self._event(
                batch, room.id, None, event_type.value, at, webhook_parts(egressInfo=egress)
            )


@dataclass
class _Room:
    """The facts of one meeting that its events repeat."""

    id: PgUUID
    sid: str
    name: str
    start: int
    json: str = ""


def _participant_count(rng: random.Random) -> int:
    """Three in ten meetings are one-to-one; most are small; a few are big."""
    roll = rng.random()
    if roll < 0.30:
        return 2
    if roll < 0.97:
        return min(3 + int(rng.lognormvariate(1.0, 0.7)), 40)
    return min(20 + int(rng.lognormvariate(3.5, 0.6)), 500)


def _room_name(rng: random.Random, size: int, people: list[int]) -> str:
    if size == 2:
        a, b = (_FIRST_NAMES[person // len(_LAST_NAMES)] for person in people)
        return f"1on1-{a}-{b}"
    if size >= 20:
        kind = "all-hands" if rng.random() < 0.5 else "webinar"
        return f"{kind}-{base64.b32encode(rng.randbytes(5)).decode().lower()}"
    if rng.random() < 0.6:
        return f"{rng.choice(_TEAMS)}-{rng.choice(_RITUALS)}"
    return f"{rng.choice(_AD_HOC)}-{base64.b32encode(rng.randbytes(5)).decode().lower()}"


def _session_times(
    rng: random.Random, start: int, end: int, duration: int, position: int
) -> tuple[int, int]:
    """When one participant joins and leaves (ms), inside [start, end]."""
    if position == 0:
        joined = start + int(rng.random() * 30_000)  # the host opens the room
    elif rng.random() < 0.85:
        joined = start + int(rng.expovariate(1 / 90) * 1000)  # on time, give or take
    else:
        joined = start + int(rng.random() * 0.8 * duration)  # late
    joined = min(joined, end - _MINUTE)
    if rng.random() < 0.2:
        left = joined + int(rng.random() * (end - joined))  # leaves early
    else:
        left = end - int(rng.expovariate(1 / 30) * 1000)  # stays to the end
    return joined, max(left, joined + 1_000)


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


def _to_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# --- Loading it -----------------------------------------------------------------


@dataclass(frozen=True)
class GenerateProgress:
    """Where a load is, after each committed batch."""

    meetings_done: int
    meetings_total: int
    rows: dict[str, int]


@dataclass(frozen=True)
class GenerateResult:
    """
    What :func:`generate` loaded.

    :param database:
        The database loaded (its name).
    :param counts:
        Rows inserted per table name.
    :param seconds:
        Wall-clock time of the load, including the final ``ANALYZE``.
    :param until:
        The generated "now" the data ends at.
    """

    database: str
    counts: dict[str, int]
    seconds: float
    until: datetime

    @property
    def rows(self) -> int:
        """Rows inserted, all tables."""
        return sum(self.counts.values())

    def table(self) -> str:
        """Rows per table as a small text table, for a terminal."""
        width = max(len(name) for name in self.counts)
        digits = max(len(f"{rows:,}") for rows in self.counts.values())
        lines = [f"{'table':<{width}}  {'rows':>{digits}}"]
        lines += [f"{name:<{width}}  {rows:>{digits},}" for name, rows in self.counts.items()]
        return "\n".join(lines)


def default_until() -> datetime:
    """
    Midnight UTC today: a default "now" that stays put for a day, so that
    the same ``seed`` gives the same rows all day without ``until``.
    """
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def generate(
    meetings: int,
    seed: int,
    *,
    days: int = 30,
    until: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    replace: bool = False,
    force: bool = False,
    connections: int = COPY_CONNECTIONS,
    progress: Callable[[GenerateProgress], None] | None = None,
) -> GenerateResult:
    """
    Invent ``meetings`` meetings (see :class:`SyntheticData`) and load them
    with COPY, one transaction per batch of whole meetings. An interrupted
    load keeps the batches already committed: complete meetings, with all
    their rows.

    :param meetings:
        How many meetings; each brings about :data:`ANALYTICS_PER_MEETING`
        analytics rows and 7 participants.
    :param seed:
        The random seed; the same arguments give the same rows.
    :param days:
        Days of history the meetings start in.
    :param until:
        The generated "now" (default :func:`default_until`).
    :param batch_size:
        Meetings per COPY batch and transaction.
    :param replace:
        Delete the existing conference data first (its own transaction, before
        the load). Without it the conference tables must be empty.
    :param force:
        Load even into a database that looks like production.
    :param connections:
        COPY streams working at once.
    :param progress:
        Called after each committed batch.
    """
    began = time.perf_counter()
    data = SyntheticData(meetings=meetings, seed=seed, days=days, until=until or default_until())
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
    database = await current_database()
    ensure_not_production(database, "wipe and fill" if replace else "fill", force=force)
    engine = Meeting._meta.db
    assert isinstance(engine, PostgresEngine)
    pool = [await engine.get_new_connection() for _ in range(max(connections, 1))]
    try:
        if replace:
            await pool[0].execute(_truncate_sql())
        else:
            await _ensure_empty(pool[0], database)
        loader = _Loader(data, batch_size, progress)
        await loader.run(pool)
        # Fresh planner statistics, so that the first benchmark queries do
        # not run on the estimates of empty tables.
        await pool[0].execute(
            "ANALYZE " + ", ".join(table._meta.tablename for table in CONFERENCE_TABLES)
        )
    finally:
        for connection in pool:
            await connection.close()
    seconds = time.perf_counter() - began
    logger.info(
        "generated %s meetings in %s: %s in %.1f s", meetings, database, loader.totals, seconds
    )
    return GenerateResult(
        database=database, counts=loader.totals, seconds=seconds, until=data.until
    )


class _Loader:
    """
    One producer, several COPY streams. The producer invents batches in a
    worker thread (the rows are plain Python work); each connection takes
    the next batch and COPYs it in its own transaction. The server does most
    of the work (six indexes and two foreign-key checks per analytics row),
    so two streams keep both cores busy while Python invents the next batch.
    """

    def __init__(
        self,
        data: SyntheticData,
        batch_size: int,
        progress: Callable[[GenerateProgress], None] | None,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.progress = progress
        self.totals = dict.fromkeys((table._meta.tablename for table in CONFERENCE_TABLES), 0)
        self.meetings_done = 0

    async def run(self, pool: list[asyncpg.Connection]) -> None:
        # At most one batch waits per connection: memory stays at a few
        # batches however many meetings there are.
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=len(pool))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._produce(queue, len(pool)))
                for connection in pool:
                    group.create_task(self._consume(queue, connection))
        except ExceptionGroup as failure:
            # One task failed and the group cancelled the others: surface
            # that one error as it is.
            raise failure.exceptions[0] from None

    async def _produce(self, queue: asyncio.Queue[Batch | None], consumers: int) -> None:
        batches = self.data.batches(self.batch_size)
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            await queue.put(batch)
        for _ in range(consumers):
            await queue.put(None)

    async def _consume(
        self, queue: asyncio.Queue[Batch | None], connection: asyncpg.Connection
    ) -> None:
        while (batch := await queue.get()) is not None:
            async with connection.transaction():
                for table, records in batch.by_table():
                    if records:
                        await connection.copy_records_to_table(
                            table._meta.tablename,
                            records=records,
                            columns=[column._meta.db_column_name for column in COLUMNS[table]],
                        )
            for name, rows in batch.counts().items():
                self.totals[name] += rows
            self.meetings_done += len(batch.meetings)
            if self.progress is not None:
                self.progress(
                    GenerateProgress(self.meetings_done, self.data.meetings, dict(self.totals))
                )


def _truncate_sql() -> str:
    return "TRUNCATE " + ", ".join(table._meta.tablename for table in reversed(CONFERENCE_TABLES))


async def _ensure_empty(connection: asyncpg.Connection, database: str) -> None:
    for table in CONFERENCE_TABLES:
        name = table._meta.tablename
        if await connection.fetchval(f"SELECT EXISTS (SELECT 1 FROM {name})"):
            raise DatabaseNotEmpty(
                f"the conference tables of {database!r} already hold data ({name} is "
                "not empty); run again with --replace to delete it first, or point "
                "DATABASE_URL at an empty database"
            )
