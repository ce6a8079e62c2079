"""
Development data: three LiveKit meetings, eight participants, one finished
recording and the analytics events that tell their story.

:func:`seed` replaces the conference data with it in one transaction, so a
failure leaves the previous data as it was; :func:`seed_if_empty` seeds only
an empty database and never overwrites. :func:`seed` refuses a database
that looks like production unless forced (see
:func:`~conference.devdata.target.ensure_not_production`); :func:`seed_if_empty`
leaves one alone. Both take the same optional ``database`` as
:mod:`conference.queries` and :mod:`conference.ingest` (default: the engine of
``piccolo_conf``) and write in its :meth:`~conference.db.Database.transaction`.

Times are relative to "now": one meeting ended yesterday, two are in
progress. The data obeys the rules real data obeys: a participant leaves
after joining, everyone in an ended meeting left before it ended, the
recording lies inside its meeting, and each join or leave event points at
the participant it is about, at the moment of the join or leave.

Example::

    from conference.devdata.seed import seed

    result = await seed()
    print(result.table())
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from conference.db import Database, get_database
from conference.devdata.events import (
    EventType,
    egress_json,
    participant_json,
    room_json,
    unix_ms,
    webhook_json,
    webhook_parts,
)
from conference.devdata.target import (
    TableRows,
    count_rows,
    current_database,
    ensure_not_production,
    truncate_sql,
)
from conference.errors import ProductionDatabaseError
from conference.tables import AnalyticsEvent, Meeting, Participant, Recording, RecordingStatus

logger = logging.getLogger(__name__)

#: The seeded meetings' room names: the ended one first, then the two in
#: progress. UIs and end-to-end tests look for these.
SEED_ROOM_NAMES: tuple[str, ...] = (
    "weekly-standup",
    "design-review",
    "customer-onboarding-acme",
)

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


class SeedRows(TableRows[Any]):
    """The rows a seed inserts (Piccolo table instances), per table."""


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
        room = room_json(plan.sid, plan.room_name, unix_ms(started))
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
            info = participant_json(person.sid, person.identity, person.name, unix_ms(joined))
            events.add(
                participant_id, EventType.participant_joined, joined, room=room, participant=info
            )
            if left is not None:
                info = participant_json(
                    person.sid, person.identity, person.name, unix_ms(joined), "CLIENT_INITIATED"
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
            unix_ms(started),
            unix_ms(at),
            ended_ms=unix_ms(completed) if final else None,
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
                    event_type.value, event_id, unix_ms(at), webhook_parts(**parts)
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


# --- Writing it -------------------------------------------------------------


async def seed(
    force: bool = False, *, now: datetime | None = None, database: Database | None = None
) -> SeedResult:
    """
    Replace all conference data with the development data, in one
    transaction: if anything fails, the previous data stays.

    :param force:
        Seed even a database that looks like production.
    :param now:
        The moment the data is relative to (default: the current time).
    :param database:
        Default: the engine of ``piccolo_conf`` (:func:`conference.db.get_database`).
    """
    database = database or get_database()
    name = await current_database(database)
    ensure_not_production(name, "wipe and seed", force=force)
    rows = build_seed_rows(now or datetime.now(UTC))
    async with database.transaction():
        await _lock(database)
        await database.query(truncate_sql())
        await _insert(rows, database)
        counts = await count_rows(database)
    logger.info("seeded %s: %s", name, counts)
    return SeedResult(database=name, counts=counts)


async def seed_if_empty(
    *, now: datetime | None = None, database: Database | None = None
) -> SeedResult | None:
    """
    Seed the development data if all the conference tables are empty;
    otherwise, or if the database looks like production, change nothing and
    return ``None`` (the reason is logged). For ``make run``.

    :param now:
        The moment the data is relative to (default: the current time).
    :param database:
        Default: the engine of ``piccolo_conf`` (:func:`conference.db.get_database`).
    """
    database = database or get_database()
    name = await current_database(database)
    try:
        ensure_not_production(name, "seed")
    except ProductionDatabaseError as refusal:
        logger.warning("not seeding: %s", refusal)
        return None
    rows = build_seed_rows(now or datetime.now(UTC))
    async with database.transaction():
        await _lock(database)
        counts = await count_rows(database)
        if any(counts.values()):
            logger.info("not seeding %s: conference tables hold rows %s", name, counts)
            return None
        await _insert(rows, database)
        counts = await count_rows(database)
    logger.info("seeded %s: %s", name, counts)
    return SeedResult(database=name, counts=counts)


async def _lock(database: Database) -> None:
    await database.query(f"SELECT pg_advisory_xact_lock({SEED_LOCK_KEY})")


async def _insert(rows: SeedRows, database: Database) -> None:
    # The ORM renders each table's multi-row INSERT; ``database`` runs it,
    # so the rows go where the caller said, in its transaction.
    for table, table_rows in rows.by_table():
        if table_rows:
            for statement in table.insert(*table_rows).querystrings:
                sql, args = statement.compile_string(engine_type="postgres")
                await database.query(sql, *args)
