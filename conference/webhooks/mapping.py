"""
From one verified LiveKit ``WebhookEvent`` to the rows it touches: plain
data and pure functions, no I/O (:mod:`conference.webhooks.store` writes).

What identifies what:

- a meeting is one room session, keyed by the room ``sid`` (``RM_…``);
  whichever event of the room arrives first creates it. Egress and ingress
  events name the room by ``roomId``;
- a participant row is one participant session, keyed by the participant
  ``sid`` (``PA_…``), never by identity: a reconnect is a new sid;
- a recording is one egress, keyed by ``egressId``;
- every event becomes one ``analytics`` row keyed by the webhook ``id``,
  or, for an event without one, by ``sha256:`` and the SHA-256 of its body
  (a retry repeats the body byte for byte).

Each field carries what is needed to merge it into the row already there
in any order LiveKit delivers (see :mod:`conference.webhooks.store`):
earliest start, latest end, egress status by rank.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import msgspec
from livekit.protocol.egress import EgressStatus

from conference.errors import MalformedWebhook
from conference.tables import AnalyticsEvent, RecordingStatus
from conference.webhooks.event import Egress, Participant, WebhookEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The longest event type ``analytics.event_type`` holds, read from the
#: column so that a migration widening it needs no edit here.
MAX_EVENT_TYPE_LENGTH = int(AnalyticsEvent.event_type.length or 0)

#: ``analytics.webhook_event_id`` is a varchar too.
MAX_EVENT_ID_LENGTH = int(AnalyticsEvent.webhook_event_id.length or 0)

#: How the key of an event without an ``id`` starts (then 64 hex digits).
BODY_KEY_PREFIX = "sha256:"

#: Events that end a participant session.
PARTICIPANT_ENDING_EVENTS = frozenset({"participant_left", "participant_connection_aborted"})

#: How far each egress status is along the lifecycle. A recording's status
#: only moves to a higher rank, so a late ``egress_updated`` cannot undo an
#: ``egress_ended``; the terminal states share the highest rank.
STATUS_RANK: dict[RecordingStatus, int] = {
    RecordingStatus.starting: 0,
    RecordingStatus.active: 1,
    RecordingStatus.ending: 2,
    RecordingStatus.complete: 3,
    RecordingStatus.failed: 3,
    RecordingStatus.aborted: 3,
    RecordingStatus.limit_reached: 3,
}

_STATUS_BY_EGRESS_STATUS: dict[int, RecordingStatus] = {
    EgressStatus.EGRESS_STARTING: RecordingStatus.starting,
    EgressStatus.EGRESS_ACTIVE: RecordingStatus.active,
    EgressStatus.EGRESS_ENDING: RecordingStatus.ending,
    EgressStatus.EGRESS_COMPLETE: RecordingStatus.complete,
    EgressStatus.EGRESS_FAILED: RecordingStatus.failed,
    EgressStatus.EGRESS_ABORTED: RecordingStatus.aborted,
    EgressStatus.EGRESS_LIMIT_REACHED: RecordingStatus.limit_reached,
}


class MetadataMode(str, Enum):
    """How an event's room snapshot treats the meeting's ``metadata``."""

    #: The event carries the room as it is now: its metadata wins. Room
    #: events are FIFO per room, so the last one applied is the newest.
    overwrite = "overwrite"
    #: ``room_started``: the oldest snapshot of all. It may arrive after
    #: ``room_finished`` (a known LiveKit anomaly), so it only fills a
    #: meeting that has no metadata yet.
    fill_empty = "fill_empty"
    #: No room snapshot (egress, ingress): leave the metadata alone.
    keep = "keep"


@dataclass(frozen=True)
class MeetingChange:
    """
    The meeting (room session) an event belongs to.

    :param room_sid:
        LiveKit's room sid, the key.
    :param room_name:
        The room's name, or the sid when the event does not name the room.
    :param name_known:
        ``room_name`` is LiveKit's name of the room, not the placeholder.
    :param created_at:
        The room's creation time when the event carries it, otherwise the
        earliest time the event knows the room existed. Merged by minimum.
    :param ended_at:
        When the room finished (``room_finished`` only). Merged by maximum.
    :param metadata:
        The room's metadata as a JSON object (see :func:`app_metadata`).
    :param metadata_mode:
        How ``metadata`` merges into the row.
    """

    room_sid: str
    room_name: str
    name_known: bool
    created_at: datetime
    ended_at: datetime | None
    metadata: dict[str, Any]
    metadata_mode: MetadataMode


@dataclass(frozen=True)
class ParticipantChange:
    """
    The participant session an event is about.

    :param joined_at:
        LiveKit's ``joinedAtMs`` (or ``joinedAt``). Merged by minimum.
    :param left_at:
        For ``participant_left`` and ``participant_connection_aborted``.
        Merged by maximum, never before ``joined_at``.
    :param metadata:
        ``name``, the participant's metadata, ``kind`` and
        ``disconnect_reason`` when LiveKit gives them; the newest event's
        wins (participant events are FIFO per room).
    """

    participant_sid: str
    identity: str
    joined_at: datetime
    left_at: datetime | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class RecordingChange:
    """
    The egress an event reports on.

    :param status:
        Merged by :data:`STATUS_RANK`: it only moves forward.
    :param storage_path, file_size, duration:
        From the first file result (or segment playlist): where the file
        is, its size in bytes, its length in seconds. An event of a higher
        or equal rank overrides; a lower one only fills gaps.
    """

    egress_id: str
    status: RecordingStatus
    started_at: datetime | None
    completed_at: datetime | None
    storage_path: str | None
    file_size: int | None
    duration: float | None
    metadata: dict[str, Any]

    @property
    def rank(self) -> int:
        """The status's place in the lifecycle."""
        return STATUS_RANK[self.status]


