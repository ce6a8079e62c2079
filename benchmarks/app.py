"""
The real application plus three reference routes, for
:mod:`benchmarks.webhooks`: the same server, middleware and uvicorn worker,
so the only difference between the routes is the work they do. Serve
``benchmarks.app:create_app`` with ``uvicorn --factory``.

- ``POST /bench/bare``: reads the body, answers 200; the HTTP floor.
- ``POST /bench/token``: the signature check alone (``livekit-api``'s
  token verification and the body's hash): the ceiling of any webhook
  route that keeps that check, on this worker.
- ``POST /bench/verify``: the webhook's work without the database
  (signature, parse, mapping).
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conference import app as conference_app
from conference.settings import get_settings
from conference.webhooks.mapping import changes_for
from conference.webhooks.verification import WebhookVerifier, webhook_keys


async def bare(request: Request) -> JSONResponse:
    """Read the body, answer 200."""
    await request.body()
    return JSONResponse({"status": "ok"})


async def token(request: Request) -> JSONResponse:
    """Check the signature, nothing else."""
    verifier: WebhookVerifier = request.app.state.verifier
    verifier.check_signature(await request.body(), request.headers.get("authorization"))
    return JSONResponse({"status": "signed"})


async def verify(request: Request) -> JSONResponse:
    """Verify and map the webhook, write nothing."""
    verifier: WebhookVerifier = request.app.state.verifier
    event = verifier.verify(await request.body(), request.headers.get("authorization"))
    changes = changes_for(event, received_at=datetime.now(UTC))
    return JSONResponse({"status": "verified", "id": changes.event_id})


def create_app() -> Starlette:
    """The conference app with the ``/bench/`` routes in front."""
    app = conference_app.create_app()
    app.state.verifier = WebhookVerifier(webhook_keys(get_settings()))
    app.router.routes[0:0] = [
        Route("/bench/bare", bare, methods=["POST"]),
        Route("/bench/token", token, methods=["POST"]),
        Route("/bench/verify", verify, methods=["POST"]),
    ]
    return app
