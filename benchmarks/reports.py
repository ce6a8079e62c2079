"""
Usage reports from the rollups against the same reports computed straight
from the raw tables (``conference.reports.brute_force_report``), in the
same run, and the refresh after an hour of traffic against a full rebuild::

    python -m benchmarks.reports                     # ~1M events over 100 days
    python -m benchmarks.reports --meetings 242000   # ~10M events (the issue's scale; long)
    python -m benchmarks.reports --database-url URL  # a database loaded before, reused

Without ``--database-url`` it starts an embedded PostgreSQL 18 of its own in
``.local/bench-issue17-pgdata`` (never the developer's or the tests'
cluster), migrates it and loads ``--meetings`` generated meetings over
``--days`` days up to 2026-12-01 (COPY, ``conference.devdata.generate``); the
server stops at the end, the data stays for the next run. Then:

1. a full rebuild of the rollups (``refresh(rebuild=True)``);
2. the 90-day daily report, all rooms and the busiest room: p50 of
   ``--repeat`` runs of ``usage_report`` against p50 of ``--anchor-repeat``
   runs of the brute-force SQL, and both results compared bucket by bucket;
3. ``--rounds`` times: an hour of traffic (the busiest hour of the data,
   copied with new keys into the last hour before now: meetings,
   participant sessions, recordings and events, sessions still running
   left open) plus late changes (100 ``participant_left`` two days late, 100
   events for yesterday), then ``refresh()``; p50 of those refreshes against
   a full rebuild, and the reports compared with brute force again.

It writes its section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
    ROOT,
    load_average,
    machine_description,
    percentile,
    server_facts,
    timestamp,
    write_section,
)

DEFAULT_DATA_DIR = ROOT / ".local" / "bench-issue17-pgdata"
DATABASE = "bench_issue17"

#: The generated "now" of the loaded data.
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)

#: Goal of issue 17: the 90-day daily report's p50, in milliseconds (at 10M events).
REPORT_GOAL_MS = 20.0

# {busiest}, {shift}, {tag}: literals made by _add_traffic, never input.
_TRAFFIC = """
CREATE TEMP TABLE bench_meetings ON COMMIT DROP AS
SELECT id AS old_id, gen_random_uuid() AS new_id FROM meetings
WHERE created_at >= {busiest} AND created_at < {busiest} + interval '1 hour';

CREATE TEMP TABLE bench_participants ON COMMIT DROP AS
SELECT p.id AS old_id, gen_random_uuid() AS new_id, m.new_id AS meeting_id
FROM participants p JOIN bench_meetings m ON p.meeting_id = m.old_id;

INSERT INTO meetings (id, room_name, created_at, ended_at, metadata)
SELECT m.new_id, o.room_name, o.created_at + {shift},
       CASE WHEN o.ended_at + {shift} <= now() THEN o.ended_at + {shift} END, o.metadata
FROM meetings o JOIN bench_meetings m ON o.id = m.old_id;

INSERT INTO participants (id, meeting_id, identity, joined_at, left_at, metadata)
SELECT p.new_id, p.meeting_id, o.identity, o.joined_at + {shift},
       CASE WHEN o.left_at + {shift} <= now() THEN o.left_at + {shift} END, o.metadata
FROM participants o JOIN bench_participants p ON o.id = p.old_id
WHERE o.joined_at + {shift} <= now();

INSERT INTO recordings (meeting_id, egress_id, status, started_at, completed_at,
                        storage_path, file_size, duration, metadata)
SELECT m.new_id, o.egress_id || '-' || {tag}, CASE WHEN o.completed_at + {shift} <= now()
       THEN o.status ELSE 'active' END, o.started_at + {shift},
       CASE WHEN o.completed_at + {shift} <= now() THEN o.completed_at + {shift} END,
       o.storage_path, o.file_size, o.duration, o.metadata
FROM recordings o JOIN bench_meetings m ON o.meeting_id = m.old_id
WHERE o.started_at + {shift} <= now();

INSERT INTO analytics (meeting_id, participant_id, event_type, event_data, created_at)
SELECT m.new_id, p.new_id, o.event_type, o.event_data, o.created_at + {shift}
FROM analytics o JOIN bench_meetings m ON o.meeting_id = m.old_id
LEFT JOIN bench_participants p ON o.participant_id = p.old_id
WHERE o.created_at + {shift} <= now();
"""

# Late webhooks: participant_left two days late (the leave moves by a
# minute), events of yesterday arriving now.
_LATE = """
UPDATE participants SET left_at = left_at + interval '1 minute'
WHERE id IN (SELECT id FROM participants
             WHERE joined_at >= $1::timestamptz - interval '2 days'
               AND joined_at < $1::timestamptz - interval '47 hours'
               AND left_at IS NOT NULL ORDER BY id LIMIT 100);

INSERT INTO analytics (meeting_id, event_type, created_at)
SELECT id, 'track_published', created_at + interval '1 minute'
FROM meetings WHERE created_at >= $1::timestamptz - interval '1 day'
                 AND created_at < $1::timestamptz - interval '23 hours'
