"""
``GET /metrics`` over real uvicorn (one worker, and two through
``piccolo conference run --workers=2``), parsed with prometheus-client's
own parser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from conference import queries
from conference.db import Database
from conference.engine import ConferenceEngine
from conference.metrics import metrics_routes, sample_pool
from conference.settings import Settings
from tests.replication import StreamingReplica
from tests.support import LiveServer, conference_migration_ids
from tests.webhook_sessions import product_sync, sign

POOL_MAX = "3"


def scrape(base_url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, by name and sorted labels."""
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float | None:
    return scraped.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(database_url, env={"DATABASE_POOL_MAX_SIZE": POOL_MAX}, state_dir=tmp_path)
    live.wait_until_serving()
    yield live
    live.close()


def test_metrics_report_requests_the_pool_and_the_migration_state(server: LiveServer) -> None:
    for _ in range(3):
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    assert httpx.get(f"{server.base_url}/no-such-page").status_code == 404

    scraped = scrape(server.base_url)

    requests = "conference_http_requests_total"
    # +1: wait_until_serving's own /healthz.
    assert value(scraped, requests, route="/healthz", method="GET", status="200") == 4
    assert value(scraped, requests, route="unmatched", method="GET", status="404") == 1
    assert value(scraped, "conference_database_up") == 1
    assert value(scraped, "conference_migrations_pending") == 0
    last = value(
        scraped,
        "conference_migration_last_applied_info",
        app="conference",
        migration=conference_migration_ids()[-1],
        ran_on=next(
            dict(labels)["ran_on"]
            for name, labels in scraped
            if name == "conference_migration_last_applied_info"
            and dict(labels)["app"] == "conference"
        ),
    )
    assert last == 1
    assert value(scraped, "conference_db_pool_max_connections") == int(POOL_MAX)
    assert 1 <= (value(scraped, "conference_db_pool_connections") or 0) <= int(POOL_MAX)
    assert value(scraped, "conference_db_pool_waiters") == 0
    # No replicas configured: no replica series.
    assert not [name for name, _ in scraped if name.startswith("conference_replica_")]


def test_two_workers_report_the_sum_of_both_workers_counts(
    database_url: str, tmp_path: Path
) -> None:
    live = LiveServer(
        database_url,
        env={"DATABASE_POOL_MAX_SIZE": POOL_MAX},
        state_dir=tmp_path,
        via_run=True,
        args=["--workers=2"],
    )
    try:
        live.wait_until_serving(timeout=90)
        # Both workers have started their pools once both samples are in.
        deadline = 60
        while value(scrape(live.base_url), "conference_db_pool_max_connections") != 2 * int(
            POOL_MAX
        ):
            deadline -= 1
            assert deadline, live.output()
            time.sleep(1)
        with httpx.Client() as first, httpx.Client() as second:
            for n in range(20):  # two keep-alive connections, one per worker or not
                (first if n % 2 else second).get(f"{live.base_url}/healthz")
        # Fresh connections: whichever worker answers, the sum is the same.
        counts = {
            value(
                scrape(live.base_url),
                "conference_http_requests_total",
                route="/healthz",
                method="GET",
                status="200",
            )
            for _ in range(8)
        }
        files = {path.name for path in (tmp_path / "prometheus").iterdir()}
    finally:
        live.close()

    # +1: wait_until_serving's own /healthz.
    assert counts == {21.0}, live.output()
    # Two server processes wrote their values to the shared directory.
    assert len({name.rsplit("_", 1)[1] for name in files if name.startswith("counter_")}) == 2


async def test_metrics_need_the_token_when_one_is_set() -> None:
    app = Starlette(routes=metrics_routes(Settings(metrics_token="s3cret-token")))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        refused = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})

    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert allowed.status_code == 200
    assert "conference_database_up 1.0" in allowed.text


def test_metrics_are_off_in_production_without_a_token() -> None:
    production = Settings(conference_env="production")
    assert metrics_routes(production) == []
    with_token = Settings(conference_env="production", metrics_token="s3cret-token")
    assert [route.path for route in metrics_routes(with_token)] == ["/metrics"]  # type: ignore[attr-defined]


