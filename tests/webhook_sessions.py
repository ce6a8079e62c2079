"""
Realistic LiveKit webhook streams for the tests, the sample file and the
benchmark: built from ``livekit-protocol`` messages and serialised as
LiveKit does (protobuf JSON: lowerCamel keys, int64 as strings, zero values
left out), signed with ``livekit-api``.

:func:`product_sync` is one room session in the order LiveKit delivers it,
each event tagged with its delivery queue: LiveKit keeps one FIFO queue per
room and one per egress, and the queues are not ordered against each
other.

:func:`read_state` reads what they leave in the database, keyed by LiveKit
ids instead of generated UUIDs. ``python -m tests.webhook_sessions >
docs/sample-webhooks.jsonl`` writes the sample file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf.json_format import MessageToDict
from livekit.api import AccessToken
from livekit.protocol import egress as lk_egress
from livekit.protocol import models as lk_models
from livekit.protocol.webhook import WebhookEvent

from conference.devdata.target import table_names, truncate_sql

#: The first event of :func:`product_sync` happens at this moment.
SESSION_START = datetime(2026, 11, 24, 14, 0, 0, 250_000, tzinfo=UTC)


@dataclass(frozen=True)
class Recorded:
    """One webhook as LiveKit sends it, and the queue it is delivered from."""

    queue: str
    event: str
    event_id: str
    body: str


def sign(body: str, api_key: str, api_secret: str, ttl: timedelta = timedelta(minutes=5)) -> str:
    """The ``Authorization`` header LiveKit sends with ``body``."""
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return AccessToken(api_key, api_secret).with_sha256(digest).with_ttl(ttl).to_jwt()


def to_json(event: WebhookEvent) -> str:
    """Protobuf JSON of ``event``, compact."""
    return json.dumps(MessageToDict(event), separators=(",", ":"))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _ns(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


class _Session:
    """Builds the events of one room session, numbering their ids."""

    def __init__(self, room_sid: str, room_name: str, start: datetime, tag: str) -> None:
        self.room_sid = room_sid
        self.room_name = room_name
        self.start = start
        self.tag = tag
        self.counter = 0
        self.room_metadata = json.dumps({"title": "Product sync", "team": "platform"})
        self.events: list[Recorded] = []

    def at(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    def room(self, participants: int = 0) -> lk_models.Room:
        return lk_models.Room(
            sid=self.room_sid,
            name=self.room_name,
            empty_timeout=300,
            departure_timeout=20,
            creation_time=int(self.start.timestamp()),
            creation_time_ms=_ms(self.start),
            metadata=self.room_metadata,
            num_participants=participants,
        )

    def add(self, queue: str, seconds: float, **fields: Any) -> None:
        self.counter += 1
        event = WebhookEvent(
            id=f"EV_{self.tag}{self.counter:03d}",
            created_at=int(self.at(seconds).timestamp()),
            **fields,
        )
        self.events.append(Recorded(queue, event.event, event.id, to_json(event)))


def _participant(
    sid: str,
    identity: str,
    name: str,
    joined: datetime,
    state: int = lk_models.ParticipantInfo.State.ACTIVE,
    metadata: dict[str, Any] | None = None,
    disconnect_reason: int = 0,
) -> lk_models.ParticipantInfo:
    return lk_models.ParticipantInfo(
        sid=sid,
        identity=identity,
        name=name,
        state=state,  # type: ignore[arg-type]
        metadata=json.dumps(metadata) if metadata else "",
        joined_at=int(joined.timestamp()),
        joined_at_ms=_ms(joined),
        is_publisher=True,
        disconnect_reason=disconnect_reason,  # type: ignore[arg-type]
    )


def _track(sid: str, kind: str) -> lk_models.TrackInfo:
    if kind == "audio":
        return lk_models.TrackInfo(
            sid=sid,
            type=lk_models.TrackType.AUDIO,
            source=lk_models.TrackSource.MICROPHONE,
            mime_type="audio/red",
            stereo=False,
        )
    return lk_models.TrackInfo(
        sid=sid,
        type=lk_models.TrackType.VIDEO,
        source=lk_models.TrackSource.CAMERA,
        mime_type="video/VP8",
        width=1280,
        height=720,
        simulcast=True,
    )


def product_sync(start: datetime = SESSION_START, tag: str = "") -> list[Recorded]:
    """
    One room session in delivery order: the room starts; Alice, Bob and
    Carol join and publish; Bob's connection drops and he rejoins with a
    new sid before his old session's ``participant_left``; Dave's join
    never completes (``participant_connection_aborted``, no join); a room
    composite egress starts, updates three times and completes; a failed
    auto-egress ends without an egress id; everyone leaves; the room
    finishes.

    :param tag:
        Put into every id (event, room, participant, track, egress), so
        several sessions can live in one database.
    """
    s = _Session(f"RM_{tag}pS7vKq2Lx9", f"product-sync{'-' + tag if tag else ''}", start, tag)
    room_q = f"room:{s.room_sid}"
    egress_id = f"EG_{tag}Hd82KfQw1z"
    egress_q = f"egress:{egress_id}"
    auto_q = f"egress:{s.room_sid}:auto"
    joined = {
        "alice": s.at(2.4),
        "bob": s.at(5.1),
        "carol": s.at(9.75),
        "bob2": s.at(190.6),
        "dave": s.at(240.0),
    }
    people = {
        "alice": ("PA_{t}aL1c3", "alice", "Alice Martin", {"role": "host"}),
        "bob": ("PA_{t}b0B1", "bob", "Bob Okafor", {"role": "member"}),
        "carol": ("PA_{t}cAr0l", "carol", "Carol Nguyen", None),
        "bob2": ("PA_{t}b0B2", "bob", "Bob Okafor", {"role": "member"}),
        "dave": ("PA_{t}dAv3", "dave", "Dave Smith", None),
    }

    def who(
        key: str,
        state: int = lk_models.ParticipantInfo.State.ACTIVE,
        reason: int = 0,
    ) -> lk_models.ParticipantInfo:
        sid, identity, name, metadata = people[key]
        return _participant(sid.format(t=tag), identity, name, joined[key], state, metadata, reason)

    def track(key: str) -> str:
        return f"TR_{tag}{key}"

    s.add(room_q, 0, event="room_started", room=s.room())
    s.add(room_q, 2.4, event="participant_joined", room=s.room(1), participant=who("alice"))
    s.add(
        room_q,
        3.0,
        event="track_published",
        room=s.room(1),
        participant=who("alice"),
        track=_track(track("alice_mic"), "audio"),
    )
    s.add(
        room_q,
        3.2,
        event="track_published",
        room=s.room(1),
        participant=who("alice"),
        track=_track(track("alice_cam"), "video"),
    )
    s.add(room_q, 5.1, event="participant_joined", room=s.room(2), participant=who("bob"))
    s.add(
        room_q,
        6.0,
        event="track_published",
        room=s.room(2),
        participant=who("bob"),
        track=_track(track("bob_mic"), "audio"),
    )
    s.add(room_q, 9.75, event="participant_joined", room=s.room(3), participant=who("carol"))

    # The egress queue, delivered independently of the room's.
    recording_started = s.at(31.5)

    def egress(status: int, updated: float, **fields: Any) -> lk_egress.EgressInfo:
        return lk_egress.EgressInfo(
            egress_id=egress_id,
            room_id=s.room_sid,
            room_name=s.room_name,
            source_type=lk_egress.EgressSourceType.EGRESS_SOURCE_TYPE_WEB,
            status=status,  # type: ignore[arg-type]
            updated_at=_ns(s.at(updated)),
            room_composite=lk_egress.RoomCompositeEgressRequest(
                room_name=s.room_name, layout="speaker"
            ),
            **fields,
        )

    s.add(egress_q, 30.0, event="egress_started", egress_info=egress(0, 30.0))
    s.add(
        egress_q,
        31.5,
        event="egress_updated",
        egress_info=egress(1, 31.5, started_at=_ns(recording_started)),
    )
    s.add(
        egress_q,
        95.0,
        event="egress_updated",
        egress_info=egress(1, 95.0, started_at=_ns(recording_started)),
    )
    # The room's metadata changes while it runs: later room events carry it.
    s.room_metadata = json.dumps({"title": "Product sync", "team": "platform", "recorded": True})
    s.add(
        room_q,
        120.0,
        event="track_unpublished",
        room=s.room(3),
        participant=who("alice"),
        track=_track(track("alice_cam"), "video"),
    )
    s.add(room_q, 190.6, event="participant_joined", room=s.room(4), participant=who("bob2"))
    s.add(
        room_q,
        191.0,
        event="participant_left",
        room=s.room(3),
        participant=who(
            "bob",
            lk_models.ParticipantInfo.State.DISCONNECTED,
            lk_models.DisconnectReason.DUPLICATE_IDENTITY,
        ),
    )
    s.add(
        room_q,
        191.4,
        event="track_published",
        room=s.room(3),
        participant=who("bob2"),
        track=_track(track("bob2_mic"), "audio"),
    )
    s.add(
        room_q,
        250.0,
        event="participant_connection_aborted",
        room=s.room(3),
        participant=who(
            "dave",
            lk_models.ParticipantInfo.State.JOINING,
            lk_models.DisconnectReason.JOIN_FAILURE,
        ),
    )
    s.add(
        auto_q,
        260.0,
        event="egress_ended",
        egress_info=lk_egress.EgressInfo(
            room_id=s.room_sid,
            room_name=s.room_name,
            status=lk_egress.EgressStatus.EGRESS_FAILED,
            error="track egress could not start: no track to record",
            updated_at=_ns(s.at(260.0)),
        ),
    )
    s.add(
        room_q,
        1500.2,
        event="participant_left",
        room=s.room(2),
        participant=who(
            "carol",
            lk_models.ParticipantInfo.State.DISCONNECTED,
            lk_models.DisconnectReason.CLIENT_INITIATED,
        ),
    )
    s.add(
        egress_q,
        1780.0,
        event="egress_updated",
        egress_info=egress(2, 1780.0, started_at=_ns(recording_started)),
    )
    recording_ended = s.at(1781.25)
    s.add(
        egress_q,
        1782.0,
        event="egress_ended",
        egress_info=egress(
            3,
            1782.0,
            started_at=_ns(recording_started),
            ended_at=_ns(recording_ended),
            file_results=[
                lk_egress.FileInfo(
                    filename=f"product-sync/{egress_id}.mp4",
                    location=f"s3://livekit-recordings/product-sync/{egress_id}.mp4",
                    size=459_012_345,
                    duration=_ns(recording_ended) - _ns(recording_started),
                    started_at=_ns(recording_started),
                    ended_at=_ns(recording_ended),
                )
            ],
        ),
    )
    s.add(
        room_q,
        1790.0,
        event="participant_left",
        room=s.room(1),
        participant=who(
            "bob2",
            lk_models.ParticipantInfo.State.DISCONNECTED,
            lk_models.DisconnectReason.CLIENT_INITIATED,
        ),
    )
    s.add(
        room_q,
        1795.5,
        event="participant_left",
        room=s.room(0),
        participant=who(
            "alice",
            lk_models.ParticipantInfo.State.DISCONNECTED,
            lk_models.DisconnectReason.CLIENT_INITIATED,
        ),
    )
    s.add(
        room_q,
        1815.5,
        event="room_finished",
        room=s.room(0),
        room_end_reason=lk_models.RoomEndReason.ROOM_END_IDLE_TIMEOUT,
    )
    return s.events


def queues(events: list[Recorded]) -> dict[str, list[Recorded]]:
    """The events by delivery queue, each in its order."""
    by_queue: dict[str, list[Recorded]] = {}
    for event in events:
        by_queue.setdefault(event.queue, []).append(event)
    return by_queue


# --- The app's keys in the tests, and the rows they leave ---------------------

API_KEY = "APIwebhooktests"
API_SECRET = "webhook-test-secret-0123456789abcdefghijklmnop"
OLD_KEY = "APIrotatedout"
OLD_SECRET = "old-webhook-secret-0123456789abcdefghijklmnopq"
MAX_BODY_BYTES = 65_536
WEBHOOK_ENV = {
    "LIVEKIT_API_KEY": API_KEY,
    "LIVEKIT_API_SECRET": API_SECRET,
    "LIVEKIT_WEBHOOK_KEYS": f"{OLD_KEY}:{OLD_SECRET}",
    "LIVEKIT_WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
}


# --- The database, read without UUIDs ---------------------------------------

#: Empties the conference tables (and, through CASCADE, rows of other
#: tables that reference them, such as the reports' rollups).
EMPTY_TABLES = truncate_sql() + " CASCADE"

STATE_QUERIES = {
    "meetings": """
        SELECT room_sid, room_name, created_at, ended_at, metadata
        FROM meetings ORDER BY room_sid""",
    "participants": """
        SELECT m.room_sid, p.participant_sid, p.identity, p.joined_at, p.left_at, p.metadata
        FROM participants p JOIN meetings m ON m.id = p.meeting_id
        ORDER BY p.participant_sid""",
    "recordings": """
        SELECT m.room_sid, r.egress_id, r.status, r.started_at, r.completed_at,
               r.storage_path, r.file_size, r.duration, r.metadata
        FROM recordings r JOIN meetings m ON m.id = r.meeting_id
        ORDER BY r.egress_id""",
    "analytics": """
        SELECT a.webhook_event_id, m.room_sid, p.participant_sid, a.event_type,
               a.created_at, a.event_data
        FROM analytics a JOIN meetings m ON m.id = a.meeting_id
        LEFT JOIN participants p ON p.id = a.participant_id
        ORDER BY a.webhook_event_id""",
}

State = dict[str, list[tuple[Any, ...]]]


async def fetch_state(database_url: str) -> State:
    """:func:`read_state` for async code."""
    connection = await asyncpg.connect(database_url)
    try:
        return {
            table: [tuple(row) for row in await connection.fetch(sql)]
            for table, sql in STATE_QUERIES.items()
        }
    finally:
        await connection.close()


async def _empty_tables(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(EMPTY_TABLES)
    finally:
        await connection.close()


def read_state(database_url: str) -> State:
    """Every conference row, keyed by LiveKit ids instead of UUIDs."""
    return asyncio.run(fetch_state(database_url))


def empty_tables(database_url: str) -> None:
    asyncio.run(_empty_tables(database_url))


def row_counts(state: State) -> dict[str, int]:
    return {table: len(rows) for table, rows in state.items()}


NO_ROWS = dict.fromkeys(table_names(), 0)


if __name__ == "__main__":
    for recorded in product_sync():
        print(recorded.body)
