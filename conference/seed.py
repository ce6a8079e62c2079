"""
Development data: three LiveKit meetings, eight participants, one finished
recording and the analytics events that tell their story.

:func:`seed` replaces the conference data with it in one transaction, so a
failure leaves the previous data as it was; :func:`seed_if_empty` seeds only
an empty database and never overwrites. :func:`seed` refuses a database
that looks like production unless forced (see :func:`ensure_not_production`);
:func:`seed_if_empty` leaves one alone.

Times are relative to "now": one meeting ended yesterday, two are in
progress. The data obeys the rules real data obeys: a participant leaves
after joining, everyone in an ended meeting left before it ended, the
recording lies inside its meeting, and each join or leave event points at
the participant it is about, at the moment of the join or leave.

Example::

    from conference.seed import seed

    result = await seed()
    print(result.table())
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

from conference.errors import ProductionDatabaseError
from conference.events import (
    EventType,
    egress_json,
    participant_json,
    room_json,
    webhook_json,
    webhook_parts,
)
from conference.settings import Settings, get_settings
from conference.tables import AnalyticsEvent, Meeting, Participant, Recording, RecordingStatus

logger = logging.getLogger(__name__)

#: The seeded meetings' room names: the ended one first, then the two in
#: progress. UIs and end-to-end tests look for these.
SEED_ROOM_NAMES: tuple[str, ...] = (
    "weekly-standup",
    "design-review",
    "customer-onboarding-acme",
)

#: The conference tables, parents first (the order to insert in).
CONFERENCE_TABLES: tuple[type[Table], ...] = (Meeting, Participant, Recording, AnalyticsEvent)

# pg_advisory_xact_lock key shared by every writer of seed data, so that two
# `make run` started together cannot both find the tables empty and both
# seed ("conf" in ASCII).
SEED_LOCK_KEY = 0x636F6E66

# Seeded rows keep their ids from one seed to the next (uuid5 of a name), so
# links to the seeded meetings survive a re-seed.
_ID_NAMESPACE = uuid.UUID("6f1c9a52-3f43-4c58-9b1e-2d5a0c7e8b41")


@dataclass(frozen=True)
class SeedResult:
    """
    What a seed left in the database.

    :param database:
        The database seeded (its name, no credentials).
    :param counts:
        Rows per conference table after seeding, by table name.
    """

    database: str
    counts: dict[str, int]

    def summary(self) -> str:
        """One line: ``meetings 3, participants 8, recordings 1, analytics 19``."""
        return ", ".join(f"{table} {rows}" for table, rows in self.counts.items())

    def table(self) -> str:
        """The rows per table as a small text table, for a terminal."""
        width = max(len(name) for name in self.counts)
        lines = [f"{'table':<{width}}  rows"]
        lines += [f"{name:<{width}}  {rows:>4}" for name, rows in self.counts.items()]
        return "\n".join(lines)


@dataclass
class SeedRows:
    """The rows a seed inserts, per table, parents before children."""

    meetings: list[Meeting] = field(default_factory=list)
    participants: list[Participant] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    analytics: list[AnalyticsEvent] = field(default_factory=list)

    def by_table(self) -> list[tuple[type[Table], list[Any]]]:
        """``(table, rows)`` in insertion order."""
        return [
            (Meeting, self.meetings),
            (Participant, self.participants),
            (Recording, self.recordings),
            (AnalyticsEvent, self.analytics),
        ]


# --- The data ---------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    identity: str
    name: str
    sid: str
    joins: timedelta  # after the meeting started
    leaves: timedelta | None  # after the meeting started; None: still in
    role: str = "member"


@dataclass(frozen=True)
class _Recording:
    egress_id: str
    starts: timedelta  # after the meeting started
    stops: timedelta
    bytes_per_second: int


@dataclass(frozen=True)
class _MeetingPlan:
    room_name: str
    title: str
    sid: str
    starts: timedelta  # before now
    lasts: timedelta | None  # None: still in progress
    people: tuple[_Person, ...]
    recording: _Recording | None = None


_PLANS = (
    _MeetingPlan(
        room_name=SEED_ROOM_NAMES[0],
        title="Weekly standup",
        sid="RM_Xq7NcV2pL9sK",
        starts=timedelta(days=1, hours=2),
        lasts=timedelta(minutes=32),
        people=(
            _Person(
                "alice",
                "Alice Martin",
                "PA_f3Kq8ZrW1mTn",
                timedelta(seconds=20),
                timedelta(minutes=31, seconds=40),
                role="host",
            ),
            _Person(
                "bob",
                "Bob Okafor",
                "PA_9hLm2VxQ4cRe",
                timedelta(minutes=1),
                timedelta(minutes=30, seconds=5),
            ),
            _Person(
                "carol",
                "Carol Nguyen",
                "PA_Tn6pY3kB8wJd",
                timedelta(minutes=3, seconds=30),
                timedelta(minutes=24),
            ),
        ),
        recording=_Recording(
            egress_id="EG_Ks8dP2mQ7vXa",
            starts=timedelta(minutes=1, seconds=15),
            stops=timedelta(minutes=30, seconds=47, milliseconds=480),
            bytes_per_second=262_500,  # 2.1 Mbit/s, 720p with audio
        ),
    ),
    _MeetingPlan(
        room_name=SEED_ROOM_NAMES[1],
        title="Design review: onboarding flow",
        sid="RM_b4WzH8eJ2nQy",
        starts=timedelta(minutes=40),
        lasts=None,
        people=(
            _Person(
                "dana", "Dana Kowalski", "PA_Lr5sD9gX2vHu", timedelta(minutes=1), None, role="host"
            ),
            _Person(
                "erik",
                "Erik Johansson",
                "PA_2cMn7QwE4tZa",
                timedelta(minutes=2),
                timedelta(minutes=20),
            ),
            _Person("frank", "Frank Mendes", "PA_Wy8kF3jR6pBo", timedelta(minutes=5), None),
        ),
    ),
    _MeetingPlan(
        room_name=SEED_ROOM_NAMES[2],
        title="Customer onboarding: Acme Corp",
        sid="RM_p7GhT1xN5dKm",
        starts=timedelta(minutes=12),
        lasts=None,
        people=(
            _Person(
                "grace",
                "Grace Adeyemi",
                "PA_Jd4vB9nS2qLe",
                timedelta(seconds=30),
                None,
                role="host",
            ),
            _Person(
                "guest-heidi-acme",
                "Heidi Braun (Acme)",
                "PA_Zm1xC6tV8rGf",
                timedelta(minutes=3),
                None,
                role="guest",
            ),
        ),
    ),
)


def _stable_id(kind: str, name: str) -> uuid.UUID:
    return uuid.uuid5(_ID_NAMESPACE, f"{kind}:{name}")


def build_seed_rows(now: datetime) -> SeedRows:
    """
    The development data, with times relative to ``now`` (an aware
    datetime; microseconds are dropped so the times read cleanly).
    """
    now = now.astimezone(UTC).replace(microsecond=0)
    rows = SeedRows()
    for plan in _PLANS:
        started = now - plan.starts
        ended = started + plan.lasts if plan.lasts is not None else None
        meeting_id = _stable_id("meeting", plan.room_name)
        rows.meetings.append(
            Meeting(
                id=meeting_id,
                room_sid=plan.sid,
                room_name=plan.room_name,
                created_at=started,
                ended_at=ended,
                metadata={"title": plan.title},
            )
        )
        events = _Events(rows, meeting_id, plan.room_name)
        room = room_json(plan.sid, plan.room_name, _ms(started))
        events.add(None, EventType.room_started, started, room=room)

        for person in plan.people:
            participant_id = _stable_id("participant", f"{plan.room_name}/{person.identity}")
            joined = started + person.joins
            left = started + person.leaves if person.leaves is not None else None
            rows.participants.append(
                Participant(
                    id=participant_id,
                    participant_sid=person.sid,
                    meeting_id=meeting_id,
                    identity=person.identity,
                    joined_at=joined,
                    left_at=left,
                    metadata=_participant_metadata(person),
                )
            )
            info = participant_json(person.sid, person.identity, person.name, _ms(joined))
            events.add(
                participant_id, EventType.participant_joined, joined, room=room, participant=info
            )
            if left is not None:
                info = participant_json(
                    person.sid, person.identity, person.name, _ms(joined), "CLIENT_INITIATED"
                )
                events.add(
                    participant_id, EventType.participant_left, left, room=room, participant=info
                )

        if plan.recording is not None:
            _add_recording(rows, events, plan, meeting_id, started)
        if ended is not None:
            events.add(None, EventType.room_finished, ended, room=room)
    return rows


def _add_recording(
    rows: SeedRows,
    events: _Events,
    plan: _MeetingPlan,
    meeting_id: uuid.UUID,
    meeting_started: datetime,
) -> None:
    assert plan.recording is not None
    spec = plan.recording
    started = meeting_started + spec.starts
    completed = meeting_started + spec.stops
    duration = (completed - started).total_seconds()
    file_size = round(duration * spec.bytes_per_second)
    day = meeting_started.date().isoformat()
    path = f"s3://livekit-recordings/{plan.room_name}/{day}/{spec.egress_id}.mp4"
    rows.recordings.append(
        Recording(
            id=_stable_id("recording", spec.egress_id),
            meeting_id=meeting_id,
            egress_id=spec.egress_id,
            storage_path=path,
            status=RecordingStatus.complete.value,
            started_at=started,
            completed_at=completed,
            file_size=file_size,
            duration=duration,
            metadata={"request": "room_composite", "layout": "speaker"},
        )
    )
    updated = started + timedelta(seconds=2)
    for event_type, status, at in (
        (EventType.egress_started, RecordingStatus.starting, started),
        (EventType.egress_updated, RecordingStatus.active, updated),
        (EventType.egress_ended, RecordingStatus.complete, completed),
    ):
        final = event_type is EventType.egress_ended
        egress = egress_json(
            spec.egress_id,
            plan.sid,
            plan.room_name,
            status.value,
            _ms(started),
            _ms(at),
            ended_ms=_ms(completed) if final else None,
            location=path if final else None,
            size=file_size,
            duration=duration,
        )
        events.add(None, event_type, at, egressInfo=egress)


class _Events:
    """Adds one meeting's analytics rows, with stable webhook ids."""

    def __init__(self, rows: SeedRows, meeting_id: uuid.UUID, room_name: str) -> None:
        self.rows = rows
        self.meeting_id = meeting_id
        self.room_name = room_name

    def add(
        self,
        participant_id: uuid.UUID | None,
        event_type: EventType,
        at: datetime,
        **parts: str,
    ) -> None:
        number = len(self.rows.analytics)
        digest = _stable_id("event", f"{self.room_name}/{number}").bytes[:9]
        event_id = "EV_" + base64.b64encode(digest, b"xz").decode()
        self.rows.analytics.append(
            AnalyticsEvent(
                webhook_event_id=event_id,
                meeting_id=self.meeting_id,
                participant_id=participant_id,
                event_type=event_type.value,
                event_data=webhook_json(
                    event_type.value, event_id, _ms(at), webhook_parts(**parts)
                ),
                created_at=at,
            )
        )


