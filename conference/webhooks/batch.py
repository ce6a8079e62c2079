"""
A batch of webhooks written with two set-based statements instead of one
statement per event: what makes group commit cheap for PostgreSQL.

1. :data:`LOCK_ROWS` finds the batch's ids already recorded, then inserts
   the meetings, participants and recordings that are missing (with the
   values of their first event) and locks and reads those that exist, all
   in ``room_sid``/``participant_sid``/``egress_id`` order;
2. in Python, every event is merged into its rows with exactly the rules
   :data:`~conference.webhooks.store.RECORD_EVENT` applies in SQL (the
   ``_merge_*`` functions below mirror its ``ON CONFLICT DO UPDATE``
   clauses line by line);
3. :data:`WRITE_ROWS` writes back the rows that changed and inserts every
   analytics row at once.

``tests/test_webhooks_store.py`` checks that a batch ends exactly where
``RECORD_EVENT``, event after event, ends. Change both together.

Concurrent batches (and single events) lock a room's meeting row before
any of its participants or recordings, and meetings in ``room_sid`` order,
so they wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

from conference import db
from conference.tables import RecordingStatus
from conference.webhooks.mapping import (
    STATUS_RANK,
    EventChanges,
    MeetingChange,
    MetadataMode,
    ParticipantChange,
    RecordingChange,
)

# $1: the batch's event ids. Then, per table, one array per column with a
# row per event that has such a change, in event order; each insert keeps
# the first event per key that is not recorded yet. A no-op DO UPDATE
# locks an existing row and returns it as it is; xmax = 0 marks a row this
# statement inserted.
LOCK_ROWS = """
WITH known AS (
    SELECT webhook_event_id FROM analytics WHERE webhook_event_id = ANY($1::text[])
), m AS (
    INSERT INTO meetings AS m (room_sid, room_name, created_at, ended_at, metadata)
    SELECT DISTINCT ON (new.sid)
           new.sid, new.name, new.created_at, new.ended_at, new.metadata::jsonb
    FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[],
                $7::text[], $8::int[])
        AS new (sid, name, created_at, ended_at, metadata, event_id, pos)
    WHERE new.event_id NOT IN (SELECT webhook_event_id FROM known)
    ORDER BY new.sid, new.pos
    ON CONFLICT (room_sid) DO UPDATE SET room_sid = EXCLUDED.room_sid
    RETURNING m.id, m.room_sid, m.room_name, m.created_at, m.ended_at, m.metadata,
              m.xmax = 0 AS inserted
), p AS (
    INSERT INTO participants AS p
        (meeting_id, participant_sid, identity, joined_at, left_at, metadata)
    SELECT DISTINCT ON (new.sid)
           m.id, new.sid, new.identity, new.joined_at, new.left_at, new.metadata::jsonb
    FROM unnest($9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[],
                $14::text[], $15::text[], $16::int[])
        AS new (room_sid, sid, identity, joined_at, left_at, metadata, event_id, pos)
    JOIN m ON m.room_sid = new.room_sid
    WHERE new.event_id NOT IN (SELECT webhook_event_id FROM known)
    ORDER BY new.sid, new.pos
    ON CONFLICT (participant_sid) DO UPDATE SET participant_sid = EXCLUDED.participant_sid
    RETURNING p.id, p.participant_sid, p.joined_at, p.left_at, p.metadata,
              p.xmax = 0 AS inserted
), r AS (
    INSERT INTO recordings AS r (meeting_id, egress_id, status, started_at, completed_at,
                                 storage_path, file_size, duration, metadata)
    SELECT DISTINCT ON (new.egress_id)
           m.id, new.egress_id, new.status, new.started_at, new.completed_at,
           new.storage_path, new.file_size, new.duration, new.metadata::jsonb
    FROM unnest($17::text[], $18::text[], $19::text[], $20::timestamptz[],
                $21::timestamptz[], $22::text[], $23::bigint[], $24::double precision[],
                $25::text[], $26::text[], $27::int[])
        AS new (room_sid, egress_id, status, started_at, completed_at, storage_path,
                file_size, duration, metadata, event_id, pos)
    JOIN m ON m.room_sid = new.room_sid
    WHERE new.event_id NOT IN (SELECT webhook_event_id FROM known)
    ORDER BY new.egress_id, new.pos
    ON CONFLICT (egress_id) DO UPDATE SET egress_id = EXCLUDED.egress_id
    RETURNING r.id, r.egress_id, r.status, r.started_at, r.completed_at, r.storage_path,
              r.file_size, r.duration, r.metadata, r.xmax = 0 AS inserted
)
SELECT 'known' AS kind, webhook_event_id AS key, NULL::uuid AS id, NULL::boolean AS inserted,
       NULL::text AS label, NULL::timestamptz AS t1, NULL::timestamptz AS t2,
       NULL::text AS path, NULL::bigint AS size, NULL::double precision AS duration,
       NULL::text AS metadata