ORDER BY id LIMIT 100;
"""


@dataclass
class Results:
    """Everything one run measured."""

    meetings: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    rollup_rows: dict[str, int] = field(default_factory=dict)
    rebuild_s: list[float] = field(default_factory=list)
    report_ms: dict[str, list[float]] = field(default_factory=dict)
    anchor_ms: dict[str, list[float]] = field(default_factory=dict)
    refresh_s: list[float] = field(default_factory=list)
    traffic: list[dict[str, int]] = field(default_factory=list)
    exact: list[bool] = field(default_factory=list)
    machine: str = ""
    command: str = ""

    def markdown(self) -> str:
        """The section of ``docs/benchmarks.md``."""
        events = self.counts.get("analytics", 0)
        lines = [
            f"## Usage reports (issue 17): {events:,} analytics events",
            "",
            f"Measured {timestamp()} with `{self.command}`. {self.machine}",
            "",
            f"Data: {self.counts.get('meetings', 0):,} meetings, "
            f"{self.counts.get('participants', 0):,} participant sessions, "
            f"{self.counts.get('recordings', 0):,} recordings, {events:,} events over 100 "
            "days (`conference.devdata.generate`). Rollups: "
            + ", ".join(f"{name} {rows:,} rows" for name, rows in self.rollup_rows.items())
            + ".",
            "",
            "| what | rollups: p50 (fastest) | brute-force SQL: p50 | ratio of p50s |",
            "|---|---|---|---|",
        ]
        for name, times in self.report_ms.items():
            ours, anchor = percentile(times, 0.5), percentile(self.anchor_ms[name], 0.5)
            lines.append(
                f"| {name} | {ours:.2f} ms ({min(times):.2f} ms), n={len(times)} | "
                f"{anchor:,.0f} ms, n={len(self.anchor_ms[name])} | {ours / anchor:.5f} |"
            )
        rebuild = percentile(self.rebuild_s, 0.5)
        refresh = percentile(self.refresh_s, 0.5)
        traffic = self.traffic[0] if self.traffic else {}
        lines += [
            f"| refresh after an hour of traffic | {refresh:.2f} s "
            f"({min(self.refresh_s):.2f} s), n={len(self.refresh_s)} "
            f"| full rebuild {rebuild:.1f} s, n={len(self.rebuild_s)} "
            f"| {refresh / rebuild:.3f} |",
            "",
            f"An hour of traffic: the busiest hour of the data copied into the hour before "
            f"now ({traffic.get('meetings', 0)} meetings, {traffic.get('participants', 0)} "
            f"sessions, {traffic.get('analytics', 0)} events) plus 100 participant_left two "
            "days late and 100 events of yesterday. "
            f"Goal at 10M events: the 90-day daily report in at most {REPORT_GOAL_MS:.0f} ms "
            "p50. Rollups and brute force gave exactly the same buckets in every comparison: "
            f"{'yes' if self.exact and all(self.exact) else 'NO'} ({len(self.exact)} "
            "comparisons). The machine was shared with other work (load average above): a "
            "report is one statement on the pool, whose wall time under that load is mostly "
            "waiting for a CPU; the fastest run shows what the statement itself needs.",
        ]
        return "\n".join(lines)


async def _timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = await work()
    return time.perf_counter() - began, result


async def _add_traffic(connection: asyncpg.Connection, round_: int) -> dict[str, int]:
    busiest = await connection.fetchval(
        "SELECT date_trunc('hour', created_at, 'UTC') AS hour FROM meetings "
        "WHERE created_at < $1 GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
        UNTIL,
    )
    now = await connection.fetchval("SELECT now()")
    shift = now - timedelta(hours=1) - busiest
    before = await _counts(connection)
    async with connection.transaction():
        traffic = _TRAFFIC.format(
            busiest=f"'{busiest.isoformat()}'::timestamptz",
            shift=f"interval '{int(shift.total_seconds())} seconds'",
            tag=f"'bench{round_}-{int(time.time())}'",
        )
        for statement in traffic.split(";"):
            if statement.strip():
                await connection.execute(statement)
        for statement in _LATE.split(";"):
            if statement.strip():
                await connection.execute(statement, UNTIL)
    after = await _counts(connection)
    return {name: after[name] - before[name] for name in after}


async def _counts(connection: asyncpg.Connection) -> dict[str, int]:
    row = await connection.fetchrow(
        "SELECT (SELECT count(*) FROM meetings) AS meetings, "
        "(SELECT count(*) FROM participants) AS participants, "
        "(SELECT count(*) FROM recordings) AS recordings, "
        "(SELECT count(*) FROM analytics) AS analytics"
    )
    return {key: int(value) for key, value in row.items()}


async def run(
    url: str, *, repeat: int, anchor_repeat: int, rounds: int, log: Callable[[str], None]
) -> Results:
    """Measure everything on the database at ``url``."""
    from conference import reports
    from conference.db import get_database

    results = Results()
    connection = await asyncpg.connect(url)
    database = get_database()
    await database.start_pool(max_size=4, min_size=1)
    load_before = load_average()
    try:
        results.counts = await _counts(connection)
        log("rebuilding the rollups ...")
        seconds, _ = await _timed(lambda: reports.refresh(rebuild=True))
        results.rebuild_s.append(seconds)
        log(f"rebuilt in {seconds:.1f} s")
        busiest_room = await connection.fetchval(
            "SELECT room_name FROM report_hours WHERE room_name <> '' "
            "GROUP BY 1 ORDER BY sum(participant_us) DESC LIMIT 1"
        )
        start, end = UNTIL - timedelta(days=90), UNTIL
        cases = {
            "90-day daily report, all rooms": None,
            f"90-day daily report, one room ({busiest_room})": busiest_room,
        }

        async def compare() -> None:
            for name, room in cases.items():
                fast = await reports.usage_report(start, end, grain="day", room_name=room)
                assert fast.as_of is not None
                began = time.perf_counter()
                slow = await reports.brute_force_report(
                    start, end, as_of=fast.as_of, grain="day", room_name=room
                )
                slow_s = time.perf_counter() - began
                results.anchor_ms.setdefault(name, []).append(slow_s * 1000)
                results.exact.append(fast.buckets == slow.buckets)
                log(f"{name}: brute force {slow_s * 1000:.0f} ms, equal: {results.exact[-1]}")

        for name, room in cases.items():
            for _ in range(3):  # warm up
                await reports.usage_report(start, end, grain="day", room_name=room)
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                await reports.usage_report(start, end, grain="day", room_name=room)
                times.append((time.perf_counter() - began) * 1000)
            results.report_ms[name] = times
            log(f"{name}: p50 {percentile(times, 0.5):.2f} ms")
        for _ in range(anchor_repeat):
            await compare()

        for round_ in range(rounds):
            traffic = await _add_traffic(connection, round_)
            results.traffic.append(traffic)
            seconds, result = await _timed(reports.refresh)
            results.refresh_s.append(seconds)
            log(f"hour of traffic {traffic}: refresh {seconds:.2f} s ({result.meetings} meetings)")
        await compare()
        seconds, _ = await _timed(lambda: reports.refresh(rebuild=True))
        results.rebuild_s.append(seconds)
        log(f"rebuilt again in {seconds:.1f} s")
        await compare()
        for table in ("report_meetings", "report_hours", "report_event_hours"):
            results.rollup_rows[table] = int(
                await connection.fetchval(f"SELECT count(*) FROM {table}")
            )
        results.counts = await _counts(connection)
        server = await server_facts(connection)
        results.machine = machine_description(server, load_before, load_average())
    finally:
        await database.close_pool()
        await connection.close()
    return results


def prepare_database(data_dir: Path, meetings: int, days: int) -> str:
    """A migrated database in ``data_dir``'s cluster holding ``meetings`` generated meetings."""
    return generated_database(
        data_dir, DATABASE, meetings=meetings, days=days, seed=17, until=UNTIL
    ).url


