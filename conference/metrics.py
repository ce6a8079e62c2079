"""
Prometheus metrics: ``GET /metrics``, in the text format any Prometheus
scrapes.

=================================================  ==========================================
``conference_http_requests_total``                 requests by route template, method, status
``conference_webhook_requests_total``              LiveKit webhooks by event type, outcome, status
``conference_webhook_duration_seconds``            histogram: time to answer a webhook
``conference_webhook_signature_failures_total``    refused signatures by reason
``conference_query_duration_seconds``              histogram: catalogue queries by function
``conference_db_pool_connections``                 open pool connections (all workers)
``conference_db_pool_connections_in_use``          of which lent out
``conference_db_pool_waiters``                     tasks waiting for a connection
``conference_db_pool_max_connections``             the pools' limit (all workers)
``conference_database_up``                         1 when the database answers the scrape
``conference_migrations_pending``                  migrations not applied yet
``conference_migration_last_applied_info``         the last applied migration, as labels
``conference_replica_up``                          per replica: 1 when reads may go there
``conference_replica_lag_seconds``                 per replica: seconds behind the primary
=================================================  ==========================================

**Several workers.** Each worker process counts its own requests. With
``PROMETHEUS_MULTIPROC_DIR`` set to an empty directory (prometheus-client's
multiprocess mode; ``piccolo conference run --workers=N`` sets it up), every
worker writes its values there and ``/metrics``, answered by whichever
worker gets the scrape, adds them all up. The variable must be in the
environment of the server process (not only in ``.env``): prometheus-client
reads it when it is imported. Pool gauges are sampled every
:data:`POOL_SAMPLE_SECONDS` and when ``/metrics`` is answered (not per
request: it showed in the webhook profile), and a worker's are
dropped when it shuts down. The database facts (pending migrations,
replica lag) are the same for every worker and are read at scrape time.

**Not public.** ``/metrics`` shows traffic and schema state. With
``METRICS_TOKEN`` set it answers only ``Authorization: Bearer <token>``
(Prometheus: ``authorization: {credentials: …}`` in the scrape config). In
production without a token it is off (404); in development without one it
is open.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conference import db, replicas
from conference.db import Database, get_database
from conference.logs import request_facts, route_template
from conference.settings import Settings

logger = logging.getLogger(__name__)

#: Where the metrics are served.
METRICS_PATH = "/metrics"

#: Seconds between two samples of a worker's pool gauges.
POOL_SAMPLE_SECONDS = 5.0

#: How long a scrape waits for the database facts before leaving them out.
SCRAPE_DEADLINE_SECONDS = 2.0

# Webhooks are answered in milliseconds unless the database struggles;
# LiveKit gives up on a delivery after a few seconds.
_WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_QUERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

HTTP_REQUESTS = Counter(
    "conference_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
WEBHOOK_REQUESTS = Counter(
    "conference_webhook_requests",
    "LiveKit webhook requests, by event type (unknown until verified), outcome and status code.",
    ["event_type", "outcome", "status"],
)
WEBHOOK_DURATION = Histogram(
    "conference_webhook_duration_seconds",
    "Seconds from receiving a LiveKit webhook to its answer.",
    buckets=_WEBHOOK_BUCKETS,
)
SIGNATURE_FAILURES = Counter(
    "conference_webhook_signature_failures",
    "LiveKit webhooks refused with 401, by reason.",
    ["reason"],
)
QUERY_DURATION = Histogram(
    "conference_query_duration_seconds",
    "Seconds a query-catalogue function took (conference.queries), by function.",
    ["function"],
    buckets=_QUERY_BUCKETS,
)
# livesum: the sum over the workers that are running now.
POOL_SIZE = Gauge(
    "conference_db_pool_connections",
    "Open connections of the connection pools of all workers.",
    multiprocess_mode="livesum",
)
POOL_IN_USE = Gauge(
    "conference_db_pool_connections_in_use",
    "Pool connections lent out to a query or transaction, all workers.",
    multiprocess_mode="livesum",
)
POOL_WAITERS = Gauge(
    "conference_db_pool_waiters",
    "Tasks waiting for a pool connection, all workers.",
    multiprocess_mode="livesum",
)
POOL_MAX = Gauge(
    "conference_db_pool_max_connections",
    "The most connections the pools of all workers may open.",
    multiprocess_mode="livesum",
)


def multiprocess_dir() -> str | None:
    """
    ``PROMETHEUS_MULTIPROC_DIR``: prometheus-client's own switch to
    multiprocess mode, which it reads from the environment at import.
    """
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def reset_multiprocess_dir(path: str) -> None:
    """
    Empty (or create) a multiprocess directory before the workers start:
    files of an earlier run would be added to this one's counts.
    """
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


# --- Catalogue query timing --------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def timed_query(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """
    Decorator for a query-catalogue function: observe how long each call
    takes in ``conference_query_duration_seconds{function=…}``, errors
    included.
    """
    histogram = QUERY_DURATION.labels(function=function.__name__)

    @wraps(function)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    return timed


# --- Pool gauges -------------------------------------------------------------


def sample_pool(database: Database | None = None) -> None:
    """
    Set this worker's pool gauges from its pool (zeros when it has none).

    :param database:
        Default: the engine of ``piccolo_conf`` (the app's).
    """
    size = in_use = waiters = maximum = 0
    try:
        pool: Any = (database or get_database()).engine.pool
    except Exception:  # no piccolo_conf here: nothing to sample
        pool = None
    if pool is not None:
        size = pool.get_size()
        in_use = size - pool.get_idle_size()
        maximum = pool.get_max_size()
        waiters = pool.waiting  # conference.pool.ConferencePool
    POOL_SIZE.set(size)
    POOL_IN_USE.set(in_use)
    POOL_WAITERS.set(waiters)
    POOL_MAX.set(maximum)


class _PoolSampler:
    """Samples the pool every few seconds while the worker runs."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            sample_pool()
            await asyncio.sleep(POOL_SAMPLE_SECONDS)


# --- Database facts, read at scrape time -------------------------------------


_LAST_APPLIED_SQL = """
SELECT DISTINCT ON (app_name) app_name, name, ran_on
FROM migration
ORDER BY app_name, id DESC
"""


class DatabaseFacts(Collector):
    """
    Scrape-time metrics of the database: whether it answers, pending
    migrations, the last applied one, and each replica's lag. Filled by
    :meth:`refresh` (async) before each scrape; ``collect`` only reports.
    """

    def __init__(self) -> None:
        self._metrics: list[Metric] = []

    async def refresh(self, deadline: float = SCRAPE_DEADLINE_SECONDS) -> None:
        """Read the facts now, giving up on any that take longer than ``deadline``."""
        metrics: list[Metric] = []
        health = await db.check_connection(deadline=deadline)
        up = GaugeMetricFamily(
            "conference_database_up", "1 when the database answered this scrape in time."
        )
        up.add_metric([], 1.0 if health.ok else 0.0)
        metrics.append(up)
        if health.ok:
            pending = GaugeMetricFamily(
                "conference_migrations_pending",
                "Migrations of the registered apps not applied yet.",
            )
            pending.add_metric([], float(len(health.pending_migrations)))
            metrics.append(pending)
            try:
                async with asyncio.timeout(deadline):
                    rows = await db.query(_LAST_APPLIED_SQL)
            except Exception as error:
                logger.warning("metrics: could not read the migration ledger: %s", error)
                rows = []
            last = InfoMetricFamily(
                "conference_migration_last_applied",
                "The migration each app applied last (Piccolo's ledger).",
            )
            for row in rows:
                last.add_metric(
                    [],
                    {
                        "app": row["app_name"],
                        "migration": row["name"],
                        "ran_on": row["ran_on"].isoformat(),
                    },
                )
            metrics.append(last)
        metrics.extend(await _replica_metrics(deadline))
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics)