@dataclass(frozen=True)
class EventChanges:
    """
    Everything one webhook changes.

    :param event_id:
        The webhook ``id``: the idempotency key.
    :param occurred_at:
        The most precise time the event gives for itself; becomes
        ``analytics.created_at``.
    :param meeting:
        ``None`` when the event names no room (a web egress, for example):
        it is acknowledged and not recorded.
    """

    event_id: str
    event_type: str
    occurred_at: datetime
    meeting: MeetingChange | None
    participant: ParticipantChange | None
    recording: RecordingChange | None


# --- Time -------------------------------------------------------------------


def from_seconds(value: int) -> datetime | None:
    """LiveKit seconds since the epoch; ``None`` for 0 (protobuf's "unset")."""
    return _EPOCH + timedelta(seconds=value) if value > 0 else None


def from_millis(value: int) -> datetime | None:
    """LiveKit milliseconds since the epoch; ``None`` for 0."""
    return _EPOCH + timedelta(milliseconds=value) if value > 0 else None


def from_nanos(value: int) -> datetime | None:
    """LiveKit nanoseconds since the epoch, to the microsecond; ``None`` for 0."""
    return _EPOCH + timedelta(microseconds=value // 1000) if value > 0 else None


def _first(*values: datetime | None) -> datetime | None:
    return next((value for value in values if value is not None), None)


def body_event_id(body: bytes) -> str:
    """The key of an event without an ``id``: ``sha256:`` and the body's SHA-256 in hex."""
    return BODY_KEY_PREFIX + hashlib.sha256(body).hexdigest()


# --- Metadata ---------------------------------------------------------------


def app_metadata(raw: str) -> dict[str, Any]:
    """
    LiveKit's free-form metadata string as a JSON object: the object itself
    when it is one (the usual case), ``{"metadata": raw}`` for any other
    text, ``{}`` when empty.
    """
    if not raw:
        return {}
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:  # also NaN, which jsonb would refuse
        return {"metadata": raw}
    return value if isinstance(value, dict) else {"metadata": raw}


def _participant_metadata(participant: Participant) -> dict[str, Any]:
    metadata = app_metadata(participant.metadata)
    if participant.name:
        metadata["name"] = participant.name
    kind = participant.kind_name
    if kind != "STANDARD":
        metadata["kind"] = kind
    reason = participant.disconnect_reason_name
    if reason != "UNKNOWN_REASON":
        metadata["disconnect_reason"] = reason
    return metadata


# --- The mapping ------------------------------------------------------------


def changes_for(
    event: WebhookEvent, received_at: datetime, body: bytes | None = None
) -> EventChanges:
    """
    What ``event`` changes. Raises :class:`MalformedWebhook` when a signed
    event lacks what recording it needs (a type, a participant's ``sid``),
    or has no ``id`` and no ``body`` is given to key it by.

    :param received_at:
        When the request arrived; only used when the event carries no time
        of its own (no ``createdAt``: LiveKit's server SDK samples, older
        servers).
    :param body:
        The exact body of the request. An event without an ``id`` is keyed
        by its SHA-256 (:func:`body_event_id`): LiveKit repeats the body
        byte for byte when it retries, so the retry is recognised.
    """
    event_id = event.id
    if not event_id.strip():
        if body is None:
            raise MalformedWebhook("the event has no id, so retries could not be recognised")
        event_id = body_event_id(body)
    elif len(event_id) > MAX_EVENT_ID_LENGTH:
        raise MalformedWebhook(
            f"the event id must be at most {MAX_EVENT_ID_LENGTH} characters, got {len(event.id)}"
        )
    event_type = event.event.strip()
    if not event_type or len(event_type) > MAX_EVENT_TYPE_LENGTH:
        raise MalformedWebhook(
            f"the event type must be 1 to {MAX_EVENT_TYPE_LENGTH} characters, "
            f"got {event.event[:80]!r}"
        )
    created_at = from_seconds(event.created_at) or received_at

    participant = _participant_change(event, event_type, created_at)
    recording = _recording_change(event.egress_info) if event.egress_info is not None else None
    meeting = _meeting_change(event, event_type, created_at, recording)
    return EventChanges(
        event_id=event_id,
        event_type=event_type,
        occurred_at=_occurred_at(event, event_type, created_at),
        meeting=meeting,
        participant=participant if meeting is not None else None,
        recording=recording if meeting is not None else None,
    )


def _occurred_at(event: WebhookEvent, event_type: str, created_at: datetime) -> datetime:
    # createdAt has one-second resolution; prefer the finer times LiveKit
    # gives for the same moment.
    if event_type == "room_started" and event.room is not None:
        return _first(_room_created(event), created_at) or created_at
    if event_type == "participant_joined" and event.participant is not None:
        return from_millis(event.participant.joined_at_ms) or created_at
    if event.egress_info is not None:
        return from_nanos(event.egress_info.updated_at) or created_at
    return created_at


def _room_created(event: WebhookEvent) -> datetime | None:
    room = event.room
    if room is None:
        return None
    return _first(from_millis(room.creation_time_ms), from_seconds(room.creation_time))


def _meeting_change(
    event: WebhookEvent,
    event_type: str,
    created_at: datetime,
    recording: RecordingChange | None,
) -> MeetingChange | None:
    if event.room is not None and event.room.sid:
        room = event.room
        room_created = _room_created(event) or created_at
        ended_at = max(created_at, room_created) if event_type == "room_finished" else None
        return MeetingChange(
            room_sid=room.sid,
            room_name=room.name or room.sid,
            name_known=bool(room.name),
            created_at=room_created,
            ended_at=ended_at,
            metadata=app_metadata(room.metadata),
            metadata_mode=(
                MetadataMode.fill_empty if event_type == "room_started" else MetadataMode.overwrite
            ),
        )
    if event.egress_info is not None and event.egress_info.room_id:
        egress = event.egress_info
        # The egress cannot have started before its room: its own times are
        # an upper bound of the room's creation until a room event says.
        seen = _first(
            recording.started_at if recording else None,
            from_nanos(egress.updated_at),
            created_at,
        )
        return _named_room(egress.room_id, egress.room_name, seen or created_at)
    ingress = event.ingress_info
    if ingress is not None and ingress.state is not None and ingress.state.room_id:
        seen = _first(from_nanos(ingress.state.started_at), created_at) or created_at
        return _named_room(ingress.state.room_id, ingress.room_name, seen)
    if event.job is not None and event.job.room is not None and event.job.room.sid:
        job_room = event.job.room
        return _named_room(job_room.sid, job_room.name, created_at)
    return None


def _named_room(sid: str, name: str, seen: datetime) -> MeetingChange:
    return MeetingChange(
        room_sid=sid,
        room_name=name or sid,
        name_known=bool(name),
        created_at=seen,
        ended_at=None,
        metadata={},
        metadata_mode=MetadataMode.keep,
    )


def _participant_change(
    event: WebhookEvent, event_type: str, created_at: datetime
) -> ParticipantChange | None:
    if event.participant is None:
        if event_type.startswith("participant_"):
            raise MalformedWebhook(f"{event_type} without a participant")
        return None
    participant = event.participant
    if not participant.sid or not participant.identity.strip():
        raise MalformedWebhook(f"{event_type}: the participant has no sid or no identity")
    joined_at = (
        _first(from_millis(participant.joined_at_ms), from_seconds(participant.joined_at))
        or created_at
    )
    left_at = max(created_at, joined_at) if event_type in PARTICIPANT_ENDING_EVENTS else None
    return ParticipantChange(
        participant_sid=participant.sid,
        identity=participant.identity,
        joined_at=joined_at,
        left_at=left_at,
        metadata=_participant_metadata(participant),
    )


def _recording_change(egress: Egress) -> RecordingChange | None:
    if not egress.egress_id:
        # A failed auto-egress can end without an id: it stays an analytics
        # event, with nothing to key a recording by.
        return None
    status = _STATUS_BY_EGRESS_STATUS.get(egress.status_number, RecordingStatus.starting)
    started_at = from_nanos(egress.started_at)
    completed_at = from_nanos(egress.ended_at)
    if started_at is not None and completed_at is not None:
        completed_at = max(completed_at, started_at)
    storage_path, file_size, duration = _output(egress)
    return RecordingChange(
        egress_id=egress.egress_id,
        status=status,
        started_at=started_at,
        completed_at=completed_at,
        storage_path=storage_path,
        file_size=file_size,
        duration=duration,
        metadata=_recording_metadata(egress),
    )


def _output(egress: Egress) -> tuple[str | None, int | None, float | None]:
    """``(storage_path, file_size, duration)`` of the egress's main output."""
    files = list(egress.file_results) or (
        [egress.file] if egress.file is not None else []  # servers before v1.7
    )
    if files:
        first = files[0]
        return (
            first.location or first.filename or None,
            first.size or None,
            first.duration / 1e9 if first.duration > 0 else None,
        )
    segments = list(egress.segment_results) or (
        [egress.segments] if egress.segments is not None else []
    )
    if segments:
        playlist = segments[0]
        return (
            playlist.playlist_location or playlist.playlist_name or None,
            playlist.size or None,
            playlist.duration / 1e9 if playlist.duration > 0 else None,
        )
    return None, None, None


def _recording_metadata(egress: Egress) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    request = egress.request
    if request:
        metadata["request"] = request
    if egress.room_composite is not None and egress.room_composite.layout:
        metadata["layout"] = egress.room_composite.layout
    if len(egress.file_results) > 1:
        metadata["files"] = [result.location or result.filename for result in egress.file_results]
    if egress.error:
        metadata["error"] = egress.error
    if egress.error_code:
        metadata["error_code"] = egress.error_code
    if egress.details:
        metadata["details"] = egress.details
    return metadata
