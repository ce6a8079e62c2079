"""
LiveKit webhook events as ``conference`` stores them in ``analytics``: the
event name in ``event_type`` and the webhook body (LiveKit's protobuf JSON,
camelCase, 64-bit integers as strings) in ``event_data``.

The builders below write compact bodies with the fields LiveKit sends that
matter here, so that rows written by :mod:`conference.devdata.seed` and
:mod:`conference.devdata.generate` read like those recorded from real webhooks.
They take and return JSON text, not dicts: the generator calls them millions
of times, and a part shared by several events (a room, a participant) is
serialised once.

Example::

    room = room_json("RM_Xq7NcV2pL9sK", "weekly-standup", created_ms)
    parts = webhook_parts(room=room)
    body = webhook_json(EventType.room_started.value, "EV_3kQz8mWp1xRt", created_ms, parts)
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum


class EventType(str, Enum):
    """``analytics.event_type``: LiveKit's webhook event names."""

    room_started = "room_started"
    room_finished = "room_finished"
    participant_joined = "participant_joined"
    participant_left = "participant_left"
    track_published = "track_published"
    track_unpublished = "track_unpublished"
    egress_started = "egress_started"
    egress_updated = "egress_updated"
    egress_ended = "egress_ended"


#: ``EgressStatus`` names as LiveKit sends them, by the ``recordings.status``
#: value they correspond to.
EGRESS_STATUS = {
    "starting": "EGRESS_STARTING",
    "active": "EGRESS_ACTIVE",
    "ending": "EGRESS_ENDING",
    "complete": "EGRESS_COMPLETE",
    "failed": "EGRESS_FAILED",
    "aborted": "EGRESS_ABORTED",
    "limit_reached": "EGRESS_LIMIT_REACHED",
}


def unix_ms(moment: datetime) -> int:
    """``moment`` (an aware datetime) in Unix milliseconds, as the builders take times."""
    return round(moment.timestamp() * 1000)


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def webhook_parts(**parts: str) -> str:
    """
    The objects of a webhook body, each already JSON (``room=``,
    ``participant=``, ``track=``, ``egressInfo=``), ready for
    :func:`webhook_json`. Events about the same participant share them.
    """
    return "".join(f', "{name}": {value}' for name, value in parts.items())


def webhook_json(event: str, event_id: str, at_ms: int, parts: str) -> str:
    """
    A webhook body: ``event`` (an :class:`EventType` value), ``id``,
    ``createdAt`` (Unix seconds) and ``parts`` from :func:`webhook_parts`.
    """
    return f'{{"event": "{event}", "id": "{event_id}", "createdAt": "{at_ms // 1000}"{parts}}}'


def room_json(sid: str, name: str, created_ms: int) -> str:
    """A ``Room``: sid, name and creation time."""
    return (
        f'{{"sid": "{sid}", "name": {_text(name)}, '
        f'"creationTime": "{created_ms // 1000}", "creationTimeMs": "{created_ms}"}}'
    )


def participant_json(
    sid: str,
    identity: str,
    name: str,
    joined_ms: int,
    disconnect_reason: str | None = None,
) -> str:
    """
    A ``ParticipantInfo``: ``ACTIVE``, or ``DISCONNECTED`` with the reason
    when ``disconnect_reason`` is given.
    """
    state = "ACTIVE" if disconnect_reason is None else "DISCONNECTED"
    reason = "" if disconnect_reason is None else f', "disconnectReason": "{disconnect_reason}"'
    return (
        f'{{"sid": "{sid}", "identity": {_text(identity)}, "name": {_text(name)}, '
        f'"state": "{state}", "joinedAt": "{joined_ms // 1000}", '
        f'"joinedAtMs": "{joined_ms}"{reason}}}'
    )


def track_json(sid: str, source: str) -> str:
    """A ``TrackInfo``: ``source`` is ``MICROPHONE``, ``CAMERA`` or ``SCREEN_SHARE``."""
    kind = "AUDIO" if source == "MICROPHONE" else "VIDEO"
    return f'{{"sid": "{sid}", "type": "{kind}", "source": "{source}"}}'


def egress_json(
    egress_id: str,
    room_sid: str,
    room_name: str,
    status: str,
    started_ms: int,
    updated_ms: int,
    ended_ms: int | None = None,
    location: str | None = None,
    size: int | None = None,
    duration: float | None = None,
    error: str | None = None,
) -> str:
    """
    An ``EgressInfo`` (times in nanoseconds, as LiveKit sends them), with
    its file result once the file exists.

    :param status:
        A ``recordings.status`` value (``"complete"``...).
    """
    parts = [
        f'"egressId": "{egress_id}", "roomId": "{room_sid}", "roomName": {_text(room_name)}',
        f'"status": "{EGRESS_STATUS[status]}"',
        f'"startedAt": "{started_ms * 1_000_000}", "updatedAt": "{updated_ms * 1_000_000}"',
    ]
    if ended_ms is not None:
        parts.append(f'"endedAt": "{ended_ms * 1_000_000}"')
    if error is not None:
        parts.append(f'"error": {_text(error)}')
    if location is not None:
        file = [f'"location": {_text(location)}']
        if size is not None:
            file.append(f'"size": "{size}"')
        if duration is not None:
            file.append(f'"duration": "{round(duration * 1e9)}"')
        parts.append(f'"fileResults": [{{{", ".join(file)}}}]')
    return "{" + ", ".join(parts) + "}"