async def test_catalogue_queries_are_timed_by_function(database_url: str) -> None:
    app = Starlette(routes=metrics_routes(Settings()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        before = samples((await client.get("/metrics")).text)
        await queries.active_meetings()
        await queries.active_meetings()
        after = samples((await client.get("/metrics")).text)

    name = "conference_query_duration_seconds_count"
    counted = (value(after, name, function="active_meetings") or 0) - (
        value(before, name, function="active_meetings") or 0
    )
    assert counted == 2


def test_each_replica_reports_whether_it_is_used_and_its_lag(
    streaming_replica: StreamingReplica, tmp_path: Path
) -> None:
    live = LiveServer(
        streaming_replica.database_url,
        env={"DATABASE_REPLICA_URLS": streaming_replica.replica_url},
        state_dir=tmp_path,
    )
    try:
        live.wait_until_serving()
        scraped = scrape(live.base_url)
    finally:
        live.close()

    assert value(scraped, "conference_replica_up", replica="replica_1") == 1
    lag = value(scraped, "conference_replica_lag_seconds", replica="replica_1")
    assert lag is not None and 0 <= lag < 5


async def test_the_pool_gauges_count_connections_in_use_and_callers_waiting(
    database_url: str,
) -> None:
    database = Database(ConferenceEngine(url=database_url, connect_timeout=5, acquire_timeout=10))
    await database.start_pool(max_size=1, min_size=1)
    try:
        pool = database.engine.pool
        async with pool.acquire():
            waiter = asyncio.ensure_future(database.query("SELECT 1 AS one"))
            async with asyncio.timeout(10):
                while pool.waiting == 0:  # noqa: ASYNC110 - a counter, no event to wait on
                    await asyncio.sleep(0.01)
            sample_pool(database)
            busy = {
                name: REGISTRY.get_sample_value(name)
                for name in (
                    "conference_db_pool_connections",
                    "conference_db_pool_connections_in_use",
                    "conference_db_pool_waiters",
                    "conference_db_pool_max_connections",
                )
            }
        assert (await waiter)[0]["one"] == 1
        sample_pool(database)
        waiters_after = REGISTRY.get_sample_value("conference_db_pool_waiters")
    finally:
        await database.close_pool()

    assert busy == {
        "conference_db_pool_connections": 1,
        "conference_db_pool_connections_in_use": 1,
        "conference_db_pool_waiters": 1,
        "conference_db_pool_max_connections": 1,
    }
    assert waiters_after == 0


def test_webhooks_are_counted_by_event_type_outcome_and_status(
    database_url: str, tmp_path: Path, connection: asyncpg.Connection
) -> None:
    # ``connection``: the recorded rows are deleted after the test.
    key, secret = "APImetricstest", "a-secret-for-the-metrics-test-0123456789"
    live = LiveServer(
        database_url,
        env={"LIVEKIT_API_KEY": key, "LIVEKIT_API_SECRET": secret},
        state_dir=tmp_path,
    )
    first = product_sync(tag="metrics")[0]  # room_started
    url = f"{live.base_url}/webhooks/livekit"
    try:
        live.wait_until_serving()
        signed = {
            "Authorization": sign(first.body, key, secret),
            "Content-Type": "application/webhook+json",
        }
        answers = [
            httpx.post(url, content=first.body, headers=signed).status_code,
            httpx.post(url, content=first.body, headers=signed).status_code,  # a retry
            httpx.post(url, content=first.body).status_code,  # unsigned
            httpx.post(
                url,
                content=first.body,
                headers={"Authorization": sign(first.body, key, "not-the-secret-" * 3)},
            ).status_code,
        ]
        scraped = scrape(live.base_url)
    finally:
        live.close()

    assert answers == [200, 200, 401, 401]
    requests = "conference_webhook_requests_total"
    assert value(scraped, requests, event_type=first.event, outcome="recorded", status="200") == 1
    assert value(scraped, requests, event_type=first.event, outcome="duplicate", status="200") == 1
    assert value(scraped, requests, event_type="unknown", outcome="unauthorized", status="401") == 2
    failures = "conference_webhook_signature_failures_total"
    assert value(scraped, failures, reason="missing") == 1
    assert value(scraped, failures, reason="bad_signature") == 1
    assert value(scraped, "conference_webhook_duration_seconds_count") == 4
