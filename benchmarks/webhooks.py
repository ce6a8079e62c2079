"""
LiveKit webhooks per second on one uvicorn worker, against a bare endpoint
on the same server, in the same run; writes its section of
``docs/benchmarks.md``::

    python -m benchmarks.webhooks                    # 6 rounds of 500 requests per route
    python -m benchmarks.webhooks --requests 300 --rounds 2 --no-write   # a quick look
    python -m benchmarks.webhooks --workers 2        # uvicorn --workers 2
    python -m benchmarks.webhooks --concurrency 128  # its own section, webhooks-connections-128

It starts four servers (``uvicorn --factory benchmarks.app:create_app``, 127.0.0.1) on
a throwaway database of the test PostgreSQL server (``TEST_DATABASE_URL``
or the embedded ``.local/test-pgdata``; ``--database-url`` for another
empty database): one with the default settings, one with group commit off
(``LIVEKIT_WEBHOOK_BATCH_MAX_EVENTS=1``), one on uvicorn's pure-Python
event loop and HTTP parser (``--loop=asyncio --http=h11``) instead of
uvloop and httptools, one whose group-commit writers wait 2 ms for more
events (``LIVEKIT_WEBHOOK_BATCH_MAX_WAIT=0.002``). It loads ``--history``
generated meetings (``piccolo conference generate``, which ends with ANALYZE:
a database that has run a while has statistics), then posts the same realistic
signed sessions (``tests/webhook_sessions.py``) to these routes, in turn,
``--rounds`` times:

- ``bare``: reads the body and answers 200 (the HTTP floor);
- ``token``: ``livekit-api``'s token check and the body's hash, nothing
  else: the ceiling of any webhook route that keeps that check;
- ``verify``: signature, parse and mapping, no database;
- ``webhook``: ``POST /webhooks/livekit``, the real thing (group commit);
- ``webhook, one by one``: the same with a transaction per webhook;
- ``webhook, asyncio + h11``: the same as ``webhook`` on the third server;
- ``webhook, 2 ms batch wait``: the same on the fourth.

Rounds alternate the routes so that other work on the machine hits them
alike; the ratio to ``bare`` is taken per round (the same minute) and the
median of those is reported. ``--concurrency`` connections post at once,
each one room's events in order, as LiveKit's notifier does. Bodies are
signed before the clock starts. The client runs on the same machine and
competes with uvicorn and PostgreSQL for the CPU: compare the rows of one
run, not absolute numbers across machines.

It also times, in this process, the two ways to read a verified body:
``livekit-api``'s ``WebhookReceiver.receive`` (token, hash, protobuf JSON
parse) against ``WebhookVerifier.verify`` (the same token and hash check,
then msgspec).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import asyncpg

from benchmarks.report import (
    load_average,
    machine_description,
    server_facts,
    timestamp,
    write_section,
)
from tests import support
from tests.webhook_sessions import API_KEY, API_SECRET, WEBHOOK_ENV, product_sync, sign

HOST = "127.0.0.1"

#: The section of docs/benchmarks.md this script owns (and its variants,
#: :func:`section_name`).
SECTION = "webhooks"

#: Connections posting at once unless ``--concurrency`` says otherwise.
DEFAULT_CONCURRENCY = 32

#: Generated meetings in the database before the first request (about 41.5
#: analytics rows each). An empty, never analyzed table is planned as a
#: sequential scan, and a pooled connection keeps that generic plan of a
#: webhook statement until autovacuum's next ANALYZE, up to a minute later:
#: the run would measure autovacuum's timing, not the webhook path.
DEFAULT_HISTORY = 2000

PLAIN_WEBHOOK = "webhook, asyncio + h11"
WAITING_WEBHOOK = "webhook, 2 ms batch wait"

#: The routes measured, in order: name, server, path, what.
ENDPOINTS = (
    ("bare", "main", "/bench/bare", "read the body, answer 200"),
    ("token", "main", "/bench/token", "livekit-api's token check and the body hash, no parse"),
    ("verify", "main", "/bench/verify", "verify + parse + map, no database"),
    ("webhook", "main", "/webhooks/livekit", "verify + parse + map + group commit"),
    (
        "webhook, one by one",
        "single",
        "/webhooks/livekit",
        "the same, a transaction per webhook",
    ),
    (
        PLAIN_WEBHOOK,
        "plain",
        "/webhooks/livekit",
        "webhook on uvicorn's pure-Python event loop and HTTP parser",
    ),
    (
        WAITING_WEBHOOK,
        "waiting",
        "/webhooks/livekit",
        "webhook whose free writer waits 2 ms for more events (the former default)",
    ),
)

#: The servers: extra environment and uvicorn options of each. ``plain``
#: shows what uvloop and httptools (picked by uvicorn's "auto") bring,
#: ``waiting`` what a group-commit writer's wait for company costs.
SERVERS: dict[str, tuple[dict[str, str], list[str]]] = {
    "main": ({}, []),
    "single": ({"LIVEKIT_WEBHOOK_BATCH_MAX_EVENTS": "1"}, []),
    "plain": ({}, ["--loop=asyncio", "--http=h11"]),
    "waiting": ({"LIVEKIT_WEBHOOK_BATCH_MAX_WAIT": "0.002"}, []),
}


@dataclass
class Measurement:
    """One route's rounds: requests and seconds of each."""

    name: str
    what: str
    requests: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    #: 503s: the server refused for backpressure (LiveKit would retry).
    busy: int = 0
    #: Any other answer than 200 or 503.
    errors: int = 0

    @property
    def remark(self) -> str:
        """What was not answered 200, if anything."""
        notes = []
        if self.busy:
            notes.append(f"{self.busy} answered 503, busy")
        if self.errors:
            notes.append(f"{self.errors} errors")
        return f" ({', '.join(notes)})" if notes else ""

    @property
    def per_second(self) -> float:
        """Requests per second over all rounds."""
        total = sum(self.seconds)
        return sum(self.requests) / total if total else 0.0

    def round_rate(self, number: int) -> float:
        """Requests per second of one round."""
        return self.requests[number] / self.seconds[number] if self.seconds[number] else 0.0

    def percentile(self, fraction: float) -> float:
        """A latency percentile in milliseconds (``0.5``: the median)."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


@dataclass
class BenchmarkResult:
    """Every route's measurement, ``bare`` first, and the parse timings."""

    measurements: list[Measurement]
    concurrency: int
    workers: int = 1
    rounds: int = 1
    history: int = 0
    parse_us: dict[str, float] = field(default_factory=dict)
    machine: str = ""
    started: str = ""
    command: str = ""

    def by_name(self, name: str) -> Measurement:
        """The measurement of one route."""
        return next(m for m in self.measurements if m.name == name)

    def ratio_of(self, name: str, to: str = "bare") -> float:
        """Median over the rounds of the route's req/s over ``to``'s in the same round."""
        anchor, other = self.by_name(to), self.by_name(name)
        ratios = [
            other.round_rate(n) / anchor.round_rate(n)
            for n in range(len(anchor.seconds))
            if anchor.round_rate(n)
        ]
        return statistics.median(ratios) if ratios else 0.0

    @property
    def fast_stack_gain(self) -> float:
        """Webhook req/s on uvicorn's defaults over the same on asyncio + h11 (paired)."""
        return self.ratio_of("webhook", to=PLAIN_WEBHOOK)

    @property
    def no_wait_gain(self) -> float:
        """Webhook req/s with the default batch wait (none) over a 2 ms wait (paired)."""
        return self.ratio_of("webhook", to=WAITING_WEBHOOK)

    @property
    def token_ceiling(self) -> float:
        """Token check req/s over bare's (paired): the ceiling of a route that keeps it."""
        return self.ratio_of("token")

    @property
    def verify_share(self) -> float:
        """Webhook req/s over the verify route's (paired): what the database path leaves."""
        return self.ratio_of("webhook", to="verify")

    @property
    def ratio(self) -> float:
        """Webhook requests per second as a fraction of the bare endpoint's (paired)."""
        return self.ratio_of("webhook")

    def _rows(self) -> list[tuple[str, ...]]:
        return [
            (
                m.name,
                f"{sum(m.requests)}",
                f"{m.per_second:,.0f}",
                f"{m.percentile(0.5):.1f}",
                f"{m.percentile(0.99):.1f}",
                f"{self.ratio_of(m.name):.2f}",
                m.what + m.remark,
            )
            for m in self.measurements
        ]

    def table(self) -> str:
        """The results as a text table."""
        lines = [
            f"{'endpoint':<20} {'requests':>8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'vs bare':>7}  what"
        ]
        for name, requests, rate, p50, p99, ratio, what in self._rows():
            lines.append(f"{name:<20} {requests:>8} {rate:>8} {p50:>7} {p99:>7} {ratio:>7}  {what}")
        lines.append(
            f"{self.workers} uvicorn worker(s), {self.concurrency} connections, "
            f"{self.rounds} rounds; webhook / bare = {self.ratio:.2f}; "
            f"token / bare = {self.token_ceiling:.2f}; "
            f"webhook / verify = {self.verify_share:.2f}; "
            f"webhook / webhook on asyncio + h11 = {self.fast_stack_gain:.2f}; "
            f"webhook / webhook with a 2 ms batch wait = {self.no_wait_gain:.2f}"
        )
        for name, micros in self.parse_us.items():
            lines.append(f"{name}: {micros:.1f} µs per event")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The section of ``docs/benchmarks.md``."""
        lines = [
            "## Webhooks end to end: one uvicorn worker against a bare endpoint"
            if self.workers == 1
            else f"## Webhooks end to end: {self.workers} uvicorn workers",
            "",
            f"Run {self.started}: `{self.command}`",
            "",
            f"**Machine.** {self.machine}",
            "",
            f"**Load.** {self.concurrency} keep-alive connections, each posting one room "
            "session's signed webhooks in order (22 events, realistic bodies of ~480 bytes, "
            f"unique ids), {self.rounds} rounds alternating the routes, on "
            + (
                f"a database holding {self.history:,} generated meetings (analyzed) before "
                "the first request."
                if self.history
                else "an empty database."
            ),
            "",
            "| route | requests | req/s | p50 ms | p99 ms | vs bare (paired) | what |",
            "|---|--:|--:|--:|--:|--:|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self._rows()]
        lines += [
            "",
            f"**webhook / bare = {self.ratio:.2f}** (the median of the per-round ratios; "
            "each 200 is sent after its transaction committed, `synchronous_commit` on).",
            "",
            f"**token / bare = {self.token_ceiling:.2f}**: `livekit-api`'s token check "
            "(`TokenVerifier`: signature, expiry, issuer) and the body's hash alone, with no "
            "parse, no mapping and no database: the ceiling of any webhook route that keeps "
            "`livekit-api`'s verification on this worker.",
            "",
            f"**webhook / verify = {self.verify_share:.2f}**: the same with the database "
            "path only, against the route that verifies, parses and maps but writes nothing "
            "(the ceiling of this project's webhook path on this worker).",
            "",
            f"**webhook / webhook on asyncio + h11 = {self.fast_stack_gain:.2f}**: what "
            f"uvicorn's defaults ({_uvicorn_stack()}) bring over its pure-Python event "
            "loop and HTTP parser, paired in the same way.",
            "",
            f"**webhook / webhook with a 2 ms batch wait = {self.no_wait_gain:.2f}**: "
            "group commit's writers take what is waiting at once by default "
            "(`LIVEKIT_WEBHOOK_BATCH_MAX_WAIT=0`); the fourth server waits 2 ms for more "
            "events before a short batch, as it did before.",
            "",
            "Reading a verified body, in this process (µs per event, the session's 22 events):",
            "",
        ]
        lines += [f"- {name}: {micros:.1f} µs" for name, micros in self.parse_us.items()]
        lines += [
            "",
            "The servers run with `LOG_LEVEL=WARNING` (no line per request) and the "
            "default pool; the second only sets `LIVEKIT_WEBHOOK_BATCH_MAX_EVENTS=1`, the "
            "third only `--loop=asyncio --http=h11`, the fourth only "
            "`LIVEKIT_WEBHOOK_BATCH_MAX_WAIT=0.002`. A 503 "
            "is the pool's backpressure (`DATABASE_POOL_ACQUIRE_TIMEOUT`), which LiveKit "
            "retries. The client, uvicorn and PostgreSQL share the machine's cores, and so "
            "do other jobs: compare the rows of this section with each other.",
        ]
        return "\n".join(lines)


def _uvicorn_stack() -> str:
    # uvicorn's "auto" picks uvloop and httptools when they are installed
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"event loop {loop}, HTTP parser {http}"


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
    path: str,
    sessions: list[list[tuple[bytes, str]]],
    concurrency: int,
    into: Measurement,
) -> None:
    latencies: list[float] = []
    busy = errors = 0
    queue: asyncio.Queue[list[tuple[bytes, str]]] = asyncio.Queue()
    for session in sessions:
        queue.put_nowait(session)

    async def worker() -> None:
        nonlocal busy, errors
        connection = await _Connection.open(port)
        try:
            while not queue.empty():
                for body, authorization in queue.get_nowait():
                    started = time.perf_counter()
                    status = await connection.post(path, body, authorization)
                    latencies.append((time.perf_counter() - started) * 1000)
                    busy += status == 503
                    errors += status not in (200, 503)
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    into.seconds.append(time.perf_counter() - started)
    into.requests.append(len(latencies))
    into.latencies_ms.extend(latencies)
    into.busy += busy
    into.errors += errors


async def _run(
    ports: dict[str, int], requests: int, concurrency: int, rounds: int
) -> list[Measurement]:
    # Warm up every route (imports, prepared statements, pool connections).
    for name, server, path, what in ENDPOINTS:
        sessions = signed_sessions(min(requests, 88), f"warm{len(name)}{server}")
        await _measure(ports[server], path, sessions, concurrency, Measurement(name, what))
    measurements = [Measurement(name, what) for name, _, _, what in ENDPOINTS]
    for number in range(rounds):
        # Alternate the order, so that no route always follows the same one.
        order = list(zip(ENDPOINTS, measurements, strict=True))
        if number % 2:
            order.reverse()
        for (name, server, path, _), measurement in order:
            sessions = signed_sessions(requests, f"r{number}{len(name)}{server}")  # new ids
            await _measure(ports[server], path, sessions, concurrency, measurement)
    return measurements


def parse_timings(repeat: int = 200) -> dict[str, float]:
    """
    µs per event to check and read a signed body: ``livekit-api``'s
    ``WebhookReceiver.receive`` (protobuf JSON) and ``WebhookVerifier.verify``
    (msgspec), alternating, and the two parsers alone.
    """
    from google.protobuf.json_format import Parse
    from livekit.api import TokenVerifier, WebhookReceiver
    from livekit.protocol.webhook import WebhookEvent

    from conference.webhooks.event import decode_event
    from conference.webhooks.verification import WebhookVerifier

    events = [(e.body, sign(e.body, API_KEY, API_SECRET)) for e in product_sync(tag="parse")]
    receiver = WebhookReceiver(TokenVerifier(API_KEY, API_SECRET))
    verifier = WebhookVerifier({API_KEY: API_SECRET})
    ways = {
        "livekit-api WebhookReceiver.receive (token, hash, protobuf JSON parse)": lambda b, a: (
            receiver.receive(b, a)
        ),
        "WebhookVerifier.verify (the same token and hash check, msgspec)": lambda b, a: (
            verifier.verify(b.encode(), a)
        ),
        "protobuf json_format.Parse alone": lambda b, a: Parse(
            b, WebhookEvent(), ignore_unknown_fields=True
        ),
        "msgspec decode_event alone": lambda b, a: decode_event(b),
    }
    totals = dict.fromkeys(ways, 0.0)
    for _ in range(repeat):
        for name, way in ways.items():
            started = time.perf_counter()
            for body, authorization in events:
                way(body, authorization)
            totals[name] += time.perf_counter() - started
    return {name: total / repeat / len(events) * 1e6 for name, total in totals.items()}


async def _machine(database_url: str, load_before: str) -> str:
    connection = await asyncpg.connect(database_url)
    try:
        server = await server_facts(connection)
    finally:
        await connection.close()
    return machine_description(server, load_before, load_average())


def run_benchmark(
    requests: int = 500,
    concurrency: int = DEFAULT_CONCURRENCY,
    database_url: str | None = None,
    *,
    rounds: int = 6,
    workers: int = 1,
    history: int = DEFAULT_HISTORY,
) -> BenchmarkResult:
    """
    Start the servers, measure every route ``rounds`` times, stop them.

    :param requests:
        Requests per route and round.
    :param concurrency:
        Connections posting at once.
    :param database_url:
        An empty database to use; default a throwaway one on the test server.
    :param workers:
        uvicorn worker processes per server.
    :param history:
        Generated meetings loaded (and analyzed) before the first request.
    """
    load_before = load_average()
    server_url = None
    if database_url is None:
        server_url = support.test_server_url()
        database_url = asyncio.run(support.create_database(server_url, prefix="bench_webhooks"))
    try:
        with TemporaryDirectory() as state_dir:
            servers = {}
            try:
                for name, (extra, options) in SERVERS.items():
                    env = {
                        **WEBHOOK_ENV,
                        **extra,
                        "UVICORN_ACCESS_LOG": "false",
                        "LOG_LEVEL": "WARNING",
                    }
                    servers[name] = support.LiveServer(
                        database_url,
                        env=env,
                        app="benchmarks.app:create_app",
                        state_dir=Path(state_dir) / name,
                        args=[*options, *([f"--workers={workers}"] if workers > 1 else [])],
                    )
                    servers[name].wait_until_serving(timeout=120)
                if history:  # the servers have migrated the database
                    support.run_piccolo(
                        ["conference", "generate", f"--meetings={history}"], database_url
                    )
                ports = {name: server.port for name, server in servers.items()}
                measurements = asyncio.run(_run(ports, requests, concurrency, rounds))
            finally:
                for server in servers.values():
                    server.close()
        parse_us = parse_timings()
        machine = asyncio.run(_machine(database_url, load_before))
    finally:
        if server_url is not None:
            asyncio.run(support.drop_database(server_url, database_url))
    return BenchmarkResult(
        measurements,
        concurrency,
        workers,
        rounds,
        history=history,
        parse_us=parse_us,
        machine=machine,
    )


def section_name(workers: int, concurrency: int) -> str:
    """
    The section a run writes: ``webhooks`` for the default load (one
    worker, 32 connections, the load of issue 12's goal), else named by
    what differs: ``webhooks-workers-2``, ``webhooks-connections-128``.
    """
    name = SECTION
    if workers != 1:
        name += f"-workers-{workers}"
    if concurrency != DEFAULT_CONCURRENCY:
        name += f"-connections-{concurrency}"
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; prints the table and writes docs/benchmarks.md."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.webhooks",
        description=(__doc__ or "").split("::")[0].strip(),
    )
    parser.add_argument("--requests", type=int, default=500, help="per route and round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds alternating the routes")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="connections at once"
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per server")
    parser.add_argument(
        "--history",
        type=int,
        default=DEFAULT_HISTORY,
        help="generated meetings loaded before the first request (0: start empty)",
    )
    parser.add_argument("--database-url", help="an empty database (default: a throwaway one)")
    parser.add_argument("--output", type=Path, help="default docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.rounds, args.workers) < 1:
        parser.error("--requests, --rounds, --concurrency and --workers must be at least 1")
    if args.history < 0:
        parser.error("--history must be 0 or more")
    command = "python -m benchmarks.webhooks " + shlex.join(
        "URL" if "://" in arg else arg for arg in (argv if argv is not None else sys.argv[1:])
    )
    started = timestamp()
    result = run_benchmark(
        args.requests,
        args.concurrency,
        args.database_url,
        rounds=args.rounds,
        workers=args.workers,
        history=args.history,
    )
    result.started, result.command = started, command.strip()
    print(result.table())
    if not args.no_write:
        section = section_name(args.workers, args.concurrency)
        kwargs = {"path": args.output} if args.output else {}
        write_section(section, result.markdown(), **kwargs)
        print(f"written to {args.output or 'docs/benchmarks.md'}", file=sys.stderr)
    if any(m.errors for m in result.measurements):
        print("some requests failed; see above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
