"""What one LiveKit webhook event changes, without a database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conference.errors import MalformedWebhook
from conference.tables import RecordingStatus
from conference.webhooks.event import decode_event
from conference.webhooks.mapping import (
    MetadataMode,
    app_metadata,
    changes_for,
    from_nanos,
)

RECEIVED = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _changes(body: str):
    return changes_for(decode_event(body), RECEIVED)


def test_an_egress_started_without_status_is_starting_and_keys_the_room_by_room_id() -> None:
    changes = _changes(
        '{"event": "egress_started", "id": "EV_1", "createdAt": "1795528830",'
        ' "egressInfo": {"egressId": "EG_1", "roomId": "RM_1", "roomName": "standup",'
        ' "updatedAt": "1795528830250000000"}}'
    )
    assert changes.recording is not None
    assert changes.recording.status is RecordingStatus.starting
    assert changes.recording.started_at is None
    assert changes.meeting is not None
    assert (changes.meeting.room_sid, changes.meeting.room_name) == ("RM_1", "standup")
    assert changes.meeting.metadata_mode is MetadataMode.keep
    assert changes.occurred_at == from_nanos(1795528830250000000)


def test_an_old_server_s_deprecated_file_field_gives_path_size_and_seconds() -> None:
    changes = _changes(
        '{"event": "egress_ended", "id": "EV_2", "egressInfo": {"egressId": "EG_2",'
        ' "roomId": "RM_1", "status": "EGRESS_COMPLETE", "startedAt": "1000000000000",'
        ' "endedAt": "1061500000000", "file": {"filename": "a.mp4", "size": "2048",'
        ' "duration": "61500000000"}}}'
    )
    recording = changes.recording
    assert recording is not None
    assert (recording.storage_path, recording.file_size, recording.duration) == (
        "a.mp4",
        2048,
        61.5,
    )
    assert recording.status is RecordingStatus.complete and recording.rank == 3


def test_a_failed_auto_egress_without_an_id_is_an_event_but_no_recording() -> None:
    changes = _changes(
        '{"event": "egress_ended", "id": "EV_3", "egressInfo": {"roomId": "RM_1",'
        ' "status": "EGRESS_FAILED", "error": "no track"}}'
    )
    assert changes.recording is None
    assert changes.meeting is not None and changes.meeting.room_sid == "RM_1"
    # No room name given: the sid stands in until a room event names it.
    assert (changes.meeting.room_name, changes.meeting.name_known) == ("RM_1", False)


def test_room_started_only_fills_metadata_and_later_room_events_replace_it() -> None:
    room = '"room": {"sid": "RM_1", "name": "standup", "metadata": "{\\"title\\": \\"T\\"}"}'
    started = _changes(f'{{"event": "room_started", "id": "EV_4", {room}}}')
    finished = _changes(f'{{"event": "room_finished", "id": "EV_5", "createdAt": "10", {room}}}')
    assert started.meeting is not None and finished.meeting is not None
    assert started.meeting.metadata_mode is MetadataMode.fill_empty
    assert finished.meeting.metadata_mode is MetadataMode.overwrite
    assert finished.meeting.metadata == {"title": "T"}
    assert finished.meeting.ended_at == datetime(1970, 1, 1, 0, 0, 10, tzinfo=UTC)


def test_a_leave_in_the_same_second_as_the_join_is_not_before_it() -> None:
    changes = _changes(
        '{"event": "participant_left", "id": "EV_6", "createdAt": "1795528802",'
        ' "room": {"sid": "RM_1", "name": "standup"},'
        ' "participant": {"sid": "PA_1", "identity": "alice", "joinedAtMs": "1795528802650"}}'
    )
    participant = changes.participant
    assert participant is not None
    # createdAt has whole seconds: .000 would be before the join at .650.
    assert participant.left_at == participant.joined_at


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ('{"role": "host"}', {"role": "host"}),
        ("plain text", {"metadata": "plain text"}),
        ("[1, 2]", {"metadata": "[1, 2]"}),
    ],
)
def test_livekit_metadata_becomes_a_json_object(raw: str, expected: dict[str, object]) -> None:
    assert app_metadata(raw) == expected


@pytest.mark.parametrize(
    "body",
    [
        '{"event": "room_started", "room": {"sid": "RM_1", "name": "x"}}',
        '{"id": "EV_7", "room": {"sid": "RM_1", "name": "x"}}',
        '{"id": "EV_8", "event": "participant_left", "room": {"sid": "RM_1", "name": "x"}}',
        '{"id": "EV_9", "event": "' + "x" * 65 + '", "room": {"sid": "RM_1"}}',
    ],
)
def test_an_event_that_cannot_be_recorded_is_malformed(body: str) -> None:
    with pytest.raises(MalformedWebhook):
        _changes(body)
