"""
How many analytics events per second one primary takes, with the current
schema and indexes, on a database of a chosen size; writes its section of
``docs/benchmarks.md``::

    python -m benchmarks.capacity --meetings 25000       # ~1M analytics rows, its own cluster
    python -m benchmarks.capacity --meetings 242000      # ~10M (loaded once: minutes)
    python -m benchmarks.capacity --database-url URL     # a loaded, non-production database

``--meetings`` starts an embedded PostgreSQL 18 of its own under
``.local/bench-capacity-<meetings>-pgdata`` (never the developer's or the
tests' cluster), migrates it and loads that many generated meetings (41.5
analytics events each) once; later runs with the same ``--meetings`` reuse
them, and the server stops at the end. ``--database-url`` measures any
loaded non-production database instead; the script says how many rows it
found.

The paths, in turn, ``--repeat`` times (medians printed):

- ``webhook, one by one``: ``conference.webhooks.store.record_event``, one
  statement, one transaction and one commit per event (what
  ``POST /webhooks/livekit`` did before group commit);
- ``webhook, commit_delay``: the same with PostgreSQL's ``commit_delay``
  (``--commit-delay`` µs, ``commit_siblings`` 2), set on the database for
  that run only: PostgreSQL's own group commit of concurrent transactions;
- ``webhook, group commit``: ``conference.webhooks.batching.GroupCommit``
  with the default settings, what the endpoint runs: events of sessions
  arriving together are written in one transaction
  (``conference.webhooks.batch``);
- ``copy``: COPY of ``--copy-rows`` generated analytics rows in batches of
  10,000 (one transaction each), on one connection and on two.

The webhook paths run at each number of ``--sessions`` (room sessions at
once: each one room's events in order, as LiveKit's notifier posts them,
mapped beforehand: no HTTP, no signature check). What one primary takes is
the most a path reaches over those numbers: LiveKit posts one request at a
time per room (and per participant, track, egress), with no cap over all
rooms, so a busy server has as many requests in flight as it has rooms with
news. 32 sessions leave group commit waiting on each batch's round trips
with a core idle; the *at saturation* ratios compare each path at its best
number of sessions, per run. The one-by-one paths get a connection per
session, up to 64. What the run writes is deleted again at the end (by
meeting, which cascades), so the row counts are as before. The client runs
on the same machine and competes with PostgreSQL for the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.cluster import ROOT, generated_database
from benchmarks.report import (
    load_average,
    machine_description,
    server_facts,
    timestamp,
    write_section,
)

#: The day the capacity rows are dated: after any data the generator makes.
CAPACITY_DAY = datetime(2027, 1, 15, tzinfo=UTC)

#: What ``--meetings`` loads: generated history up to this day.
LOAD_UNTIL, LOAD_DAYS, LOAD_SEED = datetime(2026, 11, 1, tzinfo=UTC), 120, 7

COPY_BATCH = 10_000

#: Room sessions at once on the webhook paths, by default: a light load and
#: one that keeps both writers of group commit busy.
SESSION_LEVELS = (32, 128)

#: Most connections a webhook path opens (one per session); the embedded
#: server takes 100 in all.
POOL_CAP = 64

#: Sessions per run, at least, for each session at once: the last wave,
#: when fewer are left than run at once, stays a small part of the run.
WAVES = 4

WEBHOOK_PATHS = ("webhook, one by one", "webhook, commit_delay", "webhook, group commit")


@dataclass
class IngestPath:
    """One ingestion path at one load: events and seconds of each run."""

    name: str
    what: str
    sessions: int | None = None  # room sessions at once; None for COPY
    events: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        """Events per second of each run."""
        return [e / s for e, s in zip(self.events, self.seconds, strict=True)]

    @property
    def per_second(self) -> float:
        """The median run's events per second."""
        return statistics.median(self.rates)

    def line(self) -> str:
        """One Markdown table row."""
        latency = ""
        if self.latencies_ms:
            ordered = sorted(self.latencies_ms)
            p50 = ordered[len(ordered) // 2]
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            latency = f"{p50:.1f} / {p95:.1f}"
        sessions = "" if self.sessions is None else str(self.sessions)
        runs = len(self.seconds)
        return (
            f"| {self.name} | {sessions} | {self.what} | {self.per_second:,.0f} | {latency} "
            f"| {runs} |"
        )


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
    sessions: list[list[tuple[Any, str]]], concurrency: int, group_commit: bool
) -> tuple[int, float, list[float], set[Any]]:
    from conference.webhooks.batching import GroupCommit
    from conference.webhooks.store import record_event

    batches = GroupCommit()
    record = batches.record if group_commit else record_event
    queue: asyncio.Queue[list[tuple[Any, str]]] = asyncio.Queue()
    for session in sessions:
        queue.put_nowait(session)
    latencies: list[float] = []
    meetings: set[Any] = set()

    async def worker() -> None:
        while not queue.empty():
            for changes, body in queue.get_nowait():
                began = time.perf_counter()
                result = await record(changes, body)
                latencies.append((time.perf_counter() - began) * 1000)
                if getattr(result, "meeting_id", None) is not None:
                    meetings.add(result.meeting_id)  # type: ignore[union-attr]

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