FROM known
UNION ALL
SELECT 'meeting', room_sid, id, inserted, room_name, created_at, ended_at, NULL, NULL, NULL,
       metadata::text
FROM m
UNION ALL
SELECT 'participant', participant_sid, id, inserted, NULL, joined_at, left_at, NULL, NULL,
       NULL, metadata::text
FROM p
UNION ALL
SELECT 'recording', egress_id, id, inserted, status, started_at, completed_at, storage_path,
       file_size, duration, metadata::text
FROM r
"""

WRITE_ROWS = """
WITH meeting AS (
    UPDATE meetings AS m
    SET room_name = new.name, created_at = new.created_at, ended_at = new.ended_at,
        metadata = new.metadata::jsonb
    FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[])
        AS new (id, name, created_at, ended_at, metadata)
    WHERE m.id = new.id
), participant AS (
    UPDATE participants AS p
    SET joined_at = new.joined_at, left_at = new.left_at, metadata = new.metadata::jsonb
    FROM unnest($6::uuid[], $7::timestamptz[], $8::timestamptz[], $9::text[])
        AS new (id, joined_at, left_at, metadata)
    WHERE p.id = new.id
), recording AS (
    UPDATE recordings AS r
    SET status = new.status, started_at = new.started_at, completed_at = new.completed_at,
        storage_path = new.storage_path, file_size = new.file_size, duration = new.duration,
        metadata = new.metadata::jsonb
    FROM unnest($10::uuid[], $11::text[], $12::timestamptz[], $13::timestamptz[],
                $14::text[], $15::bigint[], $16::double precision[], $17::text[])
        AS new (id, status, started_at, completed_at, storage_path, file_size, duration,
                metadata)
    WHERE r.id = new.id
)
INSERT INTO analytics (meeting_id, participant_id, event_type, event_data, created_at,
                       webhook_event_id)
SELECT meeting_id, participant_id, event_type, event_data::jsonb, created_at, event_id
FROM unnest($18::uuid[], $19::uuid[], $20::text[], $21::text[], $22::timestamptz[],
            $23::text[])
    AS new (meeting_id, participant_id, event_type, event_data, created_at, event_id)
"""


async def write_batch(events: Sequence[tuple[EventChanges, str]]) -> list[UUID | None]:
    """
    Write ``events`` (each with a meeting, distinct ids, in the order they
    apply) in the current transaction: the meeting of each event, or
    ``None`` for an event recorded before (a retry; nothing of it is
    applied). Raises :class:`~conference.errors.DatabaseError` subclasses
    as :func:`conference.db.query` does; then the caller rolls back.
    """
    rows = await db.query(LOCK_ROWS, *_lock_arguments(events))
    known = {row["key"] for row in rows if row["kind"] == "known"}
    found = {(row["kind"], row["key"]): _Row.read(row) for row in rows if row["kind"] != "known"}
    fresh = [(changes, body) for changes, body in events if changes.event_id not in known]

    seen: set[tuple[str, str]] = set()

    def merge(kind: str, key: str, apply: Any, change: Any) -> _Row:
        row = found[(kind, key)]
        # A row this batch inserted already holds its first event's values.
        if not (row.inserted and (kind, key) not in seen):
            apply(row.values, change)
        seen.add((kind, key))
        return row

    analytics = []
    for changes, body in fresh:
        assert changes.meeting is not None
        meeting = merge("meeting", changes.meeting.room_sid, _merge_meeting, changes.meeting)
        participant = None
        if changes.participant is not None:
            participant = merge(
                "participant",
                changes.participant.participant_sid,
                _merge_participant,
                changes.participant,
            )
        if changes.recording is not None:
            merge("recording", changes.recording.egress_id, _merge_recording, changes.recording)
        analytics.append(
            (
                meeting.id,
                participant.id if participant else None,
                changes.event_type,
                body,
                changes.occurred_at,
                changes.event_id,
            )
        )
    changed: dict[str, list[tuple[Any, ...]]] = {
        kind: [] for kind in ("meeting", "participant", "recording")
    }
    for (kind, _), row in found.items():
        if row.values != row.original:
            changed[kind].append(row.update_values())
    await db.query(
        WRITE_ROWS,
        *_columns(changed["meeting"], 5),
        *_columns(changed["participant"], 4),
        *_columns(changed["recording"], 8),
        *_columns(analytics, 6),
    )
    meeting_of = {changes.event_id: a[0] for (changes, _), a in zip(fresh, analytics, strict=True)}
    return [meeting_of.get(changes.event_id) for changes, _ in events]


def _lock_arguments(events: Sequence[tuple[EventChanges, str]]) -> list[list[Any]]:
    meetings, participants, recordings = [], [], []
    for position, (changes, _) in enumerate(events):
        meeting, participant, recording = changes.meeting, changes.participant, changes.recording
        assert meeting is not None
        event_id, room_sid = changes.event_id, meeting.room_sid
        meetings.append(
            (
                room_sid,
                meeting.room_name,
                meeting.created_at,
                meeting.ended_at,
                _json(meeting.metadata),
                event_id,
                position,
            )
        )
        if participant is not None:
            participants.append(
                (
                    room_sid,
                    participant.participant_sid,
                    participant.identity,
                    participant.joined_at,
                    participant.left_at,
                    _json(participant.metadata),
                    event_id,
                    position,
                )
            )
        if recording is not None:
            recordings.append(
                (
                    room_sid,
                    recording.egress_id,
                    recording.status.value,
                    recording.started_at,
                    recording.completed_at,
                    recording.storage_path,
                    recording.file_size,
                    recording.duration,
                    _json(recording.metadata),
                    event_id,
                    position,
                )
            )
    return [
        [changes.event_id for changes, _ in events],
        *_columns(meetings, 7),
        *_columns(participants, 8),
        *_columns(recordings, 11),
    ]


# --- The rows, read and merged ------------------------------------------------

#: Which columns of :data:`LOCK_ROWS`'s answer hold what, per table.
_COLUMNS = {
    "meeting": {"room_name": "label", "created_at": "t1", "ended_at": "t2"},
    "participant": {"joined_at": "t1", "left_at": "t2"},
    "recording": {
        "status": "label",
        "started_at": "t1",
        "completed_at": "t2",
        "storage_path": "path",
        "file_size": "size",
        "duration": "duration",
    },
}


@dataclass
class _Row:
    """A row as the batch found it (locked) and as it leaves it."""

    id: UUID
    inserted: bool
    values: dict[str, Any]
    original: dict[str, Any]

    @classmethod
    def read(cls, record: Any) -> _Row:
        values = {column: record[field] for column, field in _COLUMNS[record["kind"]].items()}
        values["metadata"] = msgspec.json.decode(record["metadata"])
        return cls(record["id"], record["inserted"], values, dict(values))

    def update_values(self) -> tuple[Any, ...]:
        """The row for :data:`WRITE_ROWS`: its id, then its columns in order."""
        return (
            self.id,
            *(_json(v) if c == "metadata" else v for c, v in self.values.items()),
        )


def _least(*values: Any) -> Any:
    """SQL's ``LEAST``: the smallest value that is not NULL."""
    present = [value for value in values if value is not None]
    return min(present) if present else None