def _use(url: str) -> None:
    from conference.settings import get_settings

    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.reports``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reports", description=__doc__)
    parser.add_argument("--database-url", help="a loaded database to reuse (not production)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--meetings", type=int, default=24_200, help="to load (~41.5 events each)")
    parser.add_argument("--days", type=int, default=100, help="of history to load")
    parser.add_argument("--repeat", type=int, default=50, help="runs of each rollup report")
    parser.add_argument("--anchor-repeat", type=int, default=3, help="runs of the brute force")
    parser.add_argument("--rounds", type=int, default=3, help="hours of traffic, one refresh each")
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/ alone")
    args = parser.parse_args(argv)

    if args.database_url:
        _use(args.database_url)
        url = args.database_url
    else:
        url = prepare_database(args.data_dir, args.meetings, args.days)
    try:
        results = asyncio.run(
            run(
                url,
                repeat=args.repeat,
                anchor_repeat=args.anchor_repeat,
                rounds=args.rounds,
                log=lambda message: print(message, file=sys.stderr),
            )
        )
    finally:
        if not args.database_url:
            from conference import embedded

            embedded.stop(args.data_dir)
    results.command = "python -m benchmarks.reports " + " ".join(
        argument
        for argument in (argv if argv is not None else sys.argv[1:])
        if not argument.startswith("--database-url")
    )
    section = results.markdown()
    print(section)
    if not args.no_write:
        write_section(section_name(results.counts.get("analytics", 0)), section)
    return 0 if all(results.exact) else 1


def section_name(events: int) -> str:
    """The section of ``docs/benchmarks.md`` for a scale: ``reports-1M``, ``reports-10M``."""
    return f"reports-{max(1, round(events / 1_000_000))}M"


if __name__ == "__main__":
    sys.exit(main())