def _participant_metadata(person: _Person) -> dict[str, str]:
    # As the webhook store keeps it: the app's metadata, the name, and why
    # the participant left once it has.
    metadata = {"name": person.name, "role": person.role}
    if person.leaves is not None:
        metadata["disconnect_reason"] = "CLIENT_INITIATED"
    return metadata


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


# --- Writing it -------------------------------------------------------------


def ensure_not_production(
    database: str, action: str, force: bool = False, settings: Settings | None = None
) -> None:
    """
    Raise :class:`ProductionDatabaseError` if ``database`` looks like
    production: its name contains ``prod`` (any case), or
    ``CONFERENCE_ENV=production``. ``force=True`` skips the check.

    :param database:
        The database's name (``current_database()``).
    :param action:
        What would happen to it, for the message: ``"wipe and seed"``.
    """
    if force:
        return
    settings = settings or get_settings()
    reasons = []
    if settings.production:
        reasons.append("CONFERENCE_ENV is 'production'")
    if "prod" in database.lower():
        reasons.append(f"its name {database!r} contains 'prod'")
    if reasons:
        raise ProductionDatabaseError(
            f"refusing to {action} database {database!r}: it looks like production "
            f"({' and '.join(reasons)}). If it really is a development or throwaway "
            "database, run again with --force (force=True from Python)"
        )


