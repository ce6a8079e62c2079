"""
``POST /webhooks/livekit``: what LiveKit's webhook notifier talks to.

LiveKit retries on connection errors, 429 and 5xx (up to 5 attempts) and
gives up on any other 4xx, so the answers are chosen for it:

========  ==============================================================
200       recorded, or already recorded (a retry), or names no room
400       signed, but not a WebhookEvent we can record: retrying is useless
401       not signed by a configured key, expired, or the body was altered
413       body over ``LIVEKIT_WEBHOOK_MAX_BODY_BYTES``
422       the database rejected the event's values (a CHECK constraint)
503       the database is unreachable, busy or not migrated: retry later
========  ==============================================================

Nothing is written unless the answer is 200.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from conference.errors import (
    BodyTooLarge,
    DatabaseError,
    DatabaseUnavailable,
    IntegrityViolation,
    MalformedWebhook,
    QueryTimeout,
    TransactionConflict,
    Unauthorized,
)
from conference.settings import Settings
from conference.webhooks.mapping import EventChanges, changes_for
from conference.webhooks.store import Outcome, record_event
from conference.webhooks.verification import WebhookVerifier, webhook_keys

logger = logging.getLogger(__name__)

#: Where LiveKit posts its webhooks (``webhook.urls`` in livekit.yaml).
WEBHOOK_PATH = "/webhooks/livekit"

#: SQLSTATEs of a schema that is behind the code: undefined table, column.
_NOT_MIGRATED = frozenset({"42P01", "42703"})


async def read_body(request: Request, limit: int) -> bytes:
    """
    The request body, refusing to read more than ``limit`` bytes (raises
    :class:`BodyTooLarge`), with or without a ``Content-Length``.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
    return bytes(body)


def _answer(status_code: int, status: str, **fields: str) -> JSONResponse:
    return JSONResponse({"status": status, **fields}, status_code=status_code)


class LiveKitWebhookEndpoint:
    """
    The ASGI endpoint: read, verify, map, record, answer.

    :param verifier:
        Checks the signature against the configured API keys.
    :param max_body_bytes:
        Longer bodies are refused with 413 before they are read whole.
    """

    def __init__(self, verifier: WebhookVerifier, max_body_bytes: int) -> None:
        self.verifier = verifier
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        """The answer to one webhook request."""
        client = request.client.host if request.client else "?"
        try:
            body = await read_body(request, self.max_body_bytes)
            event = self.verifier.verify(body, request.headers.get("authorization"))
            changes = changes_for(event, received_at=datetime.now(UTC))
        except BodyTooLarge as error:
            logger.warning("refused a LiveKit webhook from %s: %s", client, error)
            return _answer(413, "too_large", error=str(error))
        except Unauthorized as error:
            logger.warning("refused a LiveKit webhook from %s (401): %s", client, error)
            return _answer(401, "unauthorized")
        except MalformedWebhook as error:
            logger.warning("refused a signed LiveKit webhook from %s (400): %s", client, error)
            return _answer(400, "malformed", error=str(error))
        return await self._record(changes, body.decode("utf-8"))

    async def _record(self, changes: EventChanges, body: str) -> Response:
        what = f"{changes.event_type} {changes.event_id}"
        try:
            result = await record_event(changes, body)
        except (DatabaseUnavailable, QueryTimeout, TransactionConflict) as error:
            logger.warning("could not record %s, LiveKit will retry (503): %s", what, error)
            return _answer(503, "unavailable", error="the database is unavailable; retry")
        except IntegrityViolation as error:
            logger.error("the database rejected %s (422): %s", what, error)
            return _answer(422, "rejected", error=str(error))
        except DatabaseError as error:
            if error.sqlstate not in _NOT_MIGRATED:
                raise
            logger.error("could not record %s: the schema is not migrated (503): %s", what, error)
            return _answer(503, "unavailable", error="the database schema is not migrated")
        if result.outcome is Outcome.ignored:
            logger.info("acknowledged %s without recording it: it names no room", what)
        else:
            logger.debug("%s %s", result.outcome.value, what)
        return _answer(200, result.outcome.value, id=changes.event_id)


def webhook_routes(settings: Settings) -> list[BaseRoute]:
    """
    The routes to add to an app: ``POST /webhooks/livekit``. Raises
    :class:`~conference.errors.ConfigurationError` for malformed keys; with
    no key at all the route exists and refuses everything (401).
    """
    keys = webhook_keys(settings)
    if not keys:
        logger.warning(
            "no LiveKit API key is configured: %s refuses every webhook (401). Set "
            "LIVEKIT_API_KEY and LIVEKIT_API_SECRET (or LIVEKIT_WEBHOOK_KEYS)",
            WEBHOOK_PATH,
        )
    endpoint = LiveKitWebhookEndpoint(
        WebhookVerifier(keys), max_body_bytes=settings.livekit_webhook_max_body_bytes
    )
    return [Route(WEBHOOK_PATH, endpoint, methods=["POST"])]
