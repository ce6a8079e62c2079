"""
The ``conference`` ASGI application: piccolo-admin at ``/admin/``, health
endpoints, and a lifespan that owns the connection pool.

Serve the factory with ``uvicorn --factory conference.app:create_app``
(what ``make run`` does), or build one with :func:`create_app` and mount
it, or just :func:`conference.admin.create_admin_app`, in a larger ASGI
service. Importing this module builds nothing and connects to nothing: the
app is built by :func:`create_app`, its pool starts in the lifespan.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from conference import db, replicas
from conference.admin import check_production_settings, create_admin_app
from conference.dashboard import create_dashboard_app
from conference.errors import ConferenceError
from conference.logs import RequestLogMiddleware, configure_logging
from conference.metrics import MetricsMiddleware, metrics_routes
from conference.migrations import auto_migrate
from conference.reports.schedule import refresh_periodically
from conference.settings import Settings, get_settings
from conference.webhooks import webhook_routes

#: How long /readyz waits for the database before answering 503.
READINESS_DEADLINE_SECONDS = 2.0


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers. Never touches the database."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """
    Readiness: the database answers within the deadline and no migration is
    pending. 503 with the reason otherwise, so a load balancer stops sending
    traffic until it recovers. ``host`` names the server in use (with a
    multi-host ``DATABASE_URL``, the current primary). With
    ``DATABASE_REPLICA_URLS``, ``replicas`` says which replicas take
    lag-tolerant reads now and why not; they do not decide readiness, since
    reads fall back to the primary.
    """
    health, replica_health = await asyncio.gather(
        db.check_connection(deadline=READINESS_DEADLINE_SECONDS), _replica_health()
    )
    body: dict[str, object] = {
        "status": "ready",
        "server_version": health.server_version,
        "host": health.host,
        "latency_ms": health.latency_ms,
        "pending_migrations": health.pending_migrations,
    }
    if replica_health:
        body["replicas"] = replica_health
    if not health.ok:
        body.update(status="unavailable", reason=health.error or "database unavailable")
        return JSONResponse(body, status_code=503)
    if health.pending_migrations:
        body.update(
            status="unavailable",
            reason=f"{len(health.pending_migrations)} migration(s) pending",
        )
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


async def _replica_health() -> list[dict[str, object]]:
    try:
        statuses = await replicas.current_status(READINESS_DEADLINE_SECONDS)
    except ConferenceError:  # no usable piccolo_conf: check_connection says why
        return []
    return [
        {"node": status.node, "usable": status.usable, "lag": status.lag, "reason": status.reason}
        for status in statuses
    ]


def freeze_startup_objects() -> None:
    """
    Leave what startup built (modules, tables, the admin app) out of the
    garbage collector's full collections. Each full collection walked them
    all and stopped every request meanwhile: it was the webhooks' p99 (see
    docs/benchmarks.md, "webhooks"). What requests create later is
    collected as before.
    """
    gc.collect()  # startup's own garbage is not kept
    gc.freeze()


def create_app(settings: Settings | None = None) -> Starlette:
    """
    Build the application. A production configuration is checked here, so a
    bad one fails before the server binds its port.
    """
    settings = settings or get_settings()
    check_production_settings(settings)
    configure_logging(settings)  # LOG_FORMAT, LOG_LEVEL

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.start_pool()
        try:
            if settings.auto_migrate_enabled:
                await auto_migrate()
            freeze_startup_objects()
            async with refresh_periodically(settings.reports_refresh_interval):
                yield
        finally:
            # uvicorn has already let in-flight requests finish; close_pool
            # waits for queries still holding connections, up to its timeout.
            await db.close_pool()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *webhook_routes(settings),
        *metrics_routes(settings),
        Mount("/admin/", create_admin_app(settings)),
        Mount("/reports", create_dashboard_app(settings)),
    ]
    # Outermost first: every request gets an id, a log line and its counts.
    middleware = [Middleware(RequestLogMiddleware), Middleware(MetricsMiddleware)]
    if settings.allowed_host_list:
        middleware.append(
            Middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_host_list)
        )
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def __getattr__(name: str) -> Starlette:
    # Deprecated: ``uvicorn conference.app:app`` was the documented command
    # until the factory, and deployments name it. The app is built when
    # that name is first read, never at import.
    if name == "app":
        warnings.warn(
            "conference.app:app is deprecated and will be removed; serve the factory "
            "instead: uvicorn --factory conference.app:create_app",
            FutureWarning,
            stacklevel=2,
        )
        return _deprecated_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _deprecated_app() -> Starlette:
    return create_app()
