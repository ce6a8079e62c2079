"""
The real application plus one slow route, for the graceful-shutdown test:
a request that holds a pooled connection for two seconds.
"""

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conference import db
from conference.app import create_app

# Show conference's INFO logs (pool start and close) in the server output.
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")


async def slow(request: Request) -> JSONResponse:
    rows = await db.query("SELECT pg_sleep(2)::text AS slept, 42 AS answer")
    return JSONResponse({"answer": rows[0]["answer"]})


app = create_app()
app.router.routes.insert(0, Route("/slow", slow))
