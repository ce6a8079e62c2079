"""
Bulk ingestion: many analytics events in one call, written with COPY.

:func:`record_events` is the fast path for writers that have more than a
handful of events at once (a queue consumer, an import, a replay). It
checks every event in Python, then streams them with asyncpg's
``copy_records_to_table`` on a pooled connection, inside the caller's
:func:`conference.db.transaction` when there is one. It reaches about the
speed of raw asyncpg COPY into the same table (see ``docs/benchmarks.md``);
Piccolo's ``insert(*rows)`` reaches a fraction of it.

All or nothing: an invalid event rejects the whole batch with
:class:`~conference.errors.InvalidEvent`, which says which event (its
position in the batch, from 0) and why, and nothing is written. Checks that
only the database can make (the meeting exists, ``event_data`` is a JSON
object, a webhook id is new) are made there, and their errors name the
event just the same.

Example::

    from conference.ingest import NewEvent, record_events

    count = await record_events(
        NewEvent(
            meeting_id=meeting.id,
            participant_id=participant.id,
            event_type="track_published",
            event_data={"source": "CAMERA"},
            created_at=moment,
        )
        for participant, moment in published
    )

Single events, or events that must update meetings, participants and
recordings too, belong to :mod:`conference.webhooks` instead.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pgproto.pgproto import UUID as PgUUID

from conference.db import Database, get_database, translate_error
from conference.errors import InvalidEvent
from conference.tables import AnalyticsEvent

logger = logging.getLogger(__name__)

TABLE = AnalyticsEvent._meta.tablename

# Lengths of the varchar columns, from tables.py.
_EVENT_TYPE_LENGTH = int(AnalyticsEvent.event_type.length or 0)
_WEBHOOK_EVENT_ID_LENGTH = int(AnalyticsEvent.webhook_event_id.length or 0)

# uuid.UUID and asyncpg's own UUID (what asyncpg returns for uuid columns):
# both are sent as they are.
_UUID_TYPES = (uuid.UUID, PgUUID)

# The column each COPY fills, in record order. ``id`` and ``created_at`` are
# left out for events that do not set them, so that the database fills them
# with the column defaults (the key generator, the transaction's now()).
_ID = AnalyticsEvent.id._meta.db_column_name
_CREATED_AT = AnalyticsEvent.created_at._meta.db_column_name
_COLUMNS = [
    column._meta.db_column_name
    for column in (
        AnalyticsEvent.meeting_id,
        AnalyticsEvent.participant_id,
        AnalyticsEvent.event_type,
        AnalyticsEvent.event_data,
        AnalyticsEvent.webhook_event_id,
    )
]

# "COPY analytics, line 42" (or ", line 42, column event_data: ...") in the
# error context of a row the server rejected.
_COPY_LINE = re.compile(r"\bCOPY \w+, line (\d+)(?:, column (\w+))?")
# 'Key (meeting_id)=(…) is not present in table "meetings".'
_KEY_DETAIL = re.compile(r"^Key \((\w+)\)=\((.*)\) ")


@dataclass(frozen=True, slots=True)
class NewEvent:
    """
    One analytics event to record; the fields are the columns of
    ``analytics`` (see :class:`~conference.tables.AnalyticsEvent`).

    :param meeting_id:
        The meeting (must exist).
    :param event_type:
        A LiveKit event name (:class:`~conference.devdata.events.EventType`) or your
        own: not blank, at most 64 characters.
    :param participant_id:
        The participant the event is about, if any (must exist).
    :param event_data:
        A JSON object: a ``dict``, or its JSON text (sent as it is, so a
        webhook body costs nothing to pass on). Default ``{}``.
    :param created_at:
        When it happened, timezone-aware. Default: the time of the
        transaction, as for a row inserted without it.
    :param webhook_event_id:
        LiveKit's webhook ``id``, unique: an event recorded before rejects
        the batch.
    :param id:
        The primary key. Default: the column default (a new key).
    """

    meeting_id: uuid.UUID
    event_type: str
    participant_id: uuid.UUID | None = None
    event_data: Mapping[str, Any] | str | None = None
    created_at: datetime | None = None
    webhook_event_id: str | None = None
    id: uuid.UUID | None = None


_FIELDS = frozenset(field.name for field in fields(NewEvent))

Row = tuple[Any, ...]


class _Group:
    """
    The events that leave the same columns to their defaults: one COPY.
    ``positions`` maps a COPY line (from 1) back to the event's position in
    the batch, for error messages.
    """

    __slots__ = ("columns", "positions", "rows")

    def __init__(self, with_id: bool, with_created_at: bool) -> None:
        self.columns = ([_ID] if with_id else []) + _COLUMNS
        if with_created_at:
            self.columns.append(_CREATED_AT)
        self.rows: list[Row] = []
        self.positions: list[int] = []


async def record_events(
    events: Iterable[NewEvent | Mapping[str, Any]], *, database: Database | None = None
) -> int:
    """
    Record many analytics events at once with COPY; returns how many.

    Every event is checked before anything is sent; an invalid one raises
    :class:`~conference.errors.InvalidEvent` naming it, and nothing is
    written. Inside :func:`conference.db.transaction` the events join that
    transaction (as a savepoint: a rejected batch leaves the transaction
    usable); otherwise they are written in a transaction of their own.

    Pass batches of a few thousand to a few hundred thousand events: the
    batch is held in memory, and each call costs a few round trips.

    :param events:
        :class:`NewEvent` objects, or mappings with the same keys.
    :param database:
        Default: the engine of ``piccolo_conf`` (:func:`conference.db.get_database`).
    :raises InvalidEvent:
        An event is malformed, or the database rejected it (unknown meeting
        or participant, ``event_data`` not a JSON object, a webhook id
        recorded before). ``error.index`` is its position in ``events``.
    """
    groups = _prepare(events)
    count = sum(len(group.rows) for group in groups)
    if not count:
        return 0
    database = database or get_database()
    started = time.perf_counter()
    async with database.transaction() as transaction:
        connection = transaction.connection
        for group in groups:
            try:
                await connection.copy_records_to_table(
                    TABLE, records=group.rows, columns=group.columns
                )
            except asyncpg.PostgresError as error:
                rejected = _rejected_event(error, group)
                if rejected is None:
                    raise  # not about one event: database.transaction translates it
                raise rejected from error
    logger.debug(
        "recorded %d analytics events in %.1f ms", count, (time.perf_counter() - started) * 1000
    )
    return count


def _prepare(events: Iterable[NewEvent | Mapping[str, Any]]) -> list[_Group]:
    """Check every event and turn it into a COPY record, grouped by columns."""
    groups: dict[tuple[bool, bool], _Group] = {}
    group: _Group | None = None
    key: tuple[bool, bool] | None = None
    for index, event in enumerate(events):
        if type(event) is not NewEvent:
            event = _from_mapping(event, index)
        # The fast path first: exact types need no conversion. Anything else
        # goes through _checked_* to be converted or rejected.
        meeting_id = event.meeting_id
        if type(meeting_id) not in _UUID_TYPES:
            meeting_id = _checked_uuid(meeting_id, index, "meeting_id", required=True)
        participant_id = event.participant_id
        if participant_id is not None and type(participant_id) not in _UUID_TYPES:
            participant_id = _checked_uuid(participant_id, index, "participant_id")
        event_type = event.event_type
        if (
            type(event_type) is not str
            or not event_type
            or len(event_type) > _EVENT_TYPE_LENGTH
            or event_type.isspace()
        ):
            _check_text(event_type, index, "event_type", _EVENT_TYPE_LENGTH, required=True)
        event_data = event.event_data
        if type(event_data) is not str:
            event_data = _checked_json(event_data, index)
        webhook_event_id = event.webhook_event_id
        if webhook_event_id is not None and (
            type(webhook_event_id) is not str
            or not webhook_event_id
            or len(webhook_event_id) > _WEBHOOK_EVENT_ID_LENGTH
            or webhook_event_id.isspace()
        ):
            _check_text(webhook_event_id, index, "webhook_event_id", _WEBHOOK_EVENT_ID_LENGTH)
        created_at = event.created_at
        if created_at is not None and (
            type(created_at) is not datetime or created_at.tzinfo is None
        ):
            _check_moment(created_at, index)
        event_id = event.id
        if event_id is not None and type(event_id) not in _UUID_TYPES:
            event_id = _checked_uuid(event_id, index, "id")

        row_key = (event_id is not None, created_at is not None)
        if row_key != key:
            key = row_key
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(*key)
        assert group is not None
        row: Row = (meeting_id, participant_id, event_type, event_data, webhook_event_id)
        if event_id is not None:
            row = (event_id, *row)
        if created_at is not None:
            row = (*row, created_at)
        group.rows.append(row)
        group.positions.append(index)
    return list(groups.values())


# --- Checks: each converts a value or raises InvalidEvent ---------------------


def _invalid(index: int, field: str, problem: str) -> InvalidEvent:
    return InvalidEvent(
        f"event {index} of the batch (from 0): {field} {problem}; nothing was recorded",
        index=index,
        field=field,
    )


def _from_mapping(event: Any, index: int) -> NewEvent:
    if not isinstance(event, Mapping):
        raise InvalidEvent(
            f"event {index} of the batch (from 0) is a {type(event).__name__}; pass "
            "NewEvent objects or mappings with its fields; nothing was recorded",
            index=index,
        )
    unknown = sorted(str(name) for name in event if name not in _FIELDS)
    if unknown:
        raise InvalidEvent(
            f"event {index} of the batch (from 0) has unknown field(s) {', '.join(unknown)}; "
            f"the fields are {', '.join(sorted(_FIELDS))}; nothing was recorded",
            index=index,
            field=unknown[0],
        )
    for required in ("meeting_id", "event_type"):
        if required not in event:
            raise _invalid(index, required, "is missing")
    return NewEvent(**event)


def _checked_uuid(value: Any, index: int, field: str, required: bool = False) -> Any:
    if value is None:
        if required:
            raise _invalid(index, field, "is missing")
        return None
    if isinstance(value, _UUID_TYPES):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise _invalid(index, field, "is not a UUID") from None
    raise _invalid(index, field, f"must be a UUID, not {type(value).__name__}")


def _check_text(value: Any, index: int, field: str, length: int, required: bool = False) -> None:
    if value is None and required:
        raise _invalid(index, field, "is missing")
    if not isinstance(value, str):
        raise _invalid(index, field, f"must be a str, not {type(value).__name__}")
    if not value.strip():
        raise _invalid(index, field, "is blank")
    if len(value) > length:
        raise _invalid(index, field, f"is {len(value)} characters long; at most {length}")


def _checked_json(value: Any, index: int) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise _invalid(
            index, "event_data", f"must be a JSON object (a dict), not {type(value).__name__}"
        )
    try:
        return json.dumps(value if isinstance(value, dict) else dict(value))
    except (TypeError, ValueError) as error:
        raise _invalid(index, "event_data", f"is not JSON serialisable ({error})") from None


def _check_moment(value: Any, index: int) -> None:
    if not isinstance(value, datetime):
        raise _invalid(index, "created_at", f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _invalid(
            index, "created_at", "has no timezone; pass an aware datetime (e.g. tzinfo=UTC)"
        )


# --- Errors of the database, back to the event --------------------------------


def _rejected_event(error: asyncpg.PostgresError, group: _Group) -> InvalidEvent | None:
    """
    The :class:`InvalidEvent` for a row the server rejected, or ``None`` when
    the error is not about one row (a lost connection, a timeout).

    A row that fails while it is copied (a check constraint, invalid JSON,
    a duplicate key) is named by the error context's COPY line; a foreign
    key, checked when the COPY ends, by the key value in the detail.
    """
    copy_line = _COPY_LINE.search(getattr(error, "context", None) or "")
    position: int | None = None
    field: str | None = getattr(error, "column_name", None)
    if copy_line and 1 <= int(copy_line.group(1)) <= len(group.positions):
        position = int(copy_line.group(1)) - 1
        field = field or copy_line.group(2)
    else:
        match = _KEY_DETAIL.match(getattr(error, "detail", None) or "")
        if match and match.group(1) in group.columns:
            field = match.group(1)
            position = _find_value(group, group.columns.index(field), match.group(2))
    if position is None:
        return None
    index = group.positions[position]
    translated = translate_error(error)
    reason = str(translated) if translated is not None else str(error)
    return InvalidEvent(
        f"event {index} of the batch (from 0) was rejected by the database: {reason}; "
        "nothing was recorded",
        index=index,
        field=field,
    )


def _find_value(group: _Group, column: int, text: str) -> int | None:
    for position, row in enumerate(group.rows):
        if row[column] is not None and str(row[column]) == text:
            return position
    return None
