"""
``analytics`` as it is against a copy range-partitioned by ``created_at``,
on the same data in the same run::

    python -m benchmarks.partitioning                         # ~1M events, throwaway cluster
    python -m benchmarks.partitioning --meetings 242000       # ~10M events (10+ minutes to load)
    python -m benchmarks.partitioning --database-url URL      # a database loaded before, reused

Without ``--database-url`` it starts an embedded PostgreSQL 18 of its own
under ``/tmp/conference-bench-partitioning`` (never the developer's or the
tests' cluster), migrates it and loads ``--meetings`` synthetic meetings
over ``--days`` days with ``conference.devdata.generate`` (COPY); the server stops
at the end, and a second run finds the data and reuses it. Then it builds ``analytics_partitioned``:
the same columns, checks, foreign keys and indexes, partitioned by month
(``--interval week`` for weeks), with the two unique keys widened to
include ``created_at`` as PostgreSQL requires (``PRIMARY KEY (id,
created_at)``, ``UNIQUE (webhook_event_id, created_at)``), and copies every
row into it. Each table is then measured, alternating which goes first,
``--repeat`` times, and the medians are printed:

- ``copy``: COPY of the analytics rows of ``--ingest-meetings`` new
  meetings dated after the loaded data (the bulk path), rolled back after
  each run so that both tables stay identical;
- ``insert``: ``--single-rows`` one-row INSERTs (the webhook path's shape),
  in one transaction, rolled back;
- catalogue queries on ``--samples`` meetings: a timeline page (meeting and
  time range, keyset order), events by type of a meeting (no time
  filter), and a lookup by webhook id (the idempotency key);
- a 24-hour count by event type (a dashboard query, not in the catalogue);
- retention: ``DELETE`` of the oldest whole partition's rows against
  ``DETACH PARTITION`` + ``DROP TABLE``, each rolled back.

Nothing in ``analytics`` changes. The machine's other load changes the
numbers: compare the two columns of one run, not runs on different days.
The table goes to the terminal and to the section ``partitioning-<scale>``
of ``docs/benchmarks.md`` (``--no-write``: terminal only).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.cluster import generated_database
from benchmarks.report import (
    load_average,
    machine_description,
    server_facts,
    timestamp,
    write_section,
)

CURRENT = "analytics"
PARTITIONED = "analytics_partitioned"
TABLES = (CURRENT, PARTITIONED)

#: The generated "now" of the default data, fixed so that reruns reuse it.
DEFAULT_UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
DEFAULT_DATA_DIR = Path("/tmp/conference-bench-partitioning/pgdata")
DATABASE = "conference_bench_partitioning"


@dataclass
class Scenario:
    """One measurement on both tables: seconds per run, per table."""

    name: str
    what: str
    unit: str  # "rows/s" or "ms"
    work: int = 1  # rows per run, for rows/s
    runs: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in TABLES})

    def value(self, table: str) -> float:
        """The median, as rows/s or milliseconds."""
        seconds = statistics.median(self.runs[table])
        return self.work / seconds if self.unit == "rows/s" else seconds * 1000

    def ratio(self) -> float:
        """Partitioned over current (>1: the partitioned table is faster)."""
        current, partitioned = self.value(CURRENT), self.value(PARTITIONED)
        if self.unit == "rows/s":
            return partitioned / current
        return current / partitioned if partitioned else float("inf")


@dataclass
class Result:
    """Every scenario of a run, and the facts needed to read them."""

    events: int
    partitions: int
    interval: str
    sizes: dict[str, str]
    build_seconds: float
    scenarios: list[Scenario]

    def markdown(self, started: str, command: str, machine: str) -> str:
        """The section of ``docs/benchmarks.md``: run, machine, then :meth:`table`."""
        return "\n".join(
            [
                f"## analytics partitioned by created_at, or not: {self.events:,} rows",
                "",
                f"Run {started}: `{command}`",
                "",
                f"**Machine.** {machine}",
                "",
                self.table(),
                "",
                "Medians of the runs; each scenario alternates which table goes first. "
                "What the scenarios do: the docstring of `benchmarks/partitioning.py`.",
            ]
        )

    def table(self) -> str:
        """A Markdown table of medians."""
        lines = [
            f"{self.events:,} analytics rows; {PARTITIONED}: {self.partitions} {self.interval}ly "
            f"partitions, filled in {self.build_seconds:.0f} s "
            f"(size with indexes: {CURRENT} {self.sizes[CURRENT]}, "
            f"{PARTITIONED} {self.sizes[PARTITIONED]})",
            "",
            "| scenario | unit | current | partitioned | partitioned is |",
            "|---|---|---:|---:|---:|",
        ]
        for s in self.scenarios:
            ratio = s.ratio()
            verdict = f"{ratio:.2f}x as fast" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
            lines.append(
                f"| {s.name}: {s.what} | {s.unit} | {_fmt(s.value(CURRENT))} | "
                f"{_fmt(s.value(PARTITIONED))} | {verdict} |"
            )
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


# --- The partitioned copy -------------------------------------------------------


def _bounds(first: datetime, last: datetime, interval: str) -> list[datetime]:
    """Partition boundaries from before ``first`` to two periods after ``last``."""
    if interval == "month":
        start = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        day = first.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.weekday())  # Monday
    bounds = [start]
    while bounds[-1] <= last or len(bounds) < 3 or bounds[-2] <= last:
        previous = bounds[-1]
        if interval == "month":
            year, month = divmod(previous.month, 12)
            bounds.append(previous.replace(year=previous.year + year, month=month + 1))
        else:
            bounds.append(previous + timedelta(days=7))
    return bounds


async def build_partitioned(connection: asyncpg.Connection, interval: str) -> tuple[int, float]:
    """
    (Re)build ``analytics_partitioned`` from ``analytics``; returns the
    number of partitions and the seconds it took. Non-unique indexes are
    mirrored from ``analytics`` whatever they are; the two unique keys get
    ``created_at`` added, as partitioning requires.
    """
    began = time.perf_counter()
    first, last = await connection.fetchrow(
        f"SELECT min(created_at), max(created_at) FROM {CURRENT}"
    )
    # Room for the ingest scenario's rows, dated after the loaded data.
    bounds = _bounds(first, last + timedelta(days=2), interval)
    await connection.execute(f"DROP TABLE IF EXISTS {PARTITIONED}")
    await connection.execute(
        f"CREATE TABLE {PARTITIONED} (LIKE {CURRENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        "PARTITION BY RANGE (created_at)"
    )
    for low, high in itertools.pairwise(bounds):
        await connection.execute(
            f"CREATE TABLE {PARTITIONED}_{low:%Y%m%d} PARTITION OF {PARTITIONED} "
            f"FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
        )
    # Rows first, indexes after, with memory to sort them: the way a
    # migration of a big table would.
    await connection.execute("SET maintenance_work_mem = '512MB'")
    await connection.execute(f"INSERT INTO {PARTITIONED} SELECT * FROM {CURRENT}")
    await connection.execute(
        f"ALTER TABLE {PARTITIONED} ADD PRIMARY KEY (id, created_at), "
        "ADD UNIQUE (webhook_event_id, created_at), "
        "ADD FOREIGN KEY (meeting_id) REFERENCES meetings (id) ON DELETE CASCADE, "
        "ADD FOREIGN KEY (participant_id) REFERENCES participants (id) ON DELETE CASCADE"
    )
    indexes = await connection.fetch(
        """
        SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = $1::regclass AND NOT i.indisunique
        """,
        CURRENT,
    )
    for index in indexes:
        definition = index["definition"].replace(
            f"INDEX {index['name']} ON public.{CURRENT} ",
            f"INDEX {index['name']}_p ON public.{PARTITIONED} ",
        )
        await connection.execute(definition)
    await connection.execute(f"COMMENT ON TABLE {PARTITIONED} IS '{interval}'")
    return len(bounds) - 1, time.perf_counter() - began


async def _partitioned_is_current(connection: asyncpg.Connection, interval: str) -> int | None:
    """The partition count if ``analytics_partitioned`` matches ``analytics``."""
    if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", PARTITIONED):
        return None
    built_for = await connection.fetchval("SELECT obj_description($1::regclass)", PARTITIONED)
    same_rows = await connection.fetchval(
        f"SELECT (SELECT count(*) FROM {CURRENT}) = (SELECT count(*) FROM {PARTITIONED})"
    )
    if built_for != interval or not same_rows:
        return None
    return len(await _partitions(connection))


async def _partitions(connection: asyncpg.Connection) -> list[tuple[str, datetime]]:
    """``(name, lower bound)`` of each partition, oldest first (from their names)."""
    names = await connection.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass ORDER BY c.relname",
        PARTITIONED,
    )
    return [
        (row["relname"], datetime.strptime(row["relname"][-8:], "%Y%m%d").replace(tzinfo=UTC))
        for row in names
    ]


# --- Measuring ------------------------------------------------------------------


async def _timed(work: Awaitable[Any]) -> float:
    """Seconds until ``work`` (a coroutine not started yet) is done."""
    began = time.perf_counter()
    await work
    return time.perf_counter() - began


async def _rolled_back(
    connection: asyncpg.Connection, action: Callable[[], Awaitable[Any]]
) -> float:
    """Seconds ``action`` took inside a transaction that is then rolled back."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        return await _timed(action())
    finally:
        await transaction.rollback()


