"""
``POST /webhooks/livekit`` over real HTTP: uvicorn started by the test,
events signed with ``livekit-api`` as LiveKit signs them, a real
PostgreSQL 18 behind it. The rows are compared without their generated
UUIDs (meetings by room sid, participants by participant sid).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import LiveServer
from tests.webhook_sessions import (
    API_KEY,
    API_SECRET,
    MAX_BODY_BYTES,
    NO_ROWS,
    OLD_KEY,
    OLD_SECRET,
    SESSION_START,
    WEBHOOK_ENV,
    Recorded,
    State,
    empty_tables,
    product_sync,
    queues,
    read_state,
    row_counts,
    sign,
)

SESSION = product_sync()
ROOM_SID = "RM_pS7vKq2Lx9"
ROOM_QUEUE = f"room:{ROOM_SID}"

# --- Posting ------------------------------------------------------------------


def post(
    client: httpx.Client,
    body: str | bytes,
    authorization: str | None = None,
    key: str = API_KEY,
    secret: str = API_SECRET,
) -> httpx.Response:
    """POST ``body`` as LiveKit does; signed with ``key`` unless given."""
    if authorization is None:
        text = body.decode() if isinstance(body, bytes) else body
        authorization = sign(text, key, secret)
    headers = {"Content-Type": "application/webhook+json", "Authorization": authorization}
    return client.post("/webhooks/livekit", content=body, headers=headers)


def deliver(client: httpx.Client, events: list[Recorded], times: int = 1) -> None:
    """Post each event ``times`` times in a row (LiveKit retrying), expecting 200s."""
    for event in events:
        for attempt in range(times):
            response = post(client, event.body)
            assert response.status_code == 200, (event.event, response.text)
            expected = "recorded" if attempt == 0 else "duplicate"
            assert response.json()["status"] in (expected, "duplicate"), response.text


# --- Fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(database_url, env=WEBHOOK_ENV, state_dir=tmp_path_factory.mktemp("webhooks"))
    live.wait_until_serving()
    yield live
    live.close()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


@pytest.fixture
def tables(database_url: str) -> Iterator[str]:
    """The session database with empty conference tables, emptied again after."""
    empty_tables(database_url)
    yield database_url
    empty_tables(database_url)


@pytest.fixture(scope="module")
def in_order_state(client: httpx.Client, database_url: str) -> State:
    """The rows of :data:`SESSION` delivered once, in LiveKit's order."""
    empty_tables(database_url)
    deliver(client, SESSION)
    state = read_state(database_url)
    empty_tables(database_url)
    return state


def _at(seconds: float) -> datetime:
    return SESSION_START + timedelta(seconds=seconds)