async def _replica_metrics(deadline: float) -> list[Metric]:
    if not db.get_database().engine.extra_nodes:
        return []
    try:
        async with asyncio.timeout(deadline):
            statuses = await replicas.replica_status()
    except Exception as error:
        logger.warning("metrics: could not check the replicas: %s", error)
        return []
    up = GaugeMetricFamily(
        "conference_replica_up",
        "1 when lag-tolerant reads may go to this replica (within DATABASE_REPLICA_MAX_LAG).",
        labels=["replica"],
    )
    lag = GaugeMetricFamily(
        "conference_replica_lag_seconds",
        "Seconds this replica trails the primary at most (absent when unknown).",
        labels=["replica"],
    )
    for status in statuses:
        up.add_metric([status.node], 1.0 if status.usable else 0.0)
        if status.lag is not None:
            lag.add_metric([status.node], status.lag)
    return [up, lag]


# --- The endpoint and the middleware ------------------------------------------


class _ThisProcess(Collector):
    """Everything of prometheus-client's default registry: this process's metrics."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def _registry(facts: DatabaseFacts) -> CollectorRegistry:
    """What one scrape shows: every worker's metrics (or this process's), and ``facts``."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ThisProcess())
    registry.register(facts)
    return registry


def _authorized(request: Request, settings: Settings) -> bool:
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    given = request.headers.get("authorization", "")
    scheme, _, credentials = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    )