async def store_meetings(
    connection: asyncpg.Connection,
    meetings: int,
    seed: int,
    until: datetime,
    *,
    analytics: bool = False,
) -> list[tuple[Any, ...]]:
    """
    Invent ``meetings`` meetings in the day before ``until`` and store their
    meetings, participants and recordings (unless a previous run did), and
    their analytics rows too with ``analytics``; returns the analytics rows.
    """
    from conference.devdata.synthetic import SyntheticData, column_names
    from conference.tables import AnalyticsEvent

    data = SyntheticData(meetings=meetings, seed=seed, days=1, until=until)
    rows: list[tuple[Any, ...]] = []
    for batch in data.batches(1_000):
        rows.extend(batch.analytics)
        if not batch.meetings:
            continue
        first_id, first_sid = batch.meetings[0][:2]
        stored = await connection.fetchval("SELECT id FROM meetings WHERE room_sid = $1", first_sid)
        if stored == first_id:
            continue  # stored by an earlier run
        async with connection.transaction():
            if stored is not None:
                # An earlier run with another `until`: the same rooms at other
                # times, so other ids. Replace them.
                await connection.execute(
                    "DELETE FROM meetings WHERE room_sid = ANY($1::text[])",
                    [meeting[1] for meeting in batch.meetings],
                )
            for table, records in batch.by_table():
                if records and (analytics or table is not AnalyticsEvent):
                    await connection.copy_records_to_table(
                        table._meta.tablename,
                        records=records,
                        columns=column_names(table),
                    )
    return rows


