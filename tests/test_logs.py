"""
Log lines: text by default, one JSON object per line with LOG_FORMAT=json,
and one line per request with its id, route, status and duration (and a
webhook's event id and outcome).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conference.logs import (
    REQUEST_LOGGER,
    JsonFormatter,
    RequestIdFilter,
    RequestLogMiddleware,
    current_request_id,
    note_webhook,
)
from tests.support import LiveServer


@pytest.fixture
def json_server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(database_url, env={"LOG_FORMAT": "json"}, state_dir=tmp_path)
    live.wait_until_serving()
    yield live
    live.close()


def test_json_logs_are_one_object_per_line_with_the_request_facts(
    json_server: LiveServer,
) -> None:
    response = httpx.get(
        f"{json_server.base_url}/readyz", headers={"X-Request-ID": "deploy-check-42"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "deploy-check-42"
    json_server.terminate()

    lines = [json.loads(line) for line in json_server.output().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    (request,) = [line for line in lines if line.get("request_id") == "deploy-check-42"]
    assert request["logger"] == REQUEST_LOGGER
    assert request["method"] == "GET"
    assert request["route"] == "/readyz"
    assert request["status"] == 200
    assert isinstance(request["duration_ms"], float)
    # uvicorn's own lines are JSON too, and its access log is replaced by ours.
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert not any("color_message" in line for line in lines)  # no terminal colours


def test_text_logs_are_the_default(database_url: str, tmp_path: Path) -> None:
    live = LiveServer(database_url, state_dir=tmp_path)
    try:
        live.wait_until_serving()
        response = httpx.get(f"{live.base_url}/healthz")
        live.terminate()
        output = live.output()
    finally:
        live.close()

    request_id = response.headers["x-request-id"]
    assert "INFO conference.requests: GET /healthz 200 " in output
    assert f"[request {request_id}]" in output
    assert not output.lstrip().startswith("{")


async def test_a_webhook_line_carries_its_event_id_and_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def webhook(request: Request) -> JSONResponse:
        logging.getLogger("conference.test").info("inside, as request %s", current_request_id())
        note_webhook(request, outcome="recorded", event_type="room_started", event_id="EV_test_1")
        return JSONResponse({"status": "recorded"})

    app = Starlette(
        routes=[Route("/hooks/{name}", webhook, methods=["POST"])],
        middleware=[Middleware(RequestLogMiddleware)],
    )
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/hooks/livekit", headers={"X-Request-ID": "bad id!"})

    request_id = response.headers["x-request-id"]
    assert request_id != "bad id!"  # not a sane id: replaced
    inside = next(r for r in caplog.records if r.name == "conference.test")
    assert inside.getMessage() == f"inside, as request {request_id}"
    line = next(r for r in caplog.records if r.name == REQUEST_LOGGER)
    assert line.getMessage().startswith("POST /hooks/{name} 200 ")
    assert line.getMessage().endswith(" room_started EV_test_1 recorded")
    as_json = json.loads(JsonFormatter().format(line))
    assert as_json["route"] == "/hooks/{name}"
    assert as_json["webhook_event_id"] == "EV_test_1"
    assert as_json["webhook_event_type"] == "room_started"
    assert as_json["webhook_outcome"] == "recorded"


def test_json_lines_carry_extra_fields_the_request_id_and_the_traceback() -> None:
    record = logging.LogRecord(
        "conference.x", logging.ERROR, __file__, 1, "failed %s", ("x",), None
    )
    record.meeting_id = "m-1"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RequestIdFilter().filter(record)

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "failed x"
    assert line["level"] == "ERROR"
    assert line["meeting_id"] == "m-1"
    assert line["time"].endswith("Z")
    assert "request_id" not in line  # outside a request
    assert "ValueError: boom" in line["exception"]