def metrics_routes(settings: Settings) -> list[BaseRoute]:
    """
    ``GET /metrics``, guarded as the settings say (see the module
    docstring). In production without ``METRICS_TOKEN``: no route (404),
    with a warning at startup.
    """
    token_set = settings.metrics_token is not None and bool(
        settings.metrics_token.get_secret_value()
    )
    if settings.production and not token_set:
        logger.warning(
            "METRICS_TOKEN is not set: %s is off in production. Set METRICS_TOKEN and "
            "give Prometheus the same token to scrape it",
            METRICS_PATH,
        )
        return []

    async def metrics(request: Request) -> Response:
        if token_set and not _authorized(request, settings):
            return PlainTextResponse(
                "metrics need Authorization: Bearer <METRICS_TOKEN>\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        sample_pool()
        facts = DatabaseFacts()
        await facts.refresh()
        body = await asyncio.to_thread(generate_latest, _registry(facts))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route(METRICS_PATH, metrics, methods=["GET"])]


class MetricsMiddleware:
    """
    ASGI middleware: counts every HTTP request by route template, method
    and status, and LiveKit webhooks by what the endpoint noted
    (:func:`conference.logs.note_webhook`); keeps the worker's pool gauges
    fresh while the app runs and drops them when it shuts down.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._sampler = _PoolSampler()
        if multiprocess_dir() is None and _is_spawned_worker():
            logger.warning(
                "this server process was started by another (uvicorn --workers, or "
                "--reload) and PROMETHEUS_MULTIPROC_DIR is not set: with several workers, "
                "/metrics shows only the counts of the worker that answers it. Set it to "
                "an empty directory in the server's environment"
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._sampler.ensure_running()
        root_path = str(scope.get("root_path", ""))
        status = 500
        started = time.perf_counter()

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            elapsed = time.perf_counter() - started
            facts = request_facts(scope)
            route = facts.route or route_template(scope, root_path) or "unmatched"
            HTTP_REQUESTS.labels(route, scope.get("method", ""), str(status)).inc()
            if facts.webhook_outcome is not None:
                WEBHOOK_REQUESTS.labels(
                    facts.webhook_event_type or "unknown", facts.webhook_outcome, str(status)
                ).inc()
                WEBHOOK_DURATION.observe(elapsed)
                if facts.signature_failure is not None:
                    SIGNATURE_FAILURES.labels(facts.signature_failure).inc()

    def _lifespan_send(self, send: Send) -> Send:
        async def send_and_track(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._sampler.ensure_running()
            elif message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self._sampler.stop()
                directory = multiprocess_dir()
                if directory:
                    # This worker's pool is gone: its gauges leave the sums.
                    multiprocess.mark_process_dead(os.getpid(), directory)
            await send(message)

        return send_and_track


def _is_spawned_worker() -> bool:
    import multiprocessing

    return multiprocessing.parent_process() is not None
