"""
Webhooks through a failover: threads that deliver signed LiveKit room
sessions to a running app and note when each was sent and answered, and
what the servers hold afterwards. Used by ``tests/test_failover.py`` and
``benchmarks/failover.py``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from tests import support
from tests.replication import StreamingReplica
from tests.support import LiveServer
from tests.webhook_sessions import WEBHOOK_ENV, Recorded, product_sync, sign


@dataclass
class Answer:
    """One delivery of a webhook: sent and answered (``time.monotonic()``), and the status."""

    sent_at: float
    at: float
    event_id: str
    status: int


@dataclass
class WebhookStream:
    """
    Threads that deliver LiveKit room sessions to the app one event after
    another, as LiveKit's per-room queues do, and note every answer.
    """

    base_url: str
    answers: list[Answer] = field(default_factory=list)
    sent: dict[str, Recorded] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, senders: int = 2) -> None:
        for number in range(senders):
            thread = threading.Thread(target=self._send, args=(number,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def ok(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status == 200]

    def wait_for_oks(self, count: int, after: float = 0.0, timeout: float = 60.0) -> float:
        """Wait for ``count`` 200s to webhooks sent after ``after``; the time of the first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            oks = [answer.at for answer in self.ok() if answer.sent_at > after]
            if len(oks) >= count:
                return min(oks)
            time.sleep(0.02)
        raise AssertionError(
            f"fewer than {count} webhooks answered 200 within {timeout} s; the last answers "
            f"were {[answer.status for answer in self.answers[-10:]]}"
        )

    def _send(self, number: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            session = 0
            while not self.stopping.is_set():
                session += 1
                for event in product_sync(tag=f"s{number}x{session}x"):
                    if self.stopping.is_set():
                        return
                    self.deliver(client, event)

    def deliver(self, client: httpx.Client, event: Recorded) -> None:
        """Post one event and note the answer (0: no HTTP answer at all)."""
        self.sent[event.event_id] = event
        headers = {
            "Content-Type": "application/webhook+json",
            "Authorization": sign(
                event.body, WEBHOOK_ENV["LIVEKIT_API_KEY"], WEBHOOK_ENV["LIVEKIT_API_SECRET"]
            ),
        }
        sent_at = time.monotonic()
        try:
            status = client.post(
                "/webhooks/livekit", content=event.body, headers=headers
            ).status_code
        except httpx.HTTPError:
            status = 0  # no answer at all: the app itself failed
        self.answers.append(Answer(sent_at, time.monotonic(), event.event_id, status))
        if status != 200:
            time.sleep(0.05)  # LiveKit backs off before retrying


async def recorded_event_ids(url: str) -> set[str]:
    """The webhook ids in ``analytics`` on the server of ``url``."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT webhook_event_id FROM analytics WHERE webhook_event_id IS NOT NULL"
        )
    finally:
        await connection.close()
    return {row["webhook_event_id"] for row in rows}


def readiness(app: LiveServer) -> dict[str, object]:
    response = httpx.get(f"{app.base_url}/readyz", timeout=10)
    body: dict[str, object] = response.json()
    body["http_status"] = response.status_code
    return body


def wait_until_ready(app: LiveServer, timeout: float = 10.0) -> dict[str, object]:
    """``/readyz`` once it answers 200; fail with its last answer otherwise."""
    deadline = time.monotonic() + timeout
    while (body := readiness(app))["http_status"] != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz did not answer 200 within {timeout} s: {body}")
        time.sleep(0.1)
    return body


async def build_pair(root: Path) -> StreamingReplica:
    """
    A primary with an empty database and a streaming standby of it under
    ``root``, the schema migrated through the multi-host URL (the migration
    runner finds the primary). Close it with :meth:`StreamingReplica.close`.
    """
    pair = StreamingReplica(root)
    try:
        pair.database_url = await support.create_database(pair.server_url)
        pair.create_replica()
        support.run_piccolo(["migrations", "forwards", "all"], pair.failover_url())
    except BaseException:
        pair.close()
        raise
    return pair
