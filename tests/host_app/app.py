"""
A host ASGI application built on ``conference``: migrations on startup,
the pool for its lifetime, ORM and raw queries in one transaction, and a
readiness endpoint. DATABASE_SETUP.md shows this file; tests/test_host_app.py
runs it.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from notes.tables import Note
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conference import db
from conference.errors import IntegrityViolation
from conference.migrations import auto_migrate
from conference.tables import Meeting


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await auto_migrate()  # every replica may: they take turns, one applies
    await db.start_pool()
    yield
    await db.close_pool(timeout=10)  # lets requests in flight finish


async def ready(request: Request) -> JSONResponse:
    health = await db.check_connection(deadline=2.0)
    return JSONResponse(
        {
            "ok": health.ok,
            "server_version": health.server_version,
            "pending_migrations": health.pending_migrations,
            "error": health.error,
        },
        status_code=200 if health.ok and not health.pending_migrations else 503,
    )


async def add_note(request: Request) -> JSONResponse:
    body = await request.json()
    try:
        async with db.transaction():  # the ORM and db.query() share it
            meeting = Meeting(room_name=body["room"])
            await meeting.save()
            await Note(meeting=meeting.id, text=body["text"]).save()
            rows = await db.query(
                "SELECT count(*) AS notes FROM host_notes WHERE meeting = $1", meeting.id
            )
    except IntegrityViolation as error:  # names the constraint, never the values
        return JSONResponse({"error": str(error)}, status_code=400)
    return JSONResponse({"meeting": str(meeting.id), "notes": rows[0]["notes"]}, status_code=201)


app = Starlette(
    routes=[Route("/ready", ready), Route("/notes", add_note, methods=["POST"])],
    lifespan=lifespan,
)
