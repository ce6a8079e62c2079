"""
The msgspec decoder reads LiveKit's webhook bodies as ``livekit-protocol``'s
protobuf JSON parser does, for every field the mapping uses.
"""

from __future__ import annotations

import pytest
from google.protobuf.json_format import Parse
from livekit.protocol.webhook import WebhookEvent as ProtoEvent

from conference.errors import MalformedWebhook
from conference.webhooks.event import decode_event
from tests.webhook_sessions import product_sync

SESSION = product_sync()


def _proto_view(event: ProtoEvent) -> dict[str, object]:
    view: dict[str, object] = {"id": event.id, "event": event.event, "at": event.created_at}
    if event.HasField("room"):
        r = event.room
        view["room"] = (r.sid, r.name, r.metadata, r.creation_time, r.creation_time_ms)
    if event.HasField("participant"):
        p = event.participant
        view["participant"] = (
            p.sid, p.identity, p.name, p.metadata, p.joined_at, p.joined_at_ms,
            type(p).Kind.Name(p.kind),
        )  # fmt: skip
    if event.HasField("egress_info"):
        e = event.egress_info
        files = list(e.file_results)
        view["egress"] = (
            e.egress_id, e.room_id, e.room_name, int(e.status), e.started_at, e.ended_at,
            e.updated_at, e.error, e.WhichOneof("request"),
            [(f.filename, f.location, f.size, f.duration) for f in files],
        )  # fmt: skip
    return view


def _struct_view(body: str) -> dict[str, object]:
    event = decode_event(body)
    view: dict[str, object] = {"id": event.id, "event": event.event, "at": event.created_at}
    if event.room is not None:
        r = event.room
        view["room"] = (r.sid, r.name, r.metadata, r.creation_time, r.creation_time_ms)
    if event.participant is not None:
        p = event.participant
        view["participant"] = (
            p.sid, p.identity, p.name, p.metadata, p.joined_at, p.joined_at_ms, p.kind_name,
        )  # fmt: skip
    if event.egress_info is not None:
        e = event.egress_info
        view["egress"] = (
            e.egress_id, e.room_id, e.room_name, e.status_number, e.started_at, e.ended_at,
            e.updated_at, e.error, e.request,
            [(f.filename, f.location, f.size, f.duration) for f in e.file_results],
        )  # fmt: skip
    return view


@pytest.mark.parametrize("recorded", SESSION, ids=[f"{e.event_id}-{e.event}" for e in SESSION])
def test_every_event_of_a_session_decodes_as_protobuf_parses_it(recorded) -> None:  # type: ignore[no-untyped-def]
    assert _struct_view(recorded.body) == _proto_view(Parse(recorded.body, ProtoEvent()))


def test_enums_and_64_bit_integers_are_read_as_names_or_numbers_strings_or_numbers() -> None:
    as_names = decode_event(
        '{"id": "EV_1", "createdAt": "1795528830", "participant": {"kind": "AGENT"},'
        ' "egressInfo": {"status": "EGRESS_COMPLETE", "startedAt": "1795528830000000000"}}'
    )
    as_numbers = decode_event(
        '{"id": "EV_1", "createdAt": 1795528830, "participant": {"kind": 4},'
        ' "egressInfo": {"status": 3, "startedAt": 1795528830000000000}}'
    )
    for event in (as_names, as_numbers):
        assert event.created_at == 1795528830
        assert event.participant is not None and event.participant.kind_name == "AGENT"
        assert event.egress_info is not None and event.egress_info.status_number == 3
        assert event.egress_info.started_at == 1795528830000000000


@pytest.mark.parametrize(
    "body", ["{not json", "[]", '{"id": 5}', '{"createdAt": "soon"}', '{"room": "RM_1"}']
)
def test_a_body_that_is_not_a_webhook_event_is_malformed(body: str) -> None:
    with pytest.raises(MalformedWebhook):
        decode_event(body)
