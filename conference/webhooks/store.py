"""
Writing webhooks' changes, and nothing at all for an event already
recorded: one event with one SQL statement (:func:`record_event`,
:data:`RECORD_EVENT`, the reference semantics), or a batch of events in
one transaction (:func:`record_batch`, what group commit in
:mod:`conference.webhooks.batching` calls) with two set-based statements
(:mod:`conference.webhooks.batch`): four round trips and one commit for
the whole batch. Should one event of a batch fail for a reason of its own
(the database rejects a value, or a retry of it raced in from another
transaction), the batch is written again with a savepoint per event, so
that event alone is refused.

**Idempotency.** The ``analytics`` row of an event carries the webhook
``id`` under a unique constraint. It is inserted by the same statement as
the meeting, participant and recording upserts, so a retried event (same
``id``) fails that insert and the whole statement with it: a retry changes
nothing, even when two deliveries of one event race. A batch looks its
ids up first, so the usual retry costs no failed statement.

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

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any
from uuid import UUID

import msgspec
from asyncpg.exceptions import InvalidCachedStatementError

from conference import db
from conference.errors import DatabaseError, IntegrityViolation, UniqueViolation
from conference.webhooks.batch import write_batch
from conference.webhooks.mapping import (
    STATUS_RANK,
    EventChanges,
    MetadataMode,
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
    return msgspec.json.encode(value).decode()


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
    in the order given. Two set-based statements for the whole batch
    (:func:`conference.webhooks.batch.write_batch`).

    A duplicate (recorded before, or earlier in the same batch) is
    ``duplicate``. Should one event fail for a reason of its own (the
    database rejects a value, or a retry of it raced in from another
    transaction), the batch is rolled back and written again with a
    savepoint per event: that event gets the
    :class:`~conference.errors.DatabaseError` that says why *as its
    result*, and the others are recorded all the same. When the batch as a
    whole fails (the database is unreachable or busy, the schema is not
    migrated, the commit fails) this raises, and nothing of it is stored.

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
    if not first_by_id:
        return [result for result in results if result is not None]
    to_write = list(first_by_id.values())
    try:
        written = await _write_together([events[position] for position in to_write])
    except DatabaseError as error:
        if not _blames_the_event(error):
            raise
        # Rooms in room_sid order, as write_batch locks them.
        to_write.sort(key=lambda position: events[position][0].meeting.room_sid)  # type: ignore[union-attr]
        async with db.transaction():
            written = await _write_one_by_one([events[position] for position in to_write])
    for position, result in zip(to_write, written, strict=True):
        results[position] = result
    return [result for result in results if result is not None]


async def _write_together(
    events: Sequence[tuple[EventChanges, str]],
) -> list[RecordResult | DatabaseError]:
    """The fast path: the whole batch with :func:`write_batch`, in one transaction."""
    for attempt in (1, 2):
        try:
            async with db.transaction():
                meeting_ids = await write_batch(events)
            break
        except DatabaseError as error:
            # After a schema change (a migration), asyncpg's prepared
            # statements are stale and it cannot re-prepare them inside a
            # transaction; the failed transaction changed nothing, so run
            # it again once, with fresh ones.
            if attempt == 2 or not isinstance(error.__cause__, InvalidCachedStatementError):
                raise
    return [
        RecordResult(Outcome.recorded, meeting_id=meeting_id)
        if meeting_id is not None
        else RecordResult(Outcome.duplicate)
        for meeting_id in meeting_ids
    ]


async def _write_one_by_one(
    events: Sequence[tuple[EventChanges, str]],
) -> list[RecordResult | DatabaseError]:
    """The careful path: a savepoint per event, so a failure affects only its own."""
    written: list[RecordResult | DatabaseError] = []
    for changes, body in events:
        try:
            async with db.transaction():
                written.append(await record_event(changes, body))
        except DatabaseError as error:
            if not _blames_the_event(error):
                raise
            written.append(error)
    return written