async def run(
    database_url: str,
    *,
    interval: str = "month",
    repeat: int = 5,
    samples: int = 200,
    ingest_meetings: int = 5_000,
    single_rows: int = 2_000,
    rebuild: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> Result:
    """Build the partitioned copy (unless it is current) and measure both tables."""
    from conference.devdata.synthetic import column_names
    from conference.tables import AnalyticsEvent

    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SET max_parallel_workers_per_gather = 0")  # 2 cores, shared
        partitions = None if rebuild else await _partitioned_is_current(connection, interval)
        build_seconds = 0.0
        if partitions is None:
            progress(f"building {PARTITIONED} ({interval}ly partitions)...")
            partitions, build_seconds = await build_partitioned(connection, interval)
        events = await connection.fetchval(f"SELECT count(*) FROM {CURRENT}")
        until = await connection.fetchval(f"SELECT max(created_at) FROM {CURRENT}")
        await connection.execute(f"VACUUM ANALYZE {CURRENT}, {PARTITIONED}")
        sizes = {
            table: await connection.fetchval(
                "SELECT pg_size_pretty(coalesce((SELECT sum(pg_total_relation_size(relid)) "
                "FROM pg_partition_tree($1::regclass)), pg_total_relation_size($1::regclass)))",
                table,
            )
            for table in TABLES
        }
        columns = column_names(AnalyticsEvent)
        progress("inventing the rows to ingest...")
        rows = await store_meetings(
            connection, ingest_meetings, seed=777, until=until + timedelta(days=1)
        )
        meetings = await connection.fetch(
            "SELECT m.id, m.created_at FROM meetings m WHERE m.created_at <= $1 "
            "ORDER BY md5(m.id::text) LIMIT $2",
            until,
            samples,
        )
        # One webhook id per sampled meeting, its last event.
        webhook_ids = [
            row["webhook_event_id"]
            for row in await connection.fetch(
                f"SELECT DISTINCT ON (meeting_id) webhook_event_id FROM {CURRENT} "
                "WHERE meeting_id = ANY($1::uuid[]) AND webhook_event_id IS NOT NULL "
                "ORDER BY meeting_id, created_at DESC",
                [meeting["id"] for meeting in meetings],
            )
        ]
        single = rows[:single_rows]
        insert_sql = {
            table: f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join(f'${n}' for n in range(1, len(columns) + 1))})"
            for table in TABLES
        }
        day_ago = until - timedelta(days=1)
        (oldest_partition, _), (_, oldest) = (await _partitions(connection))[:2]
        retained = await connection.fetchval(
            f"SELECT count(*) FROM {CURRENT} WHERE created_at < $1", oldest
        )

        scenarios = {
            "copy": Scenario("copy", f"COPY {len(rows):,} rows", "rows/s", work=len(rows)),
            "insert": Scenario(
                "insert", f"{len(single):,} one-row INSERTs", "rows/s", work=len(single)
            ),
            "timeline": Scenario("timeline", "a meeting's first 100 events, keyset", "ms"),
            "by_type": Scenario("events by type", "of one meeting, no time filter", "ms"),
            "webhook_id": Scenario("webhook id", "lookup by the idempotency key", "ms"),
            "last_day": Scenario("last 24 h", "count by event type (not catalogue)", "ms"),
            "retention": Scenario(
                "retention", f"remove the oldest partition's {retained:,} rows", "ms"
            ),
        }

        async def measure_table(table: str) -> None:
            s = scenarios
            s["copy"].runs[table].append(
                await _rolled_back(
                    connection,
                    lambda: connection.copy_records_to_table(table, records=rows, columns=columns),
                )
            )

            async def one_by_one() -> None:
                for row in single:
                    await connection.execute(insert_sql[table], *row)

            s["insert"].runs[table].append(await _rolled_back(connection, one_by_one))
            timeline = (
                f"SELECT id, event_type, created_at FROM {table} WHERE meeting_id = $1 "
                "AND created_at >= $2 AND created_at < $3 ORDER BY created_at, id LIMIT 100"
            )
            by_type = f"SELECT event_type, count(*) FROM {table} WHERE meeting_id = $1 GROUP BY 1"
            lookup = f"SELECT id FROM {table} WHERE webhook_event_id = $1"
            for meeting in meetings:
                start = meeting["created_at"]
                s["timeline"].runs[table].append(
                    await _timed(
                        connection.fetch(timeline, meeting["id"], start, start + timedelta(days=1))
                    )
                )
                s["by_type"].runs[table].append(
                    await _timed(connection.fetch(by_type, meeting["id"]))
                )
            for webhook_id in webhook_ids:
                s["webhook_id"].runs[table].append(
                    await _timed(connection.fetch(lookup, webhook_id))
                )
            s["last_day"].runs[table].append(
                await _timed(
                    connection.fetch(
                        f"SELECT event_type, count(*) FROM {table} WHERE created_at >= $1 "
                        "GROUP BY 1",
                        day_ago,
                    )
                )
            )

            async def remove_oldest() -> None:
                if table == CURRENT:
                    await connection.execute(f"DELETE FROM {CURRENT} WHERE created_at < $1", oldest)
                else:
                    await connection.execute(
                        f"ALTER TABLE {PARTITIONED} DETACH PARTITION {oldest_partition}"
                    )
                    await connection.execute(f"DROP TABLE {oldest_partition}")

            s["retention"].runs[table].append(await _rolled_back(connection, remove_oldest))

        for run_number in range(repeat):
            order = TABLES if run_number % 2 == 0 else TABLES[::-1]
            for table in order:
                progress(f"run {run_number + 1}/{repeat}: {table}")
                await measure_table(table)
    finally:
        await connection.close()
    return Result(
        events=events,
        partitions=partitions,
        interval=interval,
        sizes=sizes,
        build_seconds=build_seconds,
        scenarios=list(scenarios.values()),
    )


