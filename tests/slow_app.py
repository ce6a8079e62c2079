"""
The real application plus one slow route, for the graceful-shutdown test:
a request that holds a pooled connection for two seconds. Serve
``tests.slow_app:create_app`` with ``uvicorn --factory``.
"""

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conference import app as conference_app
from conference import db

# Show conference's INFO logs (pool start and close) in the server output.
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")


async def slow(request: Request) -> JSONResponse:
    rows = await db.query("SELECT pg_sleep(2)::text AS slept, 42 AS answer")
    return JSONResponse({"answer": rows[0]["answer"]})


def create_app() -> Starlette:
    """The conference app with ``/slow`` in front."""
    app = conference_app.create_app()
    app.router.routes.insert(0, Route("/slow", slow))
    return app
