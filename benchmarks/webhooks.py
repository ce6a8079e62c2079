"""
LiveKit webhooks per second on one uvicorn worker, against a bare endpoint
on the same server, in the same run::

    python -m benchmarks.webhooks                  # 3000 requests per endpoint
    python -m benchmarks.webhooks --requests 200   # a quick look

It starts ``uvicorn benchmarks.app:app`` (one worker, 127.0.0.1 only) on a
throwaway database of the test PostgreSQL server (``TEST_DATABASE_URL`` or
the embedded ``.local/test-pgdata``; ``--database-url`` for another empty
database), then posts the same realistic signed sessions
(``tests/webhook_sessions.py``) to three routes in turn:

- ``bare``: reads the body and answers 200 (the HTTP floor);
- ``verify``: signature, parse and mapping, no database;
- ``webhook``: ``POST /webhooks/livekit``, the real thing.

``--concurrency`` connections post at once, each one room's events in
order, as LiveKit's notifier does. Bodies are signed before the clock
starts. The client is a minimal keep-alive HTTP/1.1 client on the same
machine, so it competes with uvicorn and PostgreSQL for the CPU: compare the
rows of one run, not absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from tests import support
from tests.webhook_sessions import API_KEY, API_SECRET, WEBHOOK_ENV, product_sync, sign

HOST = "127.0.0.1"

#: The routes measured, in order, and what they do.
ENDPOINTS = (
    ("bare", "/bench/bare", "read the body, answer 200"),
    ("verify", "/bench/verify", "verify + parse + map, no database"),
    ("webhook", "/webhooks/livekit", "verify + parse + map + one transaction"),
)


@dataclass(frozen=True)
class Measurement:
    """One route's run: ``requests`` posts in ``seconds``."""

    name: str
    what: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def per_second(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """A latency percentile in milliseconds (``0.5``: the median)."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


@dataclass(frozen=True)
class BenchmarkResult:
    """Every route's measurement, ``bare`` first."""

    measurements: list[Measurement]
    concurrency: int

    def by_name(self, name: str) -> Measurement:
        """The measurement of one route."""
        return next(m for m in self.measurements if m.name == name)

    @property
    def ratio(self) -> float:
        """Webhook requests per second as a fraction of the bare endpoint's."""
        bare = self.by_name("bare").per_second
        return self.by_name("webhook").per_second / bare if bare else 0.0

    def table(self) -> str:
        """The results as a text table."""
        bare = self.by_name("bare").per_second
        lines = [
            f"{'endpoint':<9} {'requests':>8} {'seconds':>8} {'req/s':>8} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'vs bare':>7}  what",
        ]
        for m in self.measurements:
            share = m.per_second / bare if bare else 0.0
            lines.append(
                f"{m.name:<9} {m.requests:>8} {m.seconds:>8.2f} {m.per_second:>8.0f} "
                f"{m.percentile(0.5):>7.2f} {m.percentile(0.99):>7.2f} {share:>7.2f}  {m.what}"
                + (f"  ({m.errors} errors)" if m.errors else "")
            )
        lines.append(
            f"one uvicorn worker, {self.concurrency} connections; webhook / bare = {self.ratio:.2f}"
        )
        return "\n".join(lines)


# --- A minimal HTTP/1.1 client ---------------------------------------------


class _Connection:
    """One keep-alive connection; just enough HTTP for these POSTs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes, authorization: str) -> int:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\n"
            "Content-Type: application/webhook+json\r\n"
            f"Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode("ascii") + body)
        await self.writer.drain()
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


# --- The run ------------------------------------------------------------------


def signed_sessions(requests: int, tag: str) -> list[list[tuple[bytes, str]]]:
    """``requests`` signed events, grouped by room session (in order)."""
    sessions: list[list[tuple[bytes, str]]] = []
    remaining = requests
    for number in range(math.ceil(requests / 22)):
        events = product_sync(tag=f"{tag}{number}x")[:remaining]
        sessions.append([(e.body.encode(), sign(e.body, API_KEY, API_SECRET)) for e in events])
        remaining -= len(events)
    return sessions


async def _measure(
    port: int,
    name: str,
    path: str,
    what: str,
    sessions: list[list[tuple[bytes, str]]],
    concurrency: int,
) -> Measurement:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[list[tuple[bytes, str]]] = asyncio.Queue()
    for session in sessions:
        queue.put_nowait(session)

    async def worker() -> None:
        nonlocal errors
        connection = await _Connection.open(port)
        try:
            while not queue.empty():
                for body, authorization in queue.get_nowait():
                    started = time.perf_counter()
                    status = await connection.post(path, body, authorization)
                    latencies.append((time.perf_counter() - started) * 1000)
                    errors += status != 200
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return Measurement(name, what, len(latencies), seconds, latencies, errors)


async def _run(port: int, requests: int, concurrency: int) -> BenchmarkResult:
    # Warm up every route (imports, prepared statements, pool connections).
    warm_up = min(requests, 44)
    for name, path, what in ENDPOINTS:
        sessions = signed_sessions(warm_up, f"warm{name}")
        await _measure(port, name, path, what, sessions, concurrency)
    measurements = []
    for name, path, what in ENDPOINTS:
        sessions = signed_sessions(requests, f"run{name}")  # new ids: no duplicates
        measurements.append(await _measure(port, name, path, what, sessions, concurrency))
    return BenchmarkResult(measurements, concurrency)


def run_benchmark(
    requests: int = 3000, concurrency: int = 8, database_url: str | None = None
) -> BenchmarkResult:
    """
    Start the server, measure every route, stop the server.

    :param requests:
        Requests per route.
    :param concurrency:
        Connections posting at once.
    :param database_url:
        An empty database to use; default a throwaway one on the test server.
    """
    server_url = None
    if database_url is None:
        server_url = support.test_server_url()
        database_url = asyncio.run(support.create_database(server_url, prefix="bench_webhooks"))
    try:
        with TemporaryDirectory() as state_dir:
            env = {**WEBHOOK_ENV, "UVICORN_ACCESS_LOG": "false"}
            server = support.LiveServer(
                database_url, env=env, app="benchmarks.app:create_app", state_dir=Path(state_dir)
            )
            try:
                server.wait_until_serving(timeout=120)
                return asyncio.run(_run(server.port, requests, concurrency))
            finally:
                server.close()
    finally:
        if server_url is not None:
            asyncio.run(support.drop_database(server_url, database_url))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0].strip())
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="connections at once")
    parser.add_argument("--database-url", help="an empty database (default: a throwaway one)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    result = run_benchmark(args.requests, args.concurrency, args.database_url)
    print(result.table())
    if any(m.errors for m in result.measurements):
        print("some requests failed; see above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