def _floor(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


# --- A realistic session ----------------------------------------------------------


def test_a_realistic_session_fills_every_table(client: httpx.Client, tables: str) -> None:
    deliver(client, SESSION)
    state = read_state(tables)

    assert state["meetings"] == [
        (
            ROOM_SID,
            "product-sync",
            SESSION_START,
            _floor(_at(1815.5)),  # room_finished's createdAt, in whole seconds
            '{"team": "platform", "title": "Product sync", "recorded": true}',
        )
    ]

    participants = {row[1]: row for row in state["participants"]}
    assert set(participants) == {"PA_aL1c3", "PA_b0B1", "PA_b0B2", "PA_cAr0l", "PA_dAv3"}
    assert all(row[0] == ROOM_SID for row in participants.values())
    # Bob's reconnect is a second session of the same identity; the first
    # one's participant_left arrived after the rejoin and closed only it.
    bob_first, bob_again = participants["PA_b0B1"], participants["PA_b0B2"]
    assert bob_first[2] == bob_again[2] == "bob"
    assert (bob_first[3], bob_first[4]) == (_at(5.1), _floor(_at(191.0)))
    assert (bob_again[3], bob_again[4]) == (_at(190.6), _floor(_at(1790.0)))
    assert json.loads(bob_first[5])["disconnect_reason"] == "DUPLICATE_IDENTITY"
    alice = participants["PA_aL1c3"]
    assert (alice[3], alice[4]) == (_at(2.4), _floor(_at(1795.5)))
    assert json.loads(alice[5]) == {
        "name": "Alice Martin",
        "role": "host",
        "disconnect_reason": "CLIENT_INITIATED",
    }
    # Dave never became active: connection aborted, no join event.
    dave = participants["PA_dAv3"]
    assert (dave[3], dave[4]) == (_at(240.0), _floor(_at(250.0)))
    assert json.loads(dave[5])["disconnect_reason"] == "JOIN_FAILURE"

    assert state["recordings"] == [
        (
            ROOM_SID,
            "EG_Hd82KfQw1z",
            "complete",
            _at(31.5),
            _at(1781.25),
            "s3://livekit-recordings/product-sync/EG_Hd82KfQw1z.mp4",
            459_012_345,
            1749.75,
            '{"layout": "speaker", "request": "room_composite"}',
        )
    ]

    analytics = state["analytics"]
    assert [row[0] for row in analytics] == sorted(event.event_id for event in SESSION)
    by_id = {row[0]: row for row in analytics}
    for event in SESSION:
        row = by_id[event.event_id]
        assert row[1] == ROOM_SID
        assert row[3] == event.event
        assert json.loads(row[5]) == json.loads(event.body)  # the event JSON as sent
        about_participant = event.event.startswith(("participant_", "track_"))
        assert (row[2] is not None) == about_participant, event.event
    # The failed auto-egress had no egress id: an analytics event, no recording.
    failed = [row for row in analytics if '"EGRESS_FAILED"' in row[5]]
    assert len(failed) == 1 and failed[0][3] == "egress_ended"


def test_every_event_delivered_five_times_gives_the_same_rows(
    client: httpx.Client, tables: str, in_order_state: State
) -> None:
    deliver(client, SESSION, times=5)
    assert read_state(tables) == in_order_state
    # Late duplicates too: the whole stream again, long after.
    for event in SESSION:
        assert post(client, event.body).json()["status"] == "duplicate"
    assert read_state(tables) == in_order_state


@st.composite
def livekit_orders(draw: st.DrawFn) -> list[Recorded]:
    """
    An order LiveKit can deliver :data:`SESSION` in: the room queue and each
    egress queue in their own order, interleaved any way; ``room_started``
    anywhere in its room's queue (it can even come after ``room_finished``);
    some events delivered again later (retries).
    """
    by_queue = queues(SESSION)
    room = list(by_queue[ROOM_QUEUE])
    started = room.pop(0)
    room.insert(draw(st.integers(0, len(room))), started)
    by_queue[ROOM_QUEUE] = room

    labels = [name for name, events in by_queue.items() for _ in events]
    cursors = {name: iter(events) for name, events in by_queue.items()}
    stream = [next(cursors[label]) for label in draw(st.permutations(labels))]

    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(stream) - 1))
        stream.insert(draw(st.integers(index + 1, len(stream))), stream[index])
    return stream


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(order=livekit_orders())
def test_any_order_livekit_can_deliver_ends_in_the_in_order_state(
    client: httpx.Client, database_url: str, in_order_state: State, order: list[Recorded]
) -> None:
    empty_tables(database_url)
    try:
        for event in order:
            response = post(client, event.body)
            assert response.status_code == 200, response.text
        assert read_state(database_url) == in_order_state
    finally:
        empty_tables(database_url)


async def _deliver_queues_at_once(base_url: str, rounds: int) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:

        async def deliver_queue(events: list[Recorded]) -> None:
            for event in events:
                response = await http.post(
                    "/webhooks/livekit",
                    content=event.body,
                    headers={"Authorization": sign(event.body, API_KEY, API_SECRET)},
                )
                assert response.status_code == 200, response.text

        for _ in range(rounds):  # later rounds: every event again, all duplicates
            await asyncio.gather(*(deliver_queue(q) for q in queues(SESSION).values()))


def test_the_room_and_egress_queues_delivered_at_the_same_time_end_as_in_order(
    server: LiveServer, tables: str, in_order_state: State
) -> None:
    # LiveKit's notifier works its queues in parallel: concurrent upserts of
    # one meeting must neither deadlock nor fail, and end the same.
    asyncio.run(_deliver_queues_at_once(server.base_url, rounds=2))
    assert read_state(tables) == in_order_state


def test_egress_status_only_moves_forward_even_against_livekit_order(
    client: httpx.Client, tables: str, in_order_state: State
) -> None:
    # Beyond what LiveKit's per-egress queue allows (two notifiers, a
    # replayed log): the egress events backwards still end as in order.
    egress = [event for event in SESSION if event.queue.startswith("egress:EG_")]
    deliver(client, [event for event in SESSION if event not in egress])
    deliver(client, egress[::-1])
    assert read_state(tables)["recordings"] == in_order_state["recordings"]


# --- Unknown rooms, rooms we cannot know ----------------------------------------


def test_an_event_of_an_unknown_room_creates_the_meeting(client: httpx.Client, tables: str) -> None:
    joined = next(event for event in SESSION if event.event == "participant_joined")
    assert post(client, joined.body).json()["status"] == "recorded"

    state = read_state(tables)
    assert [row[:4] for row in state["meetings"]] == [
        (ROOM_SID, "product-sync", SESSION_START, None)
    ]
    assert [row[1:5] for row in state["participants"]] == [("PA_aL1c3", "alice", _at(2.4), None)]
    assert [row[:4] for row in state["analytics"]] == [
        (joined.event_id, ROOM_SID, "PA_aL1c3", "participant_joined")
    ]