@dataclass
class CapacityReport:
    """Every path of one run, and what the section says about it."""

    paths: list[IngestPath]
    rows_before: int = 0
    sessions: tuple[int, ...] = SESSION_LEVELS
    commit_delay: int = 0
    machine: str = ""
    started: str = ""
    command: str = ""

    def rates(self, name: str, sessions: int | None = None) -> list[float]:
        """
        Events/s of each run of ``name`` at ``sessions`` at once; for a
        webhook path without ``sessions``, its best over them in that run
        (saturation).
        """
        paths = [path for path in self.paths if path.name == name]
        if sessions is not None:
            paths = [path for path in paths if path.sessions == sessions]
        if not paths:
            raise KeyError(f"no path {name!r} at {sessions} sessions")
        return [max(run) for run in zip(*(path.rates for path in paths), strict=True)]

    def ratio(self, name: str, anchor: str, sessions: int | None = None) -> float:
        """Median over the runs of ``name``'s events/s over ``anchor``'s in the same run."""
        ratios = [
            rate / base
            for rate, base in zip(
                self.rates(name, sessions),
                self.rates(anchor, sessions if anchor in WEBHOOK_PATHS else None),
                strict=True,
            )
        ]
        return statistics.median(ratios) if ratios else 0.0

    def table(self) -> str:
        """The Markdown table, and the ratios under it."""
        lines = [
            f"analytics rows before the run: {self.rows_before:,}",
            "",
            "| path | sessions | how | events/s (median) | latency p50 / p95 ms | runs |",
            "|---|--:|---|--:|--:|--:|",
            *(path.line() for path in self.paths),
            "",
            *(f"- {line}" for line in self.ratios()),
        ]
        return "\n".join(lines)

    def ratios(self) -> list[str]:
        """The comparisons the section is about, paired per run."""
        group, single, delay = WEBHOOK_PATHS[2], WEBHOOK_PATHS[0], WEBHOOK_PATHS[1]
        lines = [
            f"at saturation (each webhook path at its best number of sessions, per run): "
            f"group commit / one by one **{self.ratio(group, single):.2f}x**, "
            f"group commit / COPY on one connection **{self.ratio(group, 'copy x1'):.2f}x**, "
            f"one by one / COPY on one connection {self.ratio(single, 'copy x1'):.2f}x"
        ]
        for sessions in self.sessions:
            lines.append(
                f"{sessions} sessions: group commit / one by one "
                f"{self.ratio(group, single, sessions):.2f}x, commit_delay / one by one "
                f"{self.ratio(delay, single, sessions):.2f}x, group commit / COPY on one "
                f"connection {self.ratio(group, 'copy x1', sessions):.2f}x"
            )
        return lines

    def markdown(self) -> str:
        """The section of ``docs/benchmarks.md``."""
        levels = " and ".join(str(sessions) for sessions in self.sessions)
        return "\n".join(
            [
                f"## Events per second one primary takes: {self.rows_before:,} analytics rows",
                "",
                f"Run {self.started}: `{self.command}`",
                "",
                f"**Machine.** {self.machine}",
                "",
                f"**Load.** {levels} room sessions at once on the webhook paths (22 realistic "
                "events each, in order, mapped beforehand; no HTTP; at least "
                f"{WAVES} sessions per session at once in a run; the one-by-one paths get a "
                f"connection per session, up to {POOL_CAP}); COPY of generated rows in batches "
                f"of 10,000. `commit_delay` {self.commit_delay} µs on its run only. Each run "
                "writes new rows, deleted at the end.",
                "",
                self.table(),
                "",
                "Ratios are paired: per run, each path against its anchor measured in "
                "the same run, then the median. *At saturation* takes each webhook path at "
                "the number of sessions where it went fastest in that run: what one primary "
                "takes from a LiveKit server with that many rooms posting at once.",
            ]
        )


