"""
A deterministic stream of synthetic LiveKit meetings, as COPY records.

:class:`SyntheticData` invents ``meetings`` meetings spread over ``days``
of history up to ``until`` (see :mod:`~conference.devdata.distributions`
for their shape): participants who join late, leave early, drop and
reconnect, publish microphone, camera and screen share, and recordings that
mostly complete. Meetings still running at ``until`` have no ``ended_at``,
their present participants no ``left_at``, and no event lies after
``until``.

Everything, UUIDs included, comes from one ``random.Random(seed)`` stream,
so the same ``seed``, ``meetings``, ``days`` and ``until`` give identical
rows, whatever the batch size. :mod:`~conference.devdata.generate` loads
them.

Example::

    data = SyntheticData(meetings=100, seed=1, days=7, until=datetime.now(UTC))
    for batch in data.batches(50):
        print(batch.counts())
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncpg.pgproto.pgproto import UUID as PgUUID
from piccolo.columns import Column
from piccolo.table import Table

from conference.devdata.distributions import (
    FAILURES,
    FIRST_NAMES,
    LAST_NAMES,
    LEAVE_REASONS,
    MINUTE,
    StartTimes,
    meeting_duration,
    participant_count,
    person_names,
    room_name,
    session_times,
)
from conference.devdata.events import (
    EventType,
    egress_json,
    participant_json,
    room_json,
    track_json,
    unix_ms,
    webhook_json,
    webhook_parts,
)
from conference.devdata.ids import SeededIds
from conference.devdata.target import TableRows
from conference.tables import AnalyticsEvent, Meeting, Participant, Recording, RecordingStatus

#: Meetings per batch unless told otherwise.
DEFAULT_BATCH_SIZE = 1_000

#: Analytics rows per meeting on average with these distributions (41.5
#: measured); a guide for choosing ``meetings``: 10 million analytics rows
#: take about 242,000 meetings.
ANALYTICS_PER_MEETING = 41.5

#: One row as a COPY record: the values of the columns :data:`COLUMNS`
#: names for its table, in that order.
Row = tuple[Any, ...]

#: The columns of each table's COPY records, in the order the rows below
#: fill them; named through tables.py, so that a renamed column fails here
#: at import, not halfway through a load.
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


def column_names(table: type[Table]) -> list[str]:
    """The column names of ``table``'s records, for ``copy_records_to_table``."""
    return [column._meta.db_column_name for column in COLUMNS[table]]


# Event names as plain strings: the hot loop skips the Enum lookups.
_ROOM_STARTED = EventType.room_started.value
_ROOM_FINISHED = EventType.room_finished.value
_PARTICIPANT_JOINED = EventType.participant_joined.value
_PARTICIPANT_LEFT = EventType.participant_left.value
_TRACK_PUBLISHED = EventType.track_published.value
_TRACK_UNPUBLISHED = EventType.track_unpublished.value

_DEPARTURE_TIMEOUT = 20_000  # ms: LiveKit closes an empty room 20 s after the last leave


class Batch(TableRows[Row]):
    """The rows of a batch of whole meetings, per table, as COPY records."""


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
        self.until_ms = unix_ms(self.until)
        self.start_ms = self.until_ms - days * 24 * 60 * MINUTE
        self._rng = random.Random(seed)
        self._ids = SeededIds(self._rng)
        self._starts = StartTimes(self._rng, meetings, self.start_ms, self.until_ms)

    def batches(self, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[Batch]:
        """The meetings with all their rows, ``batch_size`` meetings a batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
        batch = Batch()
        in_batch = 0
        for start in self._starts:
            self._meeting(start, batch)
            in_batch += 1
            if in_batch == batch_size:
                yield batch
                batch = Batch()
                in_batch = 0
        if in_batch:
            yield batch

    def _meeting(self, start: int, batch: Batch) -> None:
        rng = self._rng
        meeting_id = self._ids.uuid7(start)
        size = participant_count(rng)
        people = rng.sample(range(len(FIRST_NAMES) * len(LAST_NAMES)), size)
        name = room_name(rng, size, people)
        room = _Room(meeting_id, self._ids.sid("RM_"), name, start)
        room.json = room_json(room.sid, name, start)
        duration = meeting_duration(rng)
        planned_end = start + duration
        room_parts = webhook_parts(room=room.json)
        self._event(batch, room.id, None, _ROOM_STARTED, start, room_parts)

        last_leave = start
        first_join = planned_end
        for position, person in enumerate(people):
            identity, full_name = person_names(person)
            joined, left = session_times(rng, start, planned_end, duration, position)
            # One in twelve drops out and comes back a few seconds later: two
            # participant rows (sessions) with the same identity.
            if rng.random() < 1 / 12 and left - joined > 2 * MINUTE:
                drop = joined + MINUTE + int(rng.random() * (left - joined - 2 * MINUTE))
                back = drop + 2_000 + int(rng.random() * 13_000)
                sessions = [(joined, drop, "SIGNAL_CLOSE"), (back, left, "CLIENT_INITIATED")]
            else:
                sessions = [(joined, left, rng.choice(LEAVE_REASONS))]
            for session_joined, session_left, reason in sessions:
                if session_joined > self.until_ms:
                    continue  # joins after the generated "now": not yet
                first_join = min(first_join, session_joined)
                last_leave = max(last_leave, session_left)
                role = "host" if position == 0 else "member"
                self._session(
                    batch, room, identity, full_name, role, session_joined, session_left, reason
                )

        ended = last_leave + _DEPARTURE_TIMEOUT
        if first_join < planned_end and rng.random() < (0.1 if size == 2 else 0.3):
            self._recording(batch, room, first_join, last_leave)
        self._event(batch, room.id, None, _ROOM_FINISHED, ended, room_parts)
        batch.meetings.append(
            (
                meeting_id,
                room.sid,
                name,
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
        event_id = self._ids.sid("EV_")
        data = webhook_json(event_type, event_id, at, parts)
        batch.analytics.append(
            (self._ids.uuid7(at), event_id, meeting_id, participant_id, event_type, data, _dt(at))
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
        participant_id = self._ids.uuid7(joined)
        sid = self._ids.sid("PA_")
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
        if rng.random() < 0.12 and left - joined > 2 * MINUTE:
            shared = joined + int(rng.random() * (left - joined - MINUTE))
            stopped = min(left, shared + 30_000 + int(rng.expovariate(1 / 480) * 1000))
            tracks.append(("SCREEN_SHARE", shared, stopped))
        for source, published, unpublished in tracks:
            published = min(published, left)
            unpublished = max(published, unpublished - int(rng.random() * 500))
            track = track_json(self._ids.sid("TR_"), source)
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
        egress_id = self._ids.sid("EG_")
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
                status, error = RecordingStatus.failed, rng.choice(FAILURES)
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
                self._ids.uuid7(started),
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


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