def test_an_egress_event_first_creates_the_meeting_and_the_room_events_complete_it(
    client: httpx.Client, tables: str
) -> None:
    egress_first = [event for event in SESSION if event.queue.startswith("egress:EG_")]
    deliver(client, egress_first)
    meetings = read_state(tables)["meetings"]
    assert [(row[0], row[1], row[3], row[4]) for row in meetings] == [
        (ROOM_SID, "product-sync", None, "{}")
    ]
    # Known from the egress alone: no later than the egress started.
    assert meetings[0][2] <= _at(31.5)

    deliver(client, [event for event in SESSION if event.queue == ROOM_QUEUE])
    meeting = read_state(tables)["meetings"][0]
    assert meeting[2] == SESSION_START
    assert json.loads(meeting[4])["title"] == "Product sync"


def test_an_event_that_names_no_room_is_acknowledged_and_not_stored(
    client: httpx.Client, tables: str
) -> None:
    web_egress = json.dumps(
        {
            "event": "egress_started",
            "id": "EV_web_egress_1",
            "createdAt": "1795528800",
            "egressInfo": {"egressId": "EG_web1", "web": {"url": "https://example.com"}},
        }
    )
    response = post(client, web_egress)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert row_counts(read_state(tables)) == NO_ROWS


def test_a_rotated_key_still_listed_in_livekit_webhook_keys_is_accepted(
    client: httpx.Client, tables: str
) -> None:
    response = post(client, SESSION[0].body, key=OLD_KEY, secret=OLD_SECRET)
    assert response.status_code == 200, response.text
    assert row_counts(read_state(tables))["meetings"] == 1


# --- Refusals: nothing is written -------------------------------------------------


def _hash(body: str) -> str:
    return base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()


def _token(claims: dict[str, Any], secret: str = API_SECRET, algorithm: str = "HS256") -> str:
    now = datetime.now(UTC)
    base = {"iss": API_KEY, "nbf": int(now.timestamp()), "exp": int(now.timestamp()) + 300}
    return jwt.encode({**base, **claims}, secret if algorithm != "none" else None, algorithm)


BODY = SESSION[0].body
OTHER_BODY = SESSION[1].body

UNAUTHORIZED = {
    "missing": None,
    "empty": "",
    "not a JWT": "definitely-not-a-jwt",
    "forged: wrong secret": sign(BODY, API_KEY, "a-guessed-secret-that-is-long-enough-000"),
    "unknown key": sign(BODY, "APIstranger", API_SECRET),
    "expired": sign(BODY, API_KEY, API_SECRET, ttl=timedelta(minutes=-10)),
    "tampered: signed for another body": sign(OTHER_BODY, API_KEY, API_SECRET),
    "no sha256 claim": _token({}),
    "sha256 not base64": _token({"sha256": "***"}),
    "no expiry": jwt.encode({"iss": API_KEY, "sha256": _hash(BODY)}, API_SECRET, "HS256"),
    "alg none": _token({"sha256": _hash(BODY)}, algorithm="none"),
    "no issuer": jwt.encode(
        {"sha256": _hash(BODY), "exp": int(datetime.now(UTC).timestamp()) + 300},
        API_SECRET,
        "HS256",
    ),
}


