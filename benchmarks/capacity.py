"""
How many analytics events per second one primary takes, with the current
schema and indexes, on a database of a chosen size::

    python -m benchmarks.capacity --database-url URL     # e.g. the 10M-event database
                                                         # of benchmarks.partitioning

Two paths, each measured ``--repeat`` times (medians printed):

- ``webhook``: ``conference.webhooks.store.record_event``, the database half
  of ``POST /webhooks/livekit`` (one statement, one transaction and one
  commit per event; no HTTP, no signature check), ``--concurrency``
  sessions at once on the pool, each one room's events in order;
- ``copy``: COPY of ``--copy-rows`` generated analytics rows in batches of
  10,000 (one transaction each), on one connection and on two.

What it writes is deleted again at the end (by meeting, which cascades),
so the row counts are as before. The client runs on the same machine and
competes with PostgreSQL for the CPU; the result is a floor for a server
with the database to itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

#: The day the capacity rows are dated: after any data the generator makes.
CAPACITY_DAY = datetime(2027, 1, 15, tzinfo=UTC)

COPY_BATCH = 10_000


@dataclass
class IngestPath:
    """One ingestion path: events and seconds of each run."""

    name: str
    what: str
    events: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        """The median run's events per second."""
        return statistics.median(e / s for e, s in zip(self.events, self.seconds, strict=True))

    def line(self) -> str:
        """One Markdown table row."""
        latency = ""
        if self.latencies_ms:
            ordered = sorted(self.latencies_ms)
            p50 = ordered[len(ordered) // 2]
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            latency = f"{p50:.1f} / {p95:.1f}"
        runs = len(self.seconds)
        return f"| {self.name} | {self.what} | {self.per_second:,.0f} | {latency} | {runs} |"


def _webhook_changes(sessions: int, tag: str) -> list[list[tuple[Any, str]]]:
    """``sessions`` room sessions of LiveKit events, mapped, ready to store."""
    from conference.webhooks.event import decode_event
    from conference.webhooks.mapping import changes_for
    from tests.webhook_sessions import product_sync

    result = []
    for number in range(sessions):
        start = CAPACITY_DAY + timedelta(minutes=number)
        events = product_sync(start=start, tag=f"{tag}{number}x")
        result.append(
            [(changes_for(decode_event(e.body), received_at=start), e.body) for e in events]
        )
    return result


async def _webhook_run(
    sessions: list[list[tuple[Any, str]]], concurrency: int
) -> tuple[int, float, list[float], set[Any]]:
    from conference.webhooks.store import record_event

    queue: asyncio.Queue[list[tuple[Any, str]]] = asyncio.Queue()
    for session in sessions:
        queue.put_nowait(session)
    latencies: list[float] = []
    meetings: set[Any] = set()

    async def worker() -> None:
        while not queue.empty():
            for changes, body in queue.get_nowait():
                began = time.perf_counter()
                result = await record_event(changes, body)
                latencies.append((time.perf_counter() - began) * 1000)
                if result.meeting_id is not None:
                    meetings.add(result.meeting_id)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - began
    return len(latencies), seconds, latencies, meetings


async def _copy_run(
    database_url: str, rows: list[tuple[Any, ...]], columns: list[str], connections: int
) -> float:
    pool = [await asyncpg.connect(database_url) for _ in range(connections)]
    batches = [rows[i : i + COPY_BATCH] for i in range(0, len(rows), COPY_BATCH)]

    async def stream(connection: asyncpg.Connection, mine: list[list[tuple[Any, ...]]]) -> None:
        for batch in mine:
            async with connection.transaction():
                await connection.copy_records_to_table("analytics", records=batch, columns=columns)

    try:
        began = time.perf_counter()
        await asyncio.gather(*(stream(c, batches[n::connections]) for n, c in enumerate(pool)))
        return time.perf_counter() - began
    finally:
        for connection in pool:
            await connection.close()


async def run(
    database_url: str,
    *,
    events: int = 4_400,
    concurrency: int = 8,
    copy_rows: int = 200_000,
    repeat: int = 3,
    progress: Any = lambda message: None,
) -> list[IngestPath]:
    """Measure both paths on ``database_url`` (the process's ``DATABASE_URL``)."""
    from benchmarks.partitioning import store_meetings
    from conference import db
    from conference.devdata.synthetic import ANALYTICS_PER_MEETING, column_names
    from conference.tables import AnalyticsEvent

    webhook = IngestPath("webhook", f"record_event, {concurrency} sessions at once")
    copy_paths = {
        n: IngestPath(f"copy x{n}", f"COPY, batches of {COPY_BATCH:,}, {n} connection(s)")
        for n in (1, 2)
    }
    columns = column_names(AnalyticsEvent)
    written: set[Any] = set()
    await db.start_pool(max_size=concurrency)
    connection = await asyncpg.connect(database_url)
    try:
        # Warm up: the pool's connections and prepared statements.
        *_, meetings = await _webhook_run(_webhook_changes(concurrency, "capwarm"), concurrency)
        written |= meetings
        for number in range(repeat):
            progress(f"run {number + 1}/{repeat}: webhook")
            sessions = _webhook_changes(max(1, events // 22), f"cap{os.getpid()}r{number}")
            count, seconds, latencies, meetings = await _webhook_run(sessions, concurrency)
            webhook.events.append(count)
            webhook.seconds.append(seconds)
            webhook.latencies_ms.extend(latencies)
            written |= meetings
            for n, path in copy_paths.items():
                progress(f"run {number + 1}/{repeat}: copy x{n}")
                meetings_needed = max(1, int(copy_rows / ANALYTICS_PER_MEETING))
                day = CAPACITY_DAY + timedelta(days=2 + 2 * number + n)
                rows = await store_meetings(
                    connection, meetings_needed, seed=900 + 10 * number + n, until=day
                )
                written |= {row[2] for row in rows}  # their meeting ids
                path.events.append(len(rows))
                path.seconds.append(await _copy_run(database_url, rows, columns, n))
    finally:
        progress("deleting what was written...")
        await connection.execute(
            "DELETE FROM meetings WHERE id = ANY($1::uuid[])", [str(m) for m in written]
        )
        await connection.close()
        await db.close_pool()
    return [webhook, *copy_paths.values()]


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.capacity``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capacity", description=__doc__)
    parser.add_argument("--database-url", required=True, help="a migrated, non-production database")
    parser.add_argument("--events", type=int, default=4_400, help="webhook events per run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--copy-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ["DATABASE_URL"] = args.database_url  # before piccolo_conf is imported

    async def count() -> int:
        connection = await asyncpg.connect(args.database_url)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM analytics"))
        finally:
            await connection.close()

    existing = asyncio.run(count())
    paths = asyncio.run(
        run(
            args.database_url,
            events=args.events,
            concurrency=args.concurrency,
            copy_rows=args.copy_rows,
            repeat=args.repeat,
            progress=lambda message: print(message, file=sys.stderr),
        )
    )
    print(f"analytics rows before the run: {existing:,}\n")
    print("| path | how | events/s (median) | latency p50 / p95 ms | runs |")
    print("|---|---|---:|---:|---:|")
    for path in paths:
        print(path.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
