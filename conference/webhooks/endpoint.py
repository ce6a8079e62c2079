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
503       the database is unreachable, busy, not migrated, or the commit of
          the event's batch failed: retry later (with ``Retry-After``)
========  ==============================================================

A database fault is never a 500. Events are written with others that
arrive at the same time, in one transaction (group commit,
:mod:`conference.webhooks.batching`); each answer is sent only after that
transaction committed. Nothing is written unless the answer is 200.
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
    MalformedWebhook,
    QueryTimeout,
    TransactionConflict,
    Unauthorized,
)
from conference.logs import note_webhook
from conference.settings import Settings
from conference.webhooks.batching import GroupCommit
from conference.webhooks.mapping import EventChanges, changes_for
from conference.webhooks.store import Outcome
from conference.webhooks.verification import WebhookVerifier, webhook_keys

logger = logging.getLogger(__name__)

#: Where LiveKit posts its webhooks (``webhook.urls`` in livekit.yaml).
WEBHOOK_PATH = "/webhooks/livekit"

#: SQLSTATEs of a schema that is behind the code: undefined table, column.
_NOT_MIGRATED = frozenset({"42P01", "42703"})

#: Seconds LiveKit is asked to wait before retrying a 503.
RETRY_AFTER_SECONDS = 1


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


def _answer(status_code: int, status: str, **fields: str) -> tuple[str, Response]:
    return status, JSONResponse({"status": status, **fields}, status_code=status_code)


def _unavailable(error: str) -> tuple[str, Response]:
    response = JSONResponse(
        {"status": "unavailable", "error": error},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
    return "unavailable", response


class LiveKitWebhookEndpoint:
    """
    The ASGI endpoint: read, verify, map, record, answer.

    :param verifier:
        Checks the signature against the configured API keys.
    :param max_body_bytes:
        Longer bodies are refused with 413 before they are read whole.
    :param batches:
        Writes the events, several in one transaction.
    """

    def __init__(
        self, verifier: WebhookVerifier, max_body_bytes: int, batches: GroupCommit
    ) -> None:
        self.verifier = verifier
        self.max_body_bytes = max_body_bytes
        self.batches = batches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        """The answer to one webhook request (noted for logs and metrics)."""
        client = request.client.host if request.client else "?"
        changes: EventChanges | None = None
        signature_failure: str | None = None
        try:
            body = await read_body(request, self.max_body_bytes)
            event = self.verifier.verify(body, request.headers.get("authorization"))
            changes = changes_for(event, received_at=datetime.now(UTC), body=body)
        except BodyTooLarge as error:
            logger.warning("refused a LiveKit webhook from %s: %s", client, error)
            status, response = _answer(413, "too_large", error=str(error))
        except Unauthorized as error:
            logger.warning("refused a LiveKit webhook from %s (401): %s", client, error)
            signature_failure = error.reason
            status, response = _answer(401, "unauthorized")
        except MalformedWebhook as error:
            logger.warning("refused a signed LiveKit webhook from %s (400): %s", client, error)
            status, response = _answer(400, "malformed", error=str(error))
        else:
            status, response = await self._record(changes, body.decode("utf-8"))
        note_webhook(
            request,
            outcome=status,
            event_type=changes.event_type if changes else None,
            event_id=changes.event_id if changes else None,
            signature_failure=signature_failure,
        )
        return response

    async def _record(self, changes: EventChanges, body: str) -> tuple[str, Response]:
        what = f"{changes.event_type} {changes.event_id}"
        try:
            result = await self.batches.record(changes, body)
        except (DatabaseUnavailable, QueryTimeout, TransactionConflict) as error:
            logger.warning("could not record %s, LiveKit will retry (503): %s", what, error)
            return _unavailable("the database is unavailable or busy; retry")
        except DatabaseError as error:
            if error.sqlstate in _NOT_MIGRATED:
                logger.error(
                    "could not record %s: the schema is not migrated (503): %s", what, error
                )
                return _unavailable("the database schema is not migrated")
            logger.error("could not record %s, LiveKit will retry (503): %s", what, error)
            return _unavailable("the database could not commit the event; retry")
        except Exception:
            # Whatever failed the batch, it was rolled back: LiveKit may retry.
            logger.exception("could not record %s, LiveKit will retry (503)", what)
            return _unavailable("the event could not be recorded; retry")
        if isinstance(result, DatabaseError):
            logger.error("the database rejected %s (422): %s", what, result)
            return _answer(422, "rejected", error=str(result))
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
    batches = GroupCommit(
        max_events=settings.livekit_webhook_batch_max_events,
        max_wait=settings.livekit_webhook_batch_max_wait,
        writers=settings.livekit_webhook_batch_writers,
        # The same bound as for a pooled connection: then 503, LiveKit retries.
        queue_timeout=settings.database_pool_acquire_timeout,
    )
    endpoint = LiveKitWebhookEndpoint(
        WebhookVerifier(keys),
        max_body_bytes=settings.livekit_webhook_max_body_bytes,
        batches=batches,
    )
    return [Route(WEBHOOK_PATH, endpoint, methods=["POST"])]
