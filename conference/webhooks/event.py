"""
A LiveKit ``WebhookEvent`` as typed structs, decoded straight from the
body with msgspec: only the fields :mod:`conference.webhooks.mapping`
reads, each under its protobuf JSON name (lowerCamel, as LiveKit sends
it).

Why not ``livekit-protocol``'s own message? Its ``json_format.Parse`` is
the slowest step of a webhook: about 60 µs for a typical 500-byte event
against a few µs here (``python -m benchmarks.webhooks`` measures both in
the same run). The token and the body's hash are still checked by
``livekit-api`` (:mod:`conference.webhooks.verification`).

It reads protobuf JSON as protobuf does where LiveKit's events can differ:
64-bit integers as strings or numbers, enums as names or numbers, zero
values left out, unknown fields ignored. A message field is present
(``HasField``) when its key is, even as ``{}``. A value of the wrong type
is :class:`~conference.errors.MalformedWebhook`.

Example::

    event = decode_event(b'{"event": "room_started", "id": "EV_1", "room": {"sid": "RM_1"}}')
    event.room.sid  # 'RM_1'
"""

from __future__ import annotations

import msgspec
from livekit.protocol.egress import EgressInfo as ProtoEgressInfo
from livekit.protocol.egress import EgressStatus
from livekit.protocol.models import DisconnectReason
from livekit.protocol.models import ParticipantInfo as ProtoParticipantInfo

from conference.errors import MalformedWebhook

#: A protobuf enum in JSON: its value's name, or its number.
Enum = str | int


class Room(msgspec.Struct, rename="camel"):
    """``livekit.Room``: the fields the mapping reads."""

    sid: str = ""
    name: str = ""
    metadata: str = ""
    creation_time: int = 0
    creation_time_ms: int = 0


class Participant(msgspec.Struct, rename="camel"):
    """``livekit.ParticipantInfo``."""

    sid: str = ""
    identity: str = ""
    name: str = ""
    metadata: str = ""
    kind: Enum = 0
    disconnect_reason: Enum = 0
    joined_at: int = 0
    joined_at_ms: int = 0

    @property
    def kind_name(self) -> str:
        """``STANDARD``, ``AGENT`` ...: the kind's protobuf name."""
        return _enum_name(ProtoParticipantInfo.Kind, self.kind)

    @property
    def disconnect_reason_name(self) -> str:
        """``UNKNOWN_REASON``, ``CLIENT_INITIATED`` ...: the reason's protobuf name."""
        return _enum_name(DisconnectReason, self.disconnect_reason)


class FileInfo(msgspec.Struct, rename="camel"):
    """``livekit.FileInfo``: one file an egress wrote."""

    filename: str = ""
    location: str = ""
    size: int = 0
    duration: int = 0  # nanoseconds


class SegmentsInfo(msgspec.Struct, rename="camel"):
    """``livekit.SegmentsInfo``: one HLS playlist an egress wrote."""

    playlist_name: str = ""
    playlist_location: str = ""
    size: int = 0
    duration: int = 0  # nanoseconds


class RoomCompositeRequest(msgspec.Struct, rename="camel"):
    """``livekit.RoomCompositeEgressRequest``."""

    layout: str = ""


class Egress(msgspec.Struct, rename="camel"):
    """``livekit.EgressInfo``."""

    egress_id: str = ""
    room_id: str = ""
    room_name: str = ""
    status: Enum = 0
    started_at: int = 0  # nanoseconds, as every egress time
    ended_at: int = 0
    updated_at: int = 0
    error: str = ""
    error_code: int = 0
    details: str = ""
    file_results: list[FileInfo] = []
    segment_results: list[SegmentsInfo] = []
    file: FileInfo | None = None  # servers before v1.7
    segments: SegmentsInfo | None = None
    # The ``request`` oneof: which kind of egress it is.
    room_composite: RoomCompositeRequest | None = None
    web: dict[str, object] | None = None
    participant: dict[str, object] | None = None
    track_composite: dict[str, object] | None = None
    track: dict[str, object] | None = None
    egress: dict[str, object] | None = None
    replay: dict[str, object] | None = None

    @property
    def status_number(self) -> int:
        """The ``EgressStatus`` as its number (``EGRESS_STARTING`` for an unknown name)."""
        return _enum_number(EgressStatus, self.status)

    @property
    def request(self) -> str | None:
        """The protobuf name of the request field that is set, as ``WhichOneof("request")``."""
        return next((name for name in _REQUEST_FIELDS if getattr(self, name) is not None), None)


class IngressState(msgspec.Struct, rename="camel"):
    """``livekit.IngressState``."""

    room_id: str = ""
    started_at: int = 0  # nanoseconds


class Ingress(msgspec.Struct, rename="camel"):
    """``livekit.IngressInfo``."""

    room_name: str = ""
    state: IngressState | None = None


class Job(msgspec.Struct, rename="camel"):
    """``livekit.Job`` (agent dispatch): only its room."""

    room: Room | None = None


class WebhookEvent(msgspec.Struct, rename="camel"):
    """``livekit.WebhookEvent``: what LiveKit posts."""

    event: str = ""
    id: str = ""
    created_at: int = 0  # seconds
    room: Room | None = None
    participant: Participant | None = None
    egress_info: Egress | None = None
    ingress_info: Ingress | None = None
    job: Job | None = None


# The request oneof's fields, named as protobuf (and the struct) name them.
_REQUEST_FIELDS = tuple(
    field.name
    for field in ProtoEgressInfo.DESCRIPTOR.oneofs_by_name["request"].fields
    if field.name in Egress.__struct_fields__
)

# Not strict: 64-bit integers arrive as strings ("1764000000"), as
# protobuf JSON writes them.
_decoder = msgspec.json.Decoder(WebhookEvent, strict=False)


def decode_event(body: bytes | str) -> WebhookEvent:
    """
    The event in ``body`` (protobuf JSON). Raises
    :class:`~conference.errors.MalformedWebhook` when it is not JSON or a
    field has a value of the wrong type.
    """
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as error:
        raise MalformedWebhook(f"the body is not a LiveKit WebhookEvent: {error}") from error
    except msgspec.DecodeError as error:
        raise MalformedWebhook(f"the body is not JSON: {error}") from error


def _enum_name(enum: object, value: Enum) -> str:
    number = _enum_number(enum, value)
    try:
        return str(enum.Name(number))  # type: ignore[attr-defined]
    except ValueError:  # a number newer than livekit-protocol
        return str(number)


def _enum_number(enum: object, value: Enum) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(enum.Value(value))  # type: ignore[attr-defined]
    except ValueError:  # protobuf ignores an unknown name: the default
        return 0
