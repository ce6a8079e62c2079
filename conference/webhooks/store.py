"""
Writing webhooks' changes: one SQL statement per event, a batch of events
in one transaction (:func:`record_batch`, what group commit in
:mod:`conference.webhooks.batching` calls), and nothing at all for an event
already recorded.

**Round trips.** A batch costs four: the ids already recorded, the events'
statements pipelined in one go (asyncpg's ``fetchmany``: one Sync for all),
a savepoint around them, and the commit. Should one event fail for a
reason of its own (the database rejects a value, or a retry of it raced in
from another transaction), the savepoint is rolled back and the batch is
written again one event per savepoint, so that event alone is refused.

**Idempotency.** The ``analytics`` row of an event carries the webhook
``id`` under a unique constraint. It is inserted by the same statement as
the meeting, participant and recording upserts, so a retried event (same
``id``) fails that insert and the whole statement with it: a retry changes
nothing, even when two deliveries of one event race. A batch first looks
its ids up (one query), so the usual retry costs no failed statement.

**Order.** LiveKit delivers the events of a room in order and those of each
egress in order, but the two queues are not ordered against each other,
and ``room_started`` can arrive after ``room_finished``. The columns are
merged so that no order LiveKit produces changes the result:

- times: the earliest start (``LEAST``) and the latest end (``GREATEST``),
  an end never before its start;
- recording status: only to a higher rank (starting < active < ending <
  terminal); file results from an event of a lower rank only fill gaps, so
  even egress events out of their own order end the same;
- snapshots (metadata): the last room or participant event applied wins,
  which is the newest because those are in order, except ``room_started``
  (the oldest, possibly late) which only fills empty meeting metadata.
  Egress events never touch a meeting's metadata.

Rows are locked in one order (meeting, participant, analytics, recording),
and a batch takes its rooms in ``room_sid`` order, so events of one room
that run at the same time wait for each other instead of deadlocking.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any
from uuid import UUID

from conference import db
from conference.errors import DatabaseError, IntegrityViolation, UniqueViolation
from conference.tables import RecordingStatus
from conference.webhooks.mapping import (
    STATUS_RANK,
    EventChanges,
    MeetingChange,
    MetadataMode,
    ParticipantChange,
    RecordingChange,
)

#: The unique constraint that makes recording an event idempotent.
EVENT_ID_CONSTRAINT = "analytics_webhook_event_id_key"


class Outcome(str, Enum):
    """What became of one webhook."""

    recorded = "recorded"
    #: Its ``id`` was recorded before: a retry, nothing changed.
    duplicate = "duplicate"
    #: It names no room (a web egress, say): acknowledged, not stored.
    ignored = "ignored"


@dataclass(frozen=True)
class RecordResult:
    """
    :param outcome:
        What happened.
    :param meeting_id:
        The meeting the event was recorded in (``recorded`` only).
    """

    outcome: Outcome
    meeting_id: UUID | None = None


def _rank_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{status.value}' THEN {rank}" for status, rank in STATUS_RANK.items())
    return f"(CASE {column} {cases} END)"


_CURRENT_RANK = _rank_sql("r.status")

# One statement, so one round trip and its own transaction. The meeting is
# upserted first and the other rows hang off its id; the participant and
# recording parts insert nothing when their key ($8, $17) is NULL. The
# analytics insert fails on a known webhook id, and with it the statement.
# JSON is sent as text and cast by the server: stored as sent, whatever
# codecs the connection has. At a recording rank ($25) higher than or
# equal to the row's, the event's values win; a lower one (a late update)
# only fills what is still unknown.
RECORD_EVENT = f"""
WITH meeting AS (
    INSERT INTO meetings AS m (room_sid, room_name, created_at, ended_at, metadata)
    VALUES ($1, $2, $3, $4, $5::text::jsonb)
    ON CONFLICT (room_sid) DO UPDATE SET
        room_name = CASE WHEN $6::boolean THEN EXCLUDED.room_name ELSE m.room_name END,
        created_at = LEAST(m.created_at, EXCLUDED.created_at),
        ended_at = CASE
            WHEN m.ended_at IS NULL AND EXCLUDED.ended_at IS NULL THEN NULL
            ELSE GREATEST(m.ended_at, EXCLUDED.ended_at, LEAST(m.created_at, EXCLUDED.created_at))
        END,
        metadata = CASE $7::text
            WHEN '{MetadataMode.overwrite.value}' THEN EXCLUDED.metadata
            WHEN '{MetadataMode.fill_empty.value}' THEN
                CASE WHEN m.metadata = '{{}}'::jsonb THEN EXCLUDED.metadata ELSE m.metadata END
            ELSE m.metadata
        END
    RETURNING id
), participant AS (
    INSERT INTO participants AS p
        (meeting_id, participant_sid, identity, joined_at, left_at, metadata)
    SELECT meeting.id, $8::text, $9::text, $10::timestamptz, $11::timestamptz, $12::text::jsonb
    FROM meeting WHERE $8::text IS NOT NULL
    ON CONFLICT (participant_sid) DO UPDATE SET
        joined_at = LEAST(p.joined_at, EXCLUDED.joined_at),
        left_at = CASE
            WHEN p.left_at IS NULL AND EXCLUDED.left_at IS NULL THEN NULL
            ELSE GREATEST(p.left_at, EXCLUDED.left_at, LEAST(p.joined_at, EXCLUDED.joined_at))
        END,
        metadata = EXCLUDED.metadata
    RETURNING id
), recording AS (
    INSERT INTO recordings AS r (meeting_id, egress_id, status, started_at, completed_at,
                                 storage_path, file_size, duration, metadata)
    SELECT meeting.id, $17::text, $18::text, $19::timestamptz, $20::timestamptz,
           $21::text, $22::bigint, $23::double precision, $24::text::jsonb
    FROM meeting WHERE $17::text IS NOT NULL
    ON CONFLICT (egress_id) DO UPDATE SET
        status = CASE WHEN $25::int > {_CURRENT_RANK} THEN EXCLUDED.status ELSE r.status END,
        started_at = LEAST(r.started_at, EXCLUDED.started_at),
        completed_at = GREATEST(r.completed_at, EXCLUDED.completed_at),
        storage_path = CASE WHEN $25::int >= {_CURRENT_RANK}
            THEN COALESCE(EXCLUDED.storage_path, r.storage_path)
            ELSE COALESCE(r.storage_path, EXCLUDED.storage_path) END,
        file_size = CASE WHEN $25::int >= {_CURRENT_RANK}
            THEN COALESCE(EXCLUDED.file_size, r.file_size)
            ELSE COALESCE(r.file_size, EXCLUDED.file_size) END,
        duration = CASE WHEN $25::int >= {_CURRENT_RANK}
            THEN COALESCE(EXCLUDED.duration, r.duration)
            ELSE COALESCE(r.duration, EXCLUDED.duration) END,
        metadata = CASE WHEN $25::int >= {_CURRENT_RANK}
            THEN r.metadata || EXCLUDED.metadata
            ELSE EXCLUDED.metadata || r.metadata END
)
INSERT INTO analytics (meeting_id, participant_id, event_type, event_data, created_at,
                       webhook_event_id)