async def seed(force: bool = False, *, now: datetime | None = None) -> SeedResult:
    """
    Replace all conference data with the development data, in one
    transaction: if anything fails, the previous data stays.

    :param force:
        Seed even a database that looks like production.
    :param now:
        The moment the data is relative to (default: the current time).
    """
    engine = _engine()
    database = await current_database()
    ensure_not_production(database, "wipe and seed", force=force)
    rows = build_seed_rows(now or datetime.now(UTC))
    async with engine.transaction():
        await _lock()
        # TRUNCATE is transactional in PostgreSQL: a rollback brings the
        # rows back. Without CASCADE, a table of another app that references
        # these makes it fail instead of being emptied too.
        names = ", ".join(table._meta.tablename for table in reversed(CONFERENCE_TABLES))
        await Meeting.raw(f"TRUNCATE {names}")
        await _insert(rows)
        counts = await _counts()
    logger.info("seeded %s: %s", database, counts)
    return SeedResult(database=database, counts=counts)


async def seed_if_empty(*, now: datetime | None = None) -> SeedResult | None:
    """
    Seed the development data if all four conference tables are empty;
    otherwise, or if the database looks like production, change nothing and
    return ``None`` (the reason is logged). For ``make run``.

    :param now:
        The moment the data is relative to (default: the current time).
    """
    engine = _engine()
    database = await current_database()
    try:
        ensure_not_production(database, "seed")
    except ProductionDatabaseError as refusal:
        logger.warning("not seeding: %s", refusal)
        return None
    rows = build_seed_rows(now or datetime.now(UTC))
    async with engine.transaction():
        await _lock()
        counts = await _counts()
        if any(counts.values()):
            logger.info("not seeding %s: conference tables hold rows %s", database, counts)
            return None
        await _insert(rows)
        counts = await _counts()
    logger.info("seeded %s: %s", database, counts)
    return SeedResult(database=database, counts=counts)


def _engine() -> PostgresEngine:
    engine = Meeting._meta.db
    assert isinstance(engine, PostgresEngine)
    return engine


async def current_database() -> str:
    """The name of the database the conference tables live in."""
    rows = await Meeting.raw("SELECT current_database() AS name")
    return str(rows[0]["name"])


async def _lock() -> None:
    await Meeting.raw(f"SELECT pg_advisory_xact_lock({SEED_LOCK_KEY})")


async def _insert(rows: SeedRows) -> None:
    for table, table_rows in rows.by_table():
        if table_rows:
            await table.insert(*table_rows)


async def _counts() -> dict[str, int]:
    selects = ", ".join(
        f"(SELECT count(*) FROM {table._meta.tablename}) AS {table._meta.tablename}"
        for table in CONFERENCE_TABLES
    )
    rows = await Meeting.raw(f"SELECT {selects}")
    return {name: int(value) for name, value in rows[0].items()}
