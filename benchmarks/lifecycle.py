"""
Retention on a multi-million-row ``analytics``: how fast it deletes, and
what it does to webhook latency while it runs, against anchors measured in
the same run::

    python -m benchmarks.lifecycle                      # ~1.5M events (36,000 meetings)
    python -m benchmarks.lifecycle --meetings 72000     # ~3M events
    python -m benchmarks.lifecycle --meetings 242000    # ~10M events (the documented larger run)

It keeps an embedded PostgreSQL 18 cluster of its own in
``.local/bench-issue14-pgdata`` (never the developer's or the tests'),
with a database ``conference_bench_issue14`` holding ``--meetings``
generated meetings over 120 days up to 2026-12-01 (loaded once with
``piccolo conference generate``, reused by later runs with the same
``--meetings``). Every scenario works on a fresh copy of it (``CREATE
DATABASE … TEMPLATE``, file copy), so each starts from the same rows:

- ``webhooks + retention``: ``POST /webhooks/livekit`` on one uvicorn
  worker (the real app, ``benchmarks.app``) at a steady ``--rate`` events
  per second from ``--concurrency`` connections, while retention (the
  library, in a process of its own, as cron would start it) deletes the
  events older than 90 days; latency from the moment each request was due,
  so a stall counts in full;
- ``webhooks alone``: the same number of requests at the same rate;
- both ``--repeat`` times, alternating which goes first;
- ``retention alone``: its delete rate without the load;
- ``one DELETE``: the same rows in one statement, the hand-written SQL it
  replaces (one long transaction).

The figures go to the ``lifecycle`` section of ``docs/benchmarks.md``. The
goal: webhook p99 during retention at most twice the p99 without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import asyncpg
import httpx

from benchmarks.cluster import ROOT, generated_database
from benchmarks.report import (
    load_average,
    machine_description,
    percentile,
    server_facts,
    timestamp,
    write_section,
)

DATA_DIR = ROOT / ".local" / "bench-issue14-pgdata"
BASE = "conference_bench_issue14"
COPY = "conference_bench_issue14_run"
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 120
KEEP = timedelta(days=90)
CUTOFF = UNTIL - KEEP


@dataclass
class LoadRun:
    """One scenario's webhook load: latencies (ms) and failures."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def p(self, fraction: float) -> float:
        """A latency percentile in milliseconds."""
        return percentile(self.latencies_ms, fraction)