SELECT meeting.id, (SELECT id FROM participant), $13::text, $14::text::jsonb,
       $15::timestamptz, $16::text
FROM meeting
RETURNING meeting_id
"""


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _arguments(changes: EventChanges, event_json: str) -> tuple[Any, ...]:
    """The parameters of :data:`RECORD_EVENT` for one event with a meeting."""
    meeting, participant, recording = changes.meeting, changes.participant, changes.recording
    assert meeting is not None
    return (
        # $1-$7: the meeting
        meeting.room_sid,
        meeting.room_name,
        meeting.created_at,
        meeting.ended_at,
        _json(meeting.metadata),
        meeting.name_known,
        meeting.metadata_mode.value,
        # $8-$12: the participant, if any
        participant.participant_sid if participant else None,
        participant.identity if participant else None,
        participant.joined_at if participant else None,
        participant.left_at if participant else None,
        _json(participant.metadata) if participant else None,
        # $13-$16: the event
        changes.event_type,
        event_json,
        changes.occurred_at,
        changes.event_id,
        # $17-$25: the recording, if any
        recording.egress_id if recording else None,
        recording.status.value if recording else None,
        recording.started_at if recording else None,
        recording.completed_at if recording else None,
        recording.storage_path if recording else None,
        recording.file_size if recording else None,
        recording.duration if recording else None,
        _json(recording.metadata) if recording else None,
        recording.rank if recording else None,
    )


#: Which of a batch's event ids are recorded already (retries).
KNOWN_EVENT_IDS = """
SELECT webhook_event_id FROM analytics WHERE webhook_event_id = ANY($1::text[])
"""

#: SQLSTATE classes that blame one event's values, not the database:
#: integrity constraints (23) and data exceptions (22, a value out of range).
_EVENT_FAULT_CLASSES = ("22", "23")


def _blames_the_event(error: DatabaseError) -> bool:
    return (
        isinstance(error, IntegrityViolation) or (error.sqlstate or "")[:2] in _EVENT_FAULT_CLASSES
    )


async def record_event(changes: EventChanges, event_json: str) -> RecordResult:
    """
    Apply ``changes`` and store the event in ``analytics``: one statement
    (:data:`RECORD_EVENT`), in the current transaction or one of its own.
    The reference for :func:`record_batch`, which must end the same.

    Raises :class:`~conference.errors.DatabaseUnavailable`,
    :class:`~conference.errors.QueryTimeout` or
    :class:`~conference.errors.TransactionConflict` when the database is
    unreachable or busy (worth retrying), other
    :class:`~conference.errors.DatabaseError` subclasses otherwise (an
    :class:`~conference.errors.IntegrityViolation` when the database
    rejected the event's values).

    :param event_json:
        The request body exactly as LiveKit signed it; stored as
        ``analytics.event_data``.
    """
    if changes.meeting is None:
        return RecordResult(Outcome.ignored)
    try:
        rows = await db.query(RECORD_EVENT, *_arguments(changes, event_json))
    except UniqueViolation as error:
        if error.constraint != EVENT_ID_CONSTRAINT:
            raise
        return RecordResult(Outcome.duplicate)
    return RecordResult(Outcome.recorded, meeting_id=UUID(str(rows[0]["meeting_id"])))


async def record_batch(
    events: Sequence[tuple[EventChanges, str]],
) -> list[RecordResult | DatabaseError]:
    """
    Apply a batch of events in one transaction (one commit, one WAL flush),
    each exactly as :func:`record_event` would: the result of each event,
    in the order given.

    A duplicate (recorded before, or earlier in the same batch) is
    ``duplicate``; an event whose values the database rejects gets the
    :class:`~conference.errors.DatabaseError` that says why *as its
    result*, and the others are recorded all the same. When the batch as
    a whole fails (the database is unreachable or busy, the schema is not
    migrated, the commit fails) this raises, and nothing of it is stored.

    Events of one room keep their order. The batch is written room by
    room in ``room_sid`` order, so concurrent batches lock meetings in the
    same order and cannot deadlock.

    :param events:
        ``(changes, event_json)`` pairs, as for :func:`record_event`.
    """
    results: list[RecordResult | DatabaseError | None] = [None] * len(events)
    first_by_id: dict[str, int] = {}
    for position, (changes, _) in enumerate(events):
        if changes.meeting is None:
            results[position] = RecordResult(Outcome.ignored)
        elif changes.event_id in first_by_id:
            results[position] = RecordResult(Outcome.duplicate)
        else:
            first_by_id[changes.event_id] = position
    if first_by_id:
        async with db.transaction():
            rows = await db.query(KNOWN_EVENT_IDS, list(first_by_id))
            for row in rows:
                results[first_by_id.pop(row["webhook_event_id"])] = RecordResult(Outcome.duplicate)
            meeting = {p: events[p][0].meeting for p in first_by_id.values()}
            order = sorted(first_by_id.values(), key=lambda p: meeting[p].room_sid)  # type: ignore[union-attr]
            written = await _write_together(events, order)
            if written is None:
                written = await _write_one_by_one(events, order)
            for position, result in zip(order, written, strict=True):
                results[position] = result
    return [result for result in results if result is not None]


async def _write_together(
    events: Sequence[tuple[EventChanges, str]], order: list[int]
) -> list[RecordResult | DatabaseError] | None:
    """
    The fast path, in a savepoint: a few set-based statements for the
    whole batch (:class:`_BatchWriter`). ``None`` when it failed for a
    reason of one event (a rejected value, a duplicate that raced in from
    another transaction): the savepoint is rolled back and the caller
    writes the events one by one.
    """
    writer = _BatchWriter([events[position] for position in order])
    try:
        async with db.transaction():
            await writer.write()
    except DatabaseError as error:
        if not _blames_the_event(error):
            raise
        return None
    return [RecordResult(Outcome.recorded, meeting_id=m) for m in writer.meeting_ids]


# --- The set-based batch ------------------------------------------------------
#
# Per batch, not per event: insert the rows that are missing (with the
# values of their first event), lock and read every row the batch touches,
# fold the events into them in Python with the very rules RECORD_EVENT
# applies in SQL, write back the rows that changed, then insert all the
# analytics rows at once. tests/test_webhooks_store.py checks that a batch
# ends exactly where RECORD_EVENT, event after event, does.


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


@dataclass
class _Row:
    """A row as the batch found it and as it leaves it."""

    id: UUID
    values: dict[str, Any]
    original: dict[str, Any]

    @classmethod
    def read(cls, record: Any, columns: Sequence[str]) -> _Row:
        values = {
            column: json.loads(record[column]) if column == "metadata" else record[column]
            for column in columns
        }
        return cls(id=record["id"], values=values, original=dict(values))

    @property
    def changed(self) -> bool:
        return self.values != self.original


def _merge_meeting(row: dict[str, Any], change: MeetingChange) -> None:
    """One event's ``ON CONFLICT (room_sid) DO UPDATE`` of RECORD_EVENT."""
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
    """One event's ``ON CONFLICT (participant_sid) DO UPDATE`` of RECORD_EVENT."""
    joined = _least(row["joined_at"], change.joined_at)
    if row["left_at"] is not None or change.left_at is not None:
        row["left_at"] = _greatest(row["left_at"], change.left_at, joined)
    row["joined_at"] = joined
    row["metadata"] = change.metadata


def _merge_recording(row: dict[str, Any], change: RecordingChange) -> None:
    """One event's ``ON CONFLICT (egress_id) DO UPDATE`` of RECORD_EVENT."""
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


_MEETING_COLUMNS = ("room_name", "created_at", "ended_at", "metadata")
_PARTICIPANT_COLUMNS = ("joined_at", "left_at", "metadata")
_RECORDING_COLUMNS = (
    "status", "started_at", "completed_at", "storage_path", "file_size", "duration", "metadata",
)  # fmt: skip

INSERT_MEETINGS = """
INSERT INTO meetings (room_sid, room_name, created_at, ended_at, metadata)
SELECT sid, name, created_at, ended_at, metadata::jsonb
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[])
    AS new (sid, name, created_at, ended_at, metadata)
ORDER BY sid
ON CONFLICT (room_sid) DO NOTHING
RETURNING room_sid
"""

LOCK_MEETINGS = """
SELECT id, room_sid AS key, room_name, created_at, ended_at, metadata::text AS metadata
FROM meetings WHERE room_sid = ANY($1::text[])
ORDER BY room_sid
FOR UPDATE
"""

UPDATE_MEETINGS = """
UPDATE meetings AS m
SET room_name = new.name, created_at = new.created_at, ended_at = new.ended_at,
    metadata = new.metadata::jsonb
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[])
    AS new (id, name, created_at, ended_at, metadata)
WHERE m.id = new.id
"""

INSERT_PARTICIPANTS = """
INSERT INTO participants (meeting_id, participant_sid, identity, joined_at, left_at, metadata)
SELECT meeting_id, sid, identity, joined_at, left_at, metadata::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
            $6::text[])
    AS new (meeting_id, sid, identity, joined_at, left_at, metadata)
ORDER BY sid
ON CONFLICT (participant_sid) DO NOTHING
RETURNING participant_sid
"""

LOCK_PARTICIPANTS = """
SELECT id, participant_sid AS key, joined_at, left_at, metadata::text AS metadata
FROM participants WHERE participant_sid = ANY($1::text[])
ORDER BY participant_sid
FOR UPDATE
"""

UPDATE_PARTICIPANTS = """
UPDATE participants AS p
SET joined_at = new.joined_at, left_at = new.left_at, metadata = new.metadata::jsonb
FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[])
    AS new (id, joined_at, left_at, metadata)
WHERE p.id = new.id
"""

INSERT_RECORDINGS = """
INSERT INTO recordings (meeting_id, egress_id, status, started_at, completed_at,
                        storage_path, file_size, duration, metadata)
SELECT meeting_id, egress_id, status, started_at, completed_at, storage_path, file_size,
       duration, metadata::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
            $6::text[], $7::bigint[], $8::double precision[], $9::text[])
    AS new (meeting_id, egress_id, status, started_at, completed_at, storage_path,
            file_size, duration, metadata)
ORDER BY egress_id
ON CONFLICT (egress_id) DO NOTHING
RETURNING egress_id
"""

LOCK_RECORDINGS = """
SELECT id, egress_id AS key, status, started_at, completed_at, storage_path, file_size,
       duration, metadata::text AS metadata
FROM recordings WHERE egress_id = ANY($1::text[])
ORDER BY egress_id
FOR UPDATE
"""

UPDATE_RECORDINGS = """
UPDATE recordings AS r
SET status = new.status, started_at = new.started_at, completed_at = new.completed_at,
    storage_path = new.storage_path, file_size = new.file_size, duration = new.duration,
    metadata = new.metadata::jsonb
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[],
            $6::bigint[], $7::double precision[], $8::text[])
    AS new (id, status, started_at, completed_at, storage_path, file_size, duration, metadata)
WHERE r.id = new.id
"""

INSERT_ANALYTICS = """
INSERT INTO analytics (meeting_id, participant_id, event_type, event_data, created_at,
                       webhook_event_id)
SELECT meeting_id, participant_id, event_type, event_data::jsonb, created_at, event_id
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
    AS new (meeting_id, participant_id, event_type, event_data, created_at, event_id)
"""


class _BatchWriter:
    """
    Writes events (each with a meeting, ids not recorded yet, in the order
    they apply) with set-based statements; :attr:`meeting_ids` are then the
    meeting of each event.
    """

    def __init__(self, events: Sequence[tuple[EventChanges, str]]) -> None:
        self.events = events
        self.meeting_ids: list[UUID] = []

    async def write(self) -> None:
        """Insert, lock, merge and update the rows; insert the analytics rows."""
        changes = [change for change, _ in self.events]
        meetings = await self._rows(
            [(c.meeting.room_sid, c.meeting) for c in changes if c.meeting],
            INSERT_MEETINGS,
            lambda m: (m.room_sid, m.room_name, m.created_at, m.ended_at, _json(m.metadata)),
            LOCK_MEETINGS,
            _MEETING_COLUMNS,
            _merge_meeting,
            UPDATE_MEETINGS,
        )
        meeting_of = {c.event_id: meetings[c.meeting.room_sid].id for c in changes if c.meeting}
        participants = await self._rows(
            [(c.participant.participant_sid, (c, c.participant)) for c in changes if c.participant],
            INSERT_PARTICIPANTS,
            lambda pair: (
                meeting_of[pair[0].event_id],
                pair[1].participant_sid,
                pair[1].identity,
                pair[1].joined_at,
                pair[1].left_at,
                _json(pair[1].metadata),
            ),
            LOCK_PARTICIPANTS,
            _PARTICIPANT_COLUMNS,
            lambda row, pair: _merge_participant(row, pair[1]),
            UPDATE_PARTICIPANTS,
        )
        await self._rows(
            [(c.recording.egress_id, (c, c.recording)) for c in changes if c.recording],
            INSERT_RECORDINGS,
            lambda pair: (
                meeting_of[pair[0].event_id],
                pair[1].egress_id,
                pair[1].status.value,
                pair[1].started_at,
                pair[1].completed_at,
                pair[1].storage_path,
                pair[1].file_size,
                pair[1].duration,
                _json(pair[1].metadata),
            ),
            LOCK_RECORDINGS,
            _RECORDING_COLUMNS,
            lambda row, pair: _merge_recording(row, pair[1]),
            UPDATE_RECORDINGS,
        )
        self.meeting_ids = [meeting_of[c.event_id] for c in changes]
        await db.query(
            INSERT_ANALYTICS,
            *_columns(
                [
                    (
                        meeting_of[c.event_id],
                        participants[c.participant.participant_sid].id if c.participant else None,
                        c.event_type,
                        body,
                        c.occurred_at,
                        c.event_id,
                    )
                    for c, body in self.events
                ],
                6,
            ),
        )

    @staticmethod
    async def _rows(
        changes: list[tuple[str, Any]],
        insert_sql: str,
        insert_values: Any,
        lock_sql: str,
        columns: Sequence[str],
        merge: Any,
        update_sql: str,
    ) -> dict[str, _Row]:
        """
        The rows of one table the batch touches, by key, once every change
        (``(key, change)`` in order) is merged into them and written back.
        """
        if not changes:
            return {}
        first: dict[str, Any] = {}
        for key, change in changes:
            first.setdefault(key, change)
        inserted = {
            record[0]
            for record in await db.query(
                insert_sql, *_columns([insert_values(c) for c in first.values()], None)
            )
        }
        rows = {
            record["key"]: _Row.read(record, columns)
            for record in await db.query(lock_sql, list(first))
        }
        for key, change in changes:
            if key in inserted and first[key] is change:
                continue  # the row was inserted with this change's values
            merge(rows[key].values, change)
        changed = [row for row in rows.values() if row.changed]
        if changed:
            values = [
                (row.id, *(_json(v) if c == "metadata" else v for c, v in row.values.items()))
                for row in changed
            ]
            await db.query(update_sql, *_columns(values, 1 + len(columns)))
        return rows


def _columns(rows: list[tuple[Any, ...]], width: int | None) -> list[list[Any]]:
    """Rows to one list per column, for ``unnest``."""
    if not rows:
        return [[] for _ in range(width or 0)]
    return [list(column) for column in zip(*rows, strict=True)]


async def _write_one_by_one(
    events: Sequence[tuple[EventChanges, str]], order: list[int]
) -> list[RecordResult | DatabaseError]:
    """The careful path: a savepoint per event, so a failure affects only its own."""
    written: list[RecordResult | DatabaseError] = []
    for position in order:
        try:
            async with db.transaction():
                written.append(await record_event(*events[position]))
        except DatabaseError as error:
            if not _blames_the_event(error):
                raise
            written.append(error)
    return written