# --- A database to measure --------------------------------------------------------


def prepare_database(data_dir: Path, meetings: int, days: int) -> str:
    """
    A migrated database on an embedded cluster in ``data_dir`` holding
    ``meetings`` generated meetings (loaded now unless already there).
    """
    return generated_database(
        data_dir, DATABASE, meetings=meetings, days=days, seed=8, until=DEFAULT_UNTIL
    ).url


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.partitioning``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.partitioning", description=__doc__)
    parser.add_argument("--database-url", help="a loaded database to reuse (not production)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--meetings", type=int, default=25_000, help="to load (41.5 events each)")
    parser.add_argument("--days", type=int, default=120, help="of history to load")
    parser.add_argument("--interval", choices=["month", "week"], default="month")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200, help="meetings and webhook ids")
    parser.add_argument("--ingest-meetings", type=int, default=5_000)
    parser.add_argument("--single-rows", type=int, default=2_000)
    parser.add_argument("--rebuild", action="store_true", help=f"rebuild {PARTITIONED}")
    parser.add_argument("--output", type=Path, help="default docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.partitioning " + shlex.join(
        "URL" if "://" in arg else arg for arg in (argv if argv is not None else sys.argv[1:])
    )
    load_before, started = load_average(), timestamp()

    url = args.database_url or prepare_database(args.data_dir, args.meetings, args.days)
    try:
        server = asyncio.run(_server_facts(url))
        result = asyncio.run(
            run(
                url,
                interval=args.interval,
                repeat=args.repeat,
                samples=args.samples,
                ingest_meetings=args.ingest_meetings,
                single_rows=args.single_rows,
                rebuild=args.rebuild,
                progress=lambda message: print(message, file=sys.stderr),
            )
        )
    finally:
        if not args.database_url:
            from conference import embedded

            # The data stays in --data-dir for the next run; the server stops.
            embedded.stop(args.data_dir)
    print(result.table())
    if not args.no_write:
        machine = machine_description(server, load_before, load_average())
        scale = (
            f"{result.events / 1e6:.0f}M" if result.events >= 1e6 else f"{result.events // 1000}k"
        )
        kwargs = {"path": args.output} if args.output else {}
        write_section(
            f"partitioning-{scale}", result.markdown(started, command.strip(), machine), **kwargs
        )
        print(f"written to {args.output or 'docs/benchmarks.md'}", file=sys.stderr)
    return 0


async def _server_facts(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        return await server_facts(connection)
    finally:
        await connection.close()


if __name__ == "__main__":
    sys.exit(main())