@dataclass
class RetentionRun:
    """What a retention run deleted, and how long it took."""

    rows: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Rows deleted per second."""
        return self.rows / self.seconds if self.seconds else 0.0


# --- The database ---------------------------------------------------------------


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}


def prepare(meetings: int) -> str:
    """Start the cluster, migrate the base database and load it if needed."""
    return generated_database(
        DATA_DIR, BASE, meetings=meetings, days=DAYS, seed=14, until=UNTIL
    ).server_url


async def fresh_copy(server_url: str) -> str:
    """A copy of the base database (file copy: no WAL), checkpointed."""
    from conference.engine import with_database

    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{COPY}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{COPY}" TEMPLATE "{BASE}" STRATEGY = FILE_COPY')
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    return with_database(server_url, COPY)


# --- Retention, in a process of its own --------------------------------------------


async def _retention_worker(cutoff: datetime, batch_size: int, pause: float) -> None:
    from conference import db
    from conference.lifecycle.retention import run_retention

    await db.start_pool(max_size=1, min_size=1)  # as the command does
    try:
        result = await run_retention(cutoff, batch_size=batch_size, pause=pause, force=True)
    finally:
        await db.close_pool()
    print(json.dumps({"rows": result.rows, "seconds": result.seconds, "counts": result.counts}))


async def _start_retention(url: str, batch_size: int, pause: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.lifecycle", "--retention-worker",
        f"--batch-size={batch_size}", f"--pause={pause}",
        cwd=ROOT, env=_env(url), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _finish_retention(process: asyncio.subprocess.Process) -> RetentionRun:
    stdout, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"retention exited {process.returncode}")
    data = json.loads(stdout.decode().strip().splitlines()[-1])
    return RetentionRun(int(data["rows"]), float(data["seconds"]), data["counts"])


async def one_delete(url: str) -> RetentionRun:
    """The same rows in one ``DELETE`` statement."""
    connection = await asyncpg.connect(url)
    try:
        began = time.perf_counter()
        status = await connection.execute("DELETE FROM analytics WHERE created_at < $1", CUTOFF)
        seconds = time.perf_counter() - began
    finally:
        await connection.close()
    return RetentionRun(int(status.split()[-1]), seconds)


# --- The webhook load -----------------------------------------------------------------


async def paced_load(
    base_url: str,
    sessions: list[list[tuple[bytes, str]]],
    rate: float,
    concurrency: int,
    until: asyncio.Future[RetentionRun] | None = None,
    requests: int | None = None,
) -> LoadRun:
    """
    Post the sessions' events at ``rate`` per second, each connection one
    room's events in order, until ``requests`` were sent or ``until`` is
    done (then at least what is left of the current second). Latency counts
    from when a request was due, not when it went out.
    """
    run = LoadRun()
    events = [event for session in sessions for event in session]
    began = time.perf_counter()
    sent = 0

    def more() -> bool:
        if requests is not None:
            return sent < requests and sent < len(events)
        return sent < len(events) and not (until is not None and until.done())

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while more():
            number = sent
            sent += 1
            body, authorization = events[number]
            due = began + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            response = await client.post(
                "/webhooks/livekit",
                content=body,
                headers={
                    "Authorization": authorization,
                    "Content-Type": "application/webhook+json",
                },
            )
            run.latencies_ms.append((time.perf_counter() - due) * 1000)
            run.errors += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    run.seconds = time.perf_counter() - began
    return run


def _sessions(requests: int, tag: str) -> list[list[tuple[bytes, str]]]:
    from benchmarks.webhooks import signed_sessions

    return signed_sessions(requests, tag)


def _serve(url: str, state_dir: Path):  # type: ignore[no-untyped-def]
    from tests.support import LiveServer
    from tests.webhook_sessions import WEBHOOK_ENV

    env = {**WEBHOOK_ENV, "UVICORN_ACCESS_LOG": "false", "LOG_LEVEL": "WARNING"}
    server = LiveServer(url, env=env, app="benchmarks.app:create_app", state_dir=state_dir)
    server.wait_until_serving(timeout=120)
    return server


async def _warm_up(base_url: str, concurrency: int, tag: str) -> None:
    await paced_load(base_url, _sessions(44, f"warm{tag}"), 1000.0, concurrency)


# --- The run ------------------------------------------------------------------------------


@dataclass
class Result:
    """Every scenario of one run."""

    rows: int
    old_rows: int
    alone: LoadRun
    during: LoadRun
    retention_loaded: RetentionRun
    retention_alone: RetentionRun
    single: RetentionRun
    rate: float
    concurrency: int
    batch_size: int
    pause: float
    #: p99 of each run, in the order they ran: (alone, during retention).
    pairs: list[tuple[float, float]] = field(default_factory=list)

    @property
    def p99_ratio(self) -> float:
        """
        Webhook p99 during retention over p99 without it: the median of the
        runs' ratios, each run paired with the one next to it in time, so
        that the machine's other load weighs on both sides of a ratio.
        """
        ratios = [during / alone for alone, during in self.pairs if alone]
        return statistics.median(ratios) if ratios else 0.0

    @property
    def pooled_p99_ratio(self) -> float:
        """p99 of all requests during retention over p99 of all requests without it."""
        base = self.alone.p(0.99)
        return self.during.p(0.99) / base if base else 0.0

    def table(self) -> str:
        """The results as Markdown."""
        lines = [
            "| webhooks at a steady rate | requests | p50 ms | p95 ms | p99 ms | max ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, run in (("alone", self.alone), ("while retention runs", self.during)):
            lines.append(
                f"| {name} | {len(run.latencies_ms):,} | {run.p(0.5):.1f} | {run.p(0.95):.1f} "
                f"| {run.p(0.99):.1f} | {max(run.latencies_ms, default=0):.1f} | {run.errors} |"
            )
        goal = "met" if self.p99_ratio <= 2 else "NOT met"
        per_run = "; ".join(
            f"run {n}: {alone:.0f} ms alone, {during:.0f} ms during ({during / alone:.2f}x)"
            for n, (alone, during) in enumerate(self.pairs, start=1)
            if alone
        )
        lines += [
            "",
            f"p99 during retention / p99 alone, median of the paired runs: "
            f"**{self.p99_ratio:.2f}x** (goal at most 2x: {goal}); p99 of each run: "
            f"{per_run}; all requests pooled: {self.pooled_p99_ratio:.2f}x.",
            "",
            "| deleting the events older than 90 days | rows | seconds | rows/s | vs one DELETE |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, run in (
            (
                f"retention (batches of {self.batch_size:,}), under the webhook load "
                "(median of the runs)",
                self.retention_loaded,
            ),
            (f"retention (batches of {self.batch_size:,}), alone",
             self.retention_alone),
            ("one `DELETE` statement (one transaction), alone", self.single),
        ):  # fmt: skip
            share = run.rate / self.single.rate if self.single.rate else 0.0
            lines.append(
                f"| {name} | {run.rows:,} | {run.seconds:.1f} | {run.rate:,.0f} | {share:.2f}x |"
            )
        return "\n".join(lines)


async def _count(url: str) -> tuple[int, int]:
    connection = await asyncpg.connect(url)
    try:
        rows = int(await connection.fetchval("SELECT count(*) FROM analytics"))
        old = int(
            await connection.fetchval(
                "SELECT count(*) FROM analytics WHERE created_at < $1", CUTOFF
            )
        )
        return rows, old
    finally:
        await connection.close()


def run(
    server_url: str, *, rate: float, concurrency: int, batch_size: int, pause: float, repeat: int
) -> Result:
    """
    Every scenario, each on a fresh copy of the base database. The two load
    scenarios run ``repeat`` times each, alternating which goes first; their
    latencies are pooled.
    """

    def say(message: str) -> None:
        print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr)

    url = asyncio.run(fresh_copy(server_url))
    rows, old = asyncio.run(_count(url))
    quiet, loaded = LoadRun(), LoadRun()
    pairs: dict[int, dict[bool, float]] = {}
    under_load: list[RetentionRun] = []
    requests = int(rate * 30)  # until the first run with retention says how long it takes

    def load_run(number: int, with_retention: bool) -> None:
        nonlocal requests
        url = asyncio.run(fresh_copy(server_url))
        what = "webhooks + retention" if with_retention else "webhooks alone"
        say(f"run {number + 1}/{repeat}: {what} on {rows:,} rows ({old:,} older than 90 days)")
        with TemporaryDirectory() as state:
            server = _serve(url, Path(state))
            try:

                async def measure() -> None:
                    nonlocal requests
                    await _warm_up(server.base_url, concurrency, f"w{number}{with_retention}")
                    tag = f"r{number}{'d' if with_retention else 'a'}"
                    if not with_retention:
                        load = await paced_load(
                            server.base_url, _sessions(requests, tag), rate, concurrency,
                            requests=requests,
                        )  # fmt: skip
                        quiet.latencies_ms.extend(load.latencies_ms)
                        quiet.errors += load.errors
                        pairs.setdefault(number, {})[False] = load.p(0.99)
                        return
                    process = await _start_retention(url, batch_size, pause)
                    finished = asyncio.ensure_future(_finish_retention(process))
                    sessions = _sessions(int(rate * 240), tag)
                    load = await paced_load(server.base_url, sessions, rate, concurrency, finished)
                    under_load.append(await finished)
                    loaded.latencies_ms.extend(load.latencies_ms)
                    loaded.errors += load.errors
                    pairs.setdefault(number, {})[True] = load.p(0.99)
                    requests = len(load.latencies_ms)

                asyncio.run(measure())
            finally:
                server.close()

    for number in range(repeat):
        order = (True, False) if number % 2 == 0 else (False, True)
        for with_retention in order:
            load_run(number, with_retention)

    say("retention alone ...")
    url = asyncio.run(fresh_copy(server_url))

    async def retention_alone() -> RetentionRun:
        return await _finish_retention(await _start_retention(url, batch_size, pause))

    by_itself = asyncio.run(retention_alone())

    say("one DELETE ...")
    url = asyncio.run(fresh_copy(server_url))
    single = asyncio.run(one_delete(url))
    retention_loaded = RetentionRun(
        under_load[0].rows, statistics.median(r.seconds for r in under_load)
    )
    return Result(
        rows, old, quiet, loaded, retention_loaded, by_itself, single,
        rate, concurrency, batch_size, pause,
        [(pair[False], pair[True]) for _, pair in sorted(pairs.items())],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.lifecycle``."""
    from conference.lifecycle.retention import DEFAULT_BATCH_SIZE, DEFAULT_PAUSE

    parser = argparse.ArgumentParser(prog="python -m benchmarks.lifecycle", description=__doc__)
    parser.add_argument("--meetings", type=int, default=36_000, help="41.5 events each")
    parser.add_argument("--rate", type=float, default=25.0, help="webhooks per second")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each load scenario")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--pause", type=float, default=DEFAULT_PAUSE)
    parser.add_argument("--keep-running", action="store_true", help="leave the cluster up")
    parser.add_argument("--retention-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.retention_worker:
        asyncio.run(_retention_worker(CUTOFF, args.batch_size, args.pause))
        return 0

    from conference import embedded

    load_before = load_average()
    server_url = prepare(args.meetings)
    try:
        result = run(
            server_url,
            rate=args.rate,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            pause=args.pause,
            repeat=args.repeat,
        )

        async def facts() -> str:
            connection = await asyncpg.connect(server_url)
            try:
                return await server_facts(connection)
            finally:
                await connection.close()

        server = asyncio.run(facts())
    finally:
        if not args.keep_running:
            embedded.stop(DATA_DIR)
    command = "python -m benchmarks.lifecycle" + (
        f" --meetings {args.meetings}" if args.meetings != 36_000 else ""
    )
    section = "\n".join(
        [
            "## Retention and webhook latency (issue 14)",
            "",
            f"{timestamp()}, `{command}`: "
            + machine_description(server, load_before, load_average()),
            "",
            f"`analytics` held {result.rows:,} generated events over {DAYS} days; "
            f"{result.old_rows:,} were older than the 90-day cut-off. The webhook load: "
            f"`POST /webhooks/livekit` on one uvicorn worker, {args.rate:g} events/s "
            f"from {args.concurrency} connections; latency from when each request was due. "
            f"Each load scenario ran {args.repeat} times on a fresh copy of the data, "
            "alternating which went first; the percentiles are of all their requests. "
            "Retention ran as its own process, as a scheduled job would, with its defaults "
            f"(batches of {args.batch_size:,} rows, resting after each batch as long as it "
            f"took and at least {args.pause:g} s).",
            "",
            result.table(),
        ]
    )
    write_section("lifecycle", section)
    print(section)
    return 0 if all(r.errors == 0 for r in (result.alone, result.during)) else 1


if __name__ == "__main__":
    sys.exit(main())
