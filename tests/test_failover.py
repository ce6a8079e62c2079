"""
Losing the primary, on real PostgreSQL 18 (``tests/replication.py``): a
primary and a ``pg_basebackup`` standby, the real app under uvicorn with a
multi-host ``DATABASE_URL`` receiving signed LiveKit webhooks, the primary
killed with SIGKILL and the standby promoted with ``pg_ctl promote``.

With a synchronous standby, every webhook answered 200 before, during and
after is on the promoted server, the app finds it by itself, and the gap is
answered 503 (LiveKit retries). Without one, what the standby had not
received when the primary died is gone: the asynchronous test makes that
lag large on purpose (the standby is down while webhooks are acknowledged)
to show exactly what is lost. The recovery times measured here are in
docs/operations.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conference.db import Database
from conference.engine import (
    ConferenceEngine,
    database_name,
    single_host_urls,
    url_hosts,
    validate_database_url,
)
from conference.errors import ConfigurationError, DatabaseUnavailable
from tests.failover_drill import (
    WebhookStream,
    build_pair,
    readiness,
    recorded_event_ids,
    wait_until_ready,
)
from tests.replication import StreamingReplica
from tests.support import LiveServer
from tests.webhook_sessions import WEBHOOK_ENV, product_sync

logger = logging.getLogger(__name__)

#: Seconds the app may take, after ``pg_ctl promote`` returns, to answer 200 again.
RECOVERY_BOUND = 10.0

#: Seconds between the primary's death and the promotion: an HA manager's
#: detection time (Patroni's is its ``ttl``, 30 s by default; shortened here).
DETECTION_DELAY = 1.0


# --- Multi-host URLs --------------------------------------------------------


def test_a_multi_host_url_that_asks_for_the_primary_is_accepted() -> None:
    tcp = "postgresql://app:secret@db1:5432,db2:5433/livekit_conference?target_session_attrs=read-write"
    sockets = "postgresql://postgres@/livekit_conference?host=/run/pg1,/run/pg2&target_session_attrs=primary"

    assert validate_database_url(tcp) == tcp
    assert validate_database_url(sockets) == sockets
    assert url_hosts(tcp) == ["db1:5432", "db2:5433"]
    assert url_hosts(sockets) == ["/run/pg1", "/run/pg2"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://app@db1:5432,db2:5432/conference", "add target_session_attrs=read-write"),
        (
            "postgresql://app@db1,db2/conference?target_session_attrs=standby",
            "target_session_attrs=standby",
        ),
        (
            "postgresql://app@db1:5432,db2:x/conference?target_session_attrs=read-write",
            "port 'x' of host 'db2:x' is not a number",
        ),
    ],
)
def test_a_multi_host_url_that_could_reach_a_standby_is_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        validate_database_url(url)


def test_a_multi_host_url_splits_into_one_url_per_host() -> None:
    assert single_host_urls("postgresql://app:pw@db1:5432,db2:5433/conference?sslmode=require") == [
        "postgresql://app:pw@db1:5432/conference?sslmode=require",
        "postgresql://app:pw@db2:5433/conference?sslmode=require",
    ]
    assert single_host_urls("postgresql://app@/conference?host=/run/a,/run/b&port=5432,5433") == [
        "postgresql://app@/conference?host=/run/a&port=5432",
        "postgresql://app@/conference?host=/run/b&port=5433",
    ]
    assert single_host_urls("postgresql://app@db1/conference") == [
        "postgresql://app@db1/conference"
    ]


async def test_a_primary_that_never_answers_does_not_keep_the_app_from_the_next_host(
    database_url: str,
) -> None:
    # A listener that accepts and stays silent: a hung primary, or one behind
    # a network cut. asyncpg's own timeout spans all hosts, so without a
    # timeout per host it would be used up here before the next is tried.
    silent: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    socket_dir = parse_qs(urlsplit(database_url).query)["host"][0]
    url = (
        f"postgresql://postgres@/{database_name(database_url)}?host=127.0.0.1,{socket_dir}"
        f"&port={port},5432&target_session_attrs=read-write"
    )
    try:
        database = Database(ConferenceEngine(url=url, connect_timeout=1))
        await database.start_pool(min_size=1, max_size=2)
        try:
            rows = await database.query("SELECT 1 AS one")
            health = await database.check_connection(deadline=5)
        finally:
            await database.close_pool()
    finally:
        listener.close()
        for writer in silent:
            writer.close()

    assert rows[0]["one"] == 1
    assert health.ok and health.host == f"{socket_dir}:5432"
    assert silent, "the silent host was never tried"


# --- The drills ---------------------------------------------------------------


@pytest.fixture
async def pair(cluster_root: Path) -> AsyncIterator[StreamingReplica]:
    """
    A primary with a migrated database and a streaming standby of it, of
    this test alone (it kills the primary); both gone after the test.
    """
    pair = await build_pair(cluster_root / f"failover-{uuid.uuid4().hex[:8]}")
    try:
        yield pair
    finally:
        pair.close()


@pytest.fixture
def app(pair: StreamingReplica, tmp_path: Path) -> Iterator[LiveServer]:
    """The real app under uvicorn, ``DATABASE_URL`` listing primary and standby."""
    live = LiveServer(pair.failover_url(), env=WEBHOOK_ENV, state_dir=tmp_path)
    try:
        live.wait_until_serving()
        yield live
    finally:
        live.close()


async def test_with_a_synchronous_standby_every_acknowledged_webhook_survives_the_primarys_death(
    pair: StreamingReplica, app: LiveServer
) -> None:
    await pair.make_synchronous()
    before = readiness(app)
    assert before["http_status"] == 200 and before["host"] == f"{pair.primary_socket_dir}:5432"
    stream = WebhookStream(app.base_url)
    stream.start()
    try:
        stream.wait_for_oks(40)
        pair.kill_primary()
        killed_at = time.monotonic()
        await asyncio.sleep(DETECTION_DELAY)
        pair.promote()
        promoted_at = time.monotonic()
        recovered_at = stream.wait_for_oks(1, after=killed_at, timeout=RECOVERY_BOUND + 20)
        stream.wait_for_oks(40, after=recovered_at)
    finally:
        stream.stop()

    statuses = {answer.status for answer in stream.answers}
    assert statuses <= {200, 503}, f"answers other than 200 and 503: {statuses}\n{app.output()}"
    recovery = recovered_at - promoted_at
    logger.warning(
        "failover (synchronous): first 200 %.2f s after the kill, %.2f s after promote; "
        "%d answered 503 in the gap",
        recovered_at - killed_at,
        recovery,
        sum(answer.status == 503 for answer in stream.answers),
    )
    assert recovery <= RECOVERY_BOUND
    # Every acknowledged webhook is on the promoted standby, which now
    # takes writes; the app's /readyz names it.
    on_new_primary = await recorded_event_ids(pair.replica_url)
    acknowledged = {answer.event_id for answer in stream.ok()}
    assert acknowledged - on_new_primary == set()
    after = readiness(app)
    assert after["http_status"] == 200 and after["host"] == f"{pair.replica_socket_dir}:5432"
    # LiveKit retries what got 503: once redelivered, nothing is missing.
    retries = WebhookStream(app.base_url)
    with httpx.Client(base_url=app.base_url, timeout=30) as client:
        for event_id in sorted(set(stream.sent) - acknowledged):
            retries.deliver(client, stream.sent[event_id])
    assert {answer.status for answer in retries.answers} <= {200}
    assert set(stream.sent) <= await recorded_event_ids(pair.replica_url)


async def test_without_a_synchronous_standby_webhooks_it_had_not_received_are_lost(
    pair: StreamingReplica, app: LiveServer
) -> None:
    stream = WebhookStream(app.base_url)
    with httpx.Client(base_url=app.base_url, timeout=30) as client:
        for event in product_sync(tag="streamed"):
            stream.deliver(client, event)
        await pair.wait_for_replay()
        # The standby falls behind (here: it is down; in life, a slow
        # network or disk), while the primary keeps acknowledging.
        pair.stop_replica()
        for event in product_sync(tag="unreplicated"):
            stream.deliver(client, event)
    assert {answer.status for answer in stream.answers} == {200}, app.output()[-3000:]
    database = Database(ConferenceEngine(url=pair.failover_url(), connect_timeout=5))
    pair.kill_primary()
    pair.start_replica()
    # The gap: the primary is gone, the standby not yet promoted. Queries,
    # and an app starting now, get DatabaseUnavailable (webhooks: 503).
    with pytest.raises(DatabaseUnavailable, match=r"no host of .* accepts writes"):
        await database.query("SELECT 1")
    with pytest.raises(DatabaseUnavailable, match=r"no host of .* accepts writes"):
        ConferenceEngine(url=pair.failover_url(), connect_timeout=5)
    assert readiness(app)["http_status"] == 503
    pair.promote()

    on_new_primary = await recorded_event_ids(pair.replica_url)

    streamed = {event.event_id for event in product_sync(tag="streamed")}
    unreplicated = {event.event_id for event in product_sync(tag="unreplicated")}
    assert streamed <= on_new_primary
    assert unreplicated & on_new_primary == set()
    # The app itself finds the promoted standby.
    assert wait_until_ready(app)["host"] == f"{pair.replica_socket_dir}:5432"