def _greatest(*values: Any) -> Any:
    """SQL's ``GREATEST``: the largest value that is not NULL."""
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _coalesce(first: Any, second: Any) -> Any:
    return first if first is not None else second


def _merge_meeting(row: dict[str, Any], change: MeetingChange) -> None:
    """RECORD_EVENT's ``ON CONFLICT (room_sid) DO UPDATE``, for one event."""
    created = _least(row["created_at"], change.created_at)
    if row["ended_at"] is not None or change.ended_at is not None:
        row["ended_at"] = _greatest(row["ended_at"], change.ended_at, created)
    if change.name_known:
        row["room_name"] = change.room_name
    row["created_at"] = created
    if change.metadata_mode is MetadataMode.overwrite:
        row["metadata"] = change.metadata
    elif change.metadata_mode is MetadataMode.fill_empty and row["metadata"] == {}:
        row["metadata"] = change.metadata


def _merge_participant(row: dict[str, Any], change: ParticipantChange) -> None:
    """RECORD_EVENT's ``ON CONFLICT (participant_sid) DO UPDATE``, for one event."""
    joined = _least(row["joined_at"], change.joined_at)
    if row["left_at"] is not None or change.left_at is not None:
        row["left_at"] = _greatest(row["left_at"], change.left_at, joined)
    row["joined_at"] = joined
    row["metadata"] = change.metadata


def _merge_recording(row: dict[str, Any], change: RecordingChange) -> None:
    """RECORD_EVENT's ``ON CONFLICT (egress_id) DO UPDATE``, for one event."""
    current = STATUS_RANK[RecordingStatus(row["status"])]
    ahead = change.rank >= current
    if change.rank > current:
        row["status"] = change.status.value
    row["started_at"] = _least(row["started_at"], change.started_at)
    row["completed_at"] = _greatest(row["completed_at"], change.completed_at)
    for column in ("storage_path", "file_size", "duration"):
        ours = getattr(change, column)
        row[column] = _coalesce(ours, row[column]) if ahead else _coalesce(row[column], ours)
    row["metadata"] = (
        {**row["metadata"], **change.metadata} if ahead else {**change.metadata, **row["metadata"]}
    )


def _json(value: dict[str, Any]) -> str:
    return msgspec.json.encode(value).decode()


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to one list per column, for ``unnest``."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