@pytest.mark.parametrize("case", list(UNAUTHORIZED))
def test_a_request_not_signed_by_a_configured_key_is_refused_with_401(
    client: httpx.Client, tables: str, case: str
) -> None:
    authorization = UNAUTHORIZED[case]
    headers = {"Content-Type": "application/webhook+json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = client.post("/webhooks/livekit", content=BODY, headers=headers)
    assert response.status_code == 401, (case, response.text)
    assert response.json() == {"status": "unauthorized"}
    assert row_counts(read_state(tables)) == NO_ROWS


def test_a_body_changed_after_signing_is_refused_even_by_one_byte(
    client: httpx.Client, tables: str
) -> None:
    authorization = sign(BODY, API_KEY, API_SECRET)
    reformatted = json.dumps(json.loads(BODY))  # same JSON, other bytes
    for body in (BODY.replace("product-sync", "product-sunk"), reformatted, BODY + " "):
        response = post(client, body, authorization=authorization)
        assert response.status_code == 401, body
    assert row_counts(read_state(tables)) == NO_ROWS


MALFORMED = {
    "not JSON": "{this is not json",
    "a JSON array": "[]",
    "a field of the wrong type": '{"event": "room_started", "id": "EV_1", "createdAt": "soon"}',
    "an id longer than the column": json.dumps(
        {"event": "room_started", "id": "EV_" + "x" * 300, "room": {"sid": "RM_x", "name": "x"}}
    ),
    "no event": '{"id": "EV_2", "room": {"sid": "RM_x", "name": "x"}}',
    "a participant without a sid": json.dumps(
        {
            "event": "participant_joined",
            "id": "EV_3",
            "room": {"sid": "RM_x", "name": "x"},
            "participant": {"identity": "alice"},
        }
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_signed_but_malformed_body_is_refused_with_400(
    client: httpx.Client, tables: str, case: str
) -> None:
    response = post(client, MALFORMED[case])
    assert response.status_code == 400, (case, response.text)
    assert response.json()["status"] == "malformed"
    assert row_counts(read_state(tables)) == NO_ROWS


def test_an_event_without_id_delivered_twice_is_stored_once_at_its_arrival_time(
    client: httpx.Client, tables: str
) -> None:
    # LiveKit's server SDK sample body: no id, no createdAt.
    body = '{"event": "room_started", "room": {"sid": "RM_noid", "name": "sample"}}'
    before = datetime.now(UTC)
    first, retry = post(client, body), post(client, body)
    after = datetime.now(UTC)
    assert first.status_code == retry.status_code == 200, (first.text, retry.text)
    key = "sha256:" + hashlib.sha256(body.encode()).hexdigest()
    assert (first.json(), retry.json()) == (
        {"status": "recorded", "id": key},
        {"status": "duplicate", "id": key},
    )
    state = read_state(tables)
    assert row_counts(state) == {**NO_ROWS, "meetings": 1, "analytics": 1}
    (event,) = state["analytics"]
    assert event[0] == key and before <= event[4] <= after
    # Another body (here one more space) is another event.
    assert post(client, body.replace(", ", ",  ", 1)).json()["status"] == "recorded"


def test_a_body_that_is_not_utf8_is_refused_with_400(client: httpx.Client, tables: str) -> None:
    body = b'{"event": "room_started", "id": "EV_\xff"}'
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    response = post(client, body, authorization=_token({"sha256": digest}))
    assert response.status_code == 400
    assert row_counts(read_state(tables)) == NO_ROWS


def test_a_body_over_the_limit_is_refused_with_413_with_or_without_content_length(
    client: httpx.Client, tables: str
) -> None:
    event = json.loads(SESSION[0].body)
    event["room"]["metadata"] = "x" * MAX_BODY_BYTES
    body = json.dumps(event)
    assert post(client, body).status_code == 413

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096].encode()

    streamed = client.post(
        "/webhooks/livekit",
        content=chunks(),  # chunked transfer encoding: no Content-Length
        headers={"Authorization": sign(body, API_KEY, API_SECRET)},
    )
    assert streamed.status_code == 413
    assert row_counts(read_state(tables)) == NO_ROWS


def test_with_no_key_configured_every_webhook_is_refused_and_the_log_says_why(
    database_url: str, tmp_path: Path
) -> None:
    no_keys = {"LIVEKIT_API_KEY": "", "LIVEKIT_API_SECRET": "", "LIVEKIT_WEBHOOK_KEYS": ""}
    live = LiveServer(database_url, env=no_keys, state_dir=tmp_path)  # whatever .env says
    try:
        live.wait_until_serving()
        with httpx.Client(base_url=live.base_url, timeout=30) as http:
            for key, secret in ((API_KEY, API_SECRET), ("", "")):
                headers = {"Authorization": sign(BODY, key, secret)} if key else {}
                response = http.post("/webhooks/livekit", content=BODY, headers=headers)
                assert response.status_code == 401
        assert "no LiveKit API key is configured" in live.output()
        assert row_counts(read_state(database_url)) == NO_ROWS
    finally:
        live.close()


def test_while_the_database_is_down_webhooks_get_503_and_the_retry_is_recorded(
    stoppable_server: Any, stoppable_database_url: str, tmp_path: Path
) -> None:
    # The app migrates the empty database on startup (development).
    live = LiveServer(stoppable_database_url, env=WEBHOOK_ENV, state_dir=tmp_path)
    try:
        live.wait_until_serving(timeout=120)
        with httpx.Client(base_url=live.base_url, timeout=60) as http:
            assert post(http, SESSION[0].body).status_code == 200

            stoppable_server.stop()
            down = post(http, SESSION[1].body)
            assert down.status_code == 503, down.text
            assert down.json()["status"] == "unavailable"

            stoppable_server.start()
            retried = post(http, SESSION[1].body)  # LiveKit's next attempt
            assert retried.status_code == 200, retried.text
            assert retried.json()["status"] == "recorded"
        assert row_counts(read_state(stoppable_database_url))["analytics"] == 2
    finally:
        live.close()