async def run(
    database_url: str,
    *,
    events: int = 4_400,
    sessions: tuple[int, ...] = SESSION_LEVELS,
    copy_rows: int = 200_000,
    repeat: int = 3,
    commit_delay: int = 1_000,
    progress: Any = lambda message: None,
) -> CapacityReport:
    """Measure every path on ``database_url`` (the process's ``DATABASE_URL``)."""
    from benchmarks.partitioning import store_meetings
    from conference import db
    from conference.devdata.synthetic import ANALYTICS_PER_MEETING, column_names
    from conference.tables import AnalyticsEvent

    how = {
        WEBHOOK_PATHS[0]: "record_event: a transaction per event",
        WEBHOOK_PATHS[1]: f"record_event with commit_delay {commit_delay} µs, commit_siblings 2",
        WEBHOOK_PATHS[2]: "GroupCommit (defaults)",
    }
    webhooks = {
        (name, level): IngestPath(name, how[name], sessions=level)
        for level in sessions
        for name in WEBHOOK_PATHS
    }
    copy_paths = {
        n: IngestPath(f"copy x{n}", f"COPY, batches of {COPY_BATCH:,}, {n} connection(s)")
        for n in (1, 2)
    }
    columns = column_names(AnalyticsEvent)
    written: set[Any] = set()
    connection = await asyncpg.connect(database_url)
    database = await connection.fetchval("SELECT current_database()")

    async def pool_for(level: int) -> None:
        # Restarted: new connections also take the database's settings.
        await db.close_pool()
        size = min(level, POOL_CAP)
        await db.start_pool(max_size=size, min_size=size)

    async def delay(on: bool, level: int) -> None:
        # ALTER DATABASE: the pool's new connections take it; restart the pool.
        if on:
            await connection.execute(
                f'ALTER DATABASE "{database}" SET commit_delay = {int(commit_delay)}'
            )
            await connection.execute(f'ALTER DATABASE "{database}" SET commit_siblings = 2')
        else:
            await connection.execute(f'ALTER DATABASE "{database}" RESET commit_delay')
            await connection.execute(f'ALTER DATABASE "{database}" RESET commit_siblings')
        await pool_for(level)

    try:
        for number in range(repeat):
            for level in sessions:
                await pool_for(level)
                # Warm up the new connections (prepared statements): two events a session.
                for group_commit in (False, True):
                    tag = f"capwarm{os.getpid()}r{number}s{level}{int(group_commit)}"
                    warm = [session[:2] for session in _webhook_changes(level, tag)]
                    *_, meetings = await _webhook_run(warm, level, group_commit)
                    written |= meetings
                for name in WEBHOOK_PATHS:
                    path = webhooks[(name, level)]
                    progress(f"run {number + 1}/{repeat}: {name}, {level} sessions")
                    if name == WEBHOOK_PATHS[1]:
                        await delay(True, level)
                    room_sessions = max(1, events // 22, WAVES * level)
                    tag = f"cap{os.getpid()}r{number}s{level}p{WEBHOOK_PATHS.index(name)}"
                    try:
                        recorded, seconds, latencies, meetings = await _webhook_run(
                            _webhook_changes(room_sessions, tag), level, name == WEBHOOK_PATHS[2]
                        )
                    finally:
                        if name == WEBHOOK_PATHS[1]:
                            await delay(False, level)
                    path.events.append(recorded)
                    path.seconds.append(seconds)
                    path.latencies_ms.extend(latencies)
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
    return CapacityReport(
        [*webhooks.values(), *copy_paths.values()],
        sessions=tuple(sessions),
        commit_delay=commit_delay,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.capacity``: prints the table and writes docs/benchmarks.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capacity", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--meetings", type=int, help="load this many into a cluster of its own")
    where.add_argument("--database-url", help="a migrated, loaded, non-production database")
    parser.add_argument(
        "--data-dir", type=Path, help="with --meetings; default .local/bench-capacity-N-pgdata"
    )
    parser.add_argument(
        "--events", type=int, default=4_400, help="webhook events per run, at least"
    )
    parser.add_argument(
        "--sessions",
        type=_levels,
        default=SESSION_LEVELS,
        help="room sessions at once on the webhook paths, comma-separated (default 32,128)",
    )
    parser.add_argument("--copy-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--commit-delay", type=int, default=1_000, help="µs, for its own path")
    parser.add_argument("--output", type=Path, help="default docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.meetings is not None and args.meetings < 1:
        parser.error("--meetings must be at least 1")
    data_dir = None
    try:
        if args.meetings is not None:
            data_dir = args.data_dir or ROOT / ".local" / f"bench-capacity-{args.meetings}-pgdata"
            args.database_url = generated_database(
                data_dir,
                "capacity",
                meetings=args.meetings,
                days=LOAD_DAYS,
                seed=LOAD_SEED,
                until=LOAD_UNTIL,
            ).url
        return _measure_and_write(args, argv)
    finally:
        if data_dir is not None:
            from conference import embedded

            embedded.stop(data_dir)


def _measure_and_write(args: argparse.Namespace, argv: list[str] | None) -> int:
    os.environ["DATABASE_URL"] = args.database_url  # before piccolo_conf is imported
    # Slow statements are what this measures; do not log each one.
    logging.getLogger("conference.db").setLevel(logging.ERROR)
    from conference.settings import get_settings

    get_settings.cache_clear()
    command = "python -m benchmarks.capacity " + shlex.join(
        "URL" if "://" in arg else arg for arg in (argv if argv is not None else sys.argv[1:])
    )
    load_before, started = load_average(), timestamp()

    async def facts() -> tuple[int, str]:
        connection = await asyncpg.connect(args.database_url)
        try:
            count = int(await connection.fetchval("SELECT count(*) FROM analytics"))
            return count, await server_facts(connection)
        finally:
            await connection.close()

    existing, server = asyncio.run(facts())
    report = asyncio.run(
        run(
            args.database_url,
            events=args.events,
            sessions=args.sessions,
            copy_rows=args.copy_rows,
            repeat=args.repeat,
            commit_delay=args.commit_delay,
            progress=lambda message: print(message, file=sys.stderr),
        )
    )
    report.rows_before, report.started, report.command = existing, started, command.strip()
    report.machine = machine_description(server, load_before, load_average())
    print(report.table())
    if not args.no_write:
        kwargs = {"path": args.output} if args.output else {}
        write_section(section_name(existing), report.markdown(), **kwargs)
        print(f"written to {args.output or 'docs/benchmarks.md'}", file=sys.stderr)
    return 0


def _levels(text: str) -> tuple[int, ...]:
    """``--sessions 32,128``: distinct positive numbers, in the order given."""
    try:
        levels = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 32,128; got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1; got {text!r}")
    return levels


def section_name(rows: int) -> str:
    """The section of docs/benchmarks.md for a scale: ``capacity-1M``, ``capacity-10M``."""
    millions = rows / 1_000_000
    return f"capacity-{millions:.0f}M" if millions >= 1 else f"capacity-{rows // 1000}k"


if __name__ == "__main__":
    sys.exit(main())
