"""
Random (v4) against time-ordered (v7) primary keys for ``analytics``:
insert throughput once the key index no longer fits in memory::

    python -m benchmarks.uuid_keys                   # 3M rows per key type, ~10 minutes
    python -m benchmarks.uuid_keys --rows 500000     # a quick look

It starts a throwaway PostgreSQL cluster of its own (``--data-dir``,
default under the system's temporary directory; deleted afterwards unless
``--keep``) with ``shared_buffers`` cut to ``--shared-buffers`` (16MB), so
that the primary key index outgrows the buffer cache early, as a 10M-row
index outgrows a production server's. Two databases get the real schema
(every migration) and differ only in the default of ``analytics.id``:
``gen_random_uuid()`` (v4) or ``uuidv7()`` (v7). Both get the same meetings
and participants (keys from their own defaults), then the same events,
COPYed a batch at a time with the key left to the default, the two
databases taking turns batch by batch so that both grow in step and share
the machine's ups and downs. Each batch's time and WAL volume are
recorded.

It prints a table and writes it to its section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from benchmarks.report import (
    load_average,
    machine_description,
    median,
    server_facts,
    timestamp,
    write_section,
)

SECTION = "uuid_keys"

#: The key defaults compared, by name.
DEFAULTS = {"v4": "gen_random_uuid()", "v7": "uuidv7()"}

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

# A participant_joined body as LiveKit sends it (about 400 bytes).
BODY = (
    '{"event": "participant_joined", "id": "EV_3kQz8mWp1xRt", "createdAt": "1793613600", '
    '"room": {"sid": "RM_Xq7NcV2pL9sK", "name": "platform-standup", "creationTime": '
    '"1793613540", "creationTimeMs": "1793613540123"}, "participant": {"sid": '
    '"PA_7yTb2QwE9rUk", "identity": "alice.martin", "name": "Alice Martin", "state": '
    '"ACTIVE", "joinedAt": "1793613600", "joinedAtMs": "1793613600456"}}'
)
EVENT_TYPES = ("participant_joined", "track_published", "track_unpublished", "participant_left")


@dataclass
class KeyRun:
    """One key type's batches: seconds and WAL bytes each."""

    name: str
    seconds: list[float] = field(default_factory=list)
    wal_bytes: list[int] = field(default_factory=list)
    pkey_bytes: int = 0
    index_bytes: int = 0
    table_bytes: int = 0

    def rate(self, batch_rows: int, batches: slice = slice(None)) -> float:
        """Rows per second over the chosen batches."""
        seconds = sum(self.seconds[batches])
        return batch_rows * len(self.seconds[batches]) / seconds if seconds else 0.0


@dataclass
class UuidReport:
    """Both key types, and how they were measured."""

    rows: int
    batch_rows: int
    shared_buffers: str
    runs: dict[str, KeyRun]
    machine: str = ""
    started: str = ""
    seconds: float = 0.0
    command: str = ""

    @property
    def batches(self) -> int:
        return len(self.runs["v4"].seconds)

    def _rows(self) -> list[tuple[str, str, str, str]]:
        v4, v7 = self.runs["v4"], self.runs["v7"]
        third = max(self.batches // 3, 1)
        last = slice(-third, None)
        mb = 1024 * 1024

        def ratio(a: float, b: float) -> str:
            return f"{a / b:.2f}" if b else "-"

        rows = [
            ("rows/s, all batches", v4.rate(self.batch_rows), v7.rate(self.batch_rows)),
            (
                f"rows/s, last {third} batches",
                v4.rate(self.batch_rows, last),
                v7.rate(self.batch_rows, last),
            ),
            (
                "batch seconds, median of the last third",
                median(v4.seconds[last]),
                median(v7.seconds[last]),
            ),
            (
                "WAL bytes per row",
                sum(v4.wal_bytes) / self.rows,
                sum(v7.wal_bytes) / self.rows,
            ),
            ("primary key index, MB", v4.pkey_bytes / mb, v7.pkey_bytes / mb),
            ("all indexes of analytics, MB", v4.index_bytes / mb, v7.index_bytes / mb),
            ("table (heap), MB", v4.table_bytes / mb, v7.table_bytes / mb),
        ]
        return [
            (
                name,
                f"{a:,.0f}" if a >= 100 else f"{a:,.2f}",
                f"{b:,.0f}" if b >= 100 else f"{b:,.2f}",
                ratio(b, a),
            )
            for name, a, b in rows
        ]

    def table(self) -> str:
        """The results as a text table."""
        rows = [("", "v4 gen_random_uuid()", "v7 uuidv7()", "v7 / v4"), *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        lines.append(
            f"{self.rows:,} rows per key type in batches of {self.batch_rows:,}; "
            f"shared_buffers {self.shared_buffers}"
        )
        return "\n".join(lines)

    def markdown(self) -> str:
        """The section of ``docs/benchmarks.md``."""
        lines = [
            "## Primary keys of analytics: uuidv4 against uuidv7",
            "",
            f"Run {self.started}, {self.seconds:.0f} s: `{self.command}`",
            "",
            f"**Machine.** {self.machine}",
            "",
            "| | v4 `gen_random_uuid()` | v7 `uuidv7()` | v7 / v4 |",
            "|---|--:|--:|--:|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self._rows()]
        lines += [
            "",
            f"**Method.** A throwaway cluster with `shared_buffers` {self.shared_buffers} "
            "(the rest as the embedded server ships), two databases with the real schema "
            "(every migration), differing only in the default of `analytics.id`. Both get "
            "the same meetings and participants, then the same events, "
            f"{self.rows:,} in batches of {self.batch_rows:,}: `copy_records_to_table` "
            "with the key left to the default, each batch its own transaction, the two "
            "databases taking turns batch by batch. Events arrive in time order for the "
            "meetings running at the time, with a 400-byte webhook body and no webhook id. "
            "*Last third*: the batches inserted when the key index was largest. WAL: "
            "`pg_current_wal_lsn()` before and after each batch.",
        ]
        return "\n".join(lines)


# --- The cluster ---------------------------------------------------------------------


def _start_cluster(data_dir: Path, shared_buffers: str) -> str:
    """Start the throwaway cluster with small shared buffers; its ``postgres`` URL."""
    from conference import embedded

    url = embedded.start(data_dir, "postgres")

    async def configure() -> str:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
        finally:
            await connection.close()
        return url

    asyncio.run(configure())
    embedded.stop(data_dir)  # shared_buffers takes a restart
    return embedded.start(data_dir, "postgres")


def _migrate(database_url: str) -> None:
    from tests.support import run_piccolo

    run_piccolo(["migrations", "forwards", "all"], database_url)


# --- The measurement ----------------------------------------------------------------


async def _parents(connection: asyncpg.Connection, meetings: int) -> list[tuple[object, object]]:
    """Meetings, each with two participants, keys from their defaults; (meeting, participant)."""
    await connection.execute(
        """
        INSERT INTO meetings (room_name, created_at, ended_at)
        SELECT 'room-' || g, $1::timestamptz + g * interval '10 seconds',
               $1::timestamptz + g * interval '10 seconds' + interval '30 minutes'
        FROM generate_series(1, $2) AS g
        """,
        START,
        meetings,
    )
    await connection.execute(
        """
        INSERT INTO participants (meeting_id, identity, joined_at)
        SELECT m.id, 'person-' || k, m.created_at FROM meetings AS m, generate_series(1, 2) AS k
        """
    )
    rows = await connection.fetch(
        """
        SELECT m.id AS meeting_id, min(p.id::text)::uuid AS participant_id
        FROM meetings AS m JOIN participants AS p ON p.meeting_id = m.id
        GROUP BY m.id, m.created_at ORDER BY m.created_at
        """
    )
    await connection.execute("VACUUM ANALYZE meetings, participants")
    return [(row["meeting_id"], row["participant_id"]) for row in rows]


def _batch(
    parents: Sequence[tuple[object, object]], number: int, batches: int, rows: int
) -> list[tuple[object, ...]]:
    """Batch ``number``: events of the meetings running at its time, in time order."""
    per_batch = max(len(parents) // batches, 1)
    live = parents[number * per_batch : (number + 1) * per_batch] or parents[-per_batch:]
    moment = START + timedelta(minutes=number)
    return [
        (
            live[i % len(live)][0],
            live[i % len(live)][1],
            EVENT_TYPES[i % len(EVENT_TYPES)],
            BODY,
            moment + timedelta(microseconds=i * 50),
        )
        for i in range(rows)
    ]


async def _measure(
    urls: dict[str, str], rows: int, batch_rows: int, quiet: bool
) -> dict[str, KeyRun]:
    connections = {name: await asyncpg.connect(url) for name, url in urls.items()}
    runs = {name: KeyRun(name) for name in urls}
    try:
        batches = max(rows // batch_rows, 1)
        parents = {}
        for name, connection in connections.items():
            await connection.execute(
                f"ALTER TABLE analytics ALTER COLUMN id SET DEFAULT {DEFAULTS[name]}"
            )
            parents[name] = await _parents(connection, batches * 200)
        columns = ["meeting_id", "participant_id", "event_type", "event_data", "created_at"]
        for number in range(batches):
            # Alternate who goes first, so that neither always follows the other.
            order = list(connections) if number % 2 == 0 else list(reversed(connections))
            for name in order:
                connection = connections[name]
                records = _batch(parents[name], number, batches, batch_rows)
                before = await connection.fetchval("SELECT pg_current_wal_lsn()")
                started = time.perf_counter()
                await connection.copy_records_to_table(
                    "analytics", records=records, columns=columns
                )
                runs[name].seconds.append(time.perf_counter() - started)
                runs[name].wal_bytes.append(
                    int(
                        await connection.fetchval(
                            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", before
                        )
                    )
                )
            if not quiet:
                done = (number + 1) * batch_rows
                print(
                    f"  {done:>10,} rows: "
                    + ", ".join(
                        f"{name} {batch_rows / runs[name].seconds[-1]:,.0f} rows/s"
                        for name in connections
                    ),
                    file=sys.stderr,
                )
        for name, connection in connections.items():
            run = runs[name]
            run.pkey_bytes = await connection.fetchval("SELECT pg_relation_size('analytics_pkey')")
            run.index_bytes = await connection.fetchval("SELECT pg_indexes_size('analytics')")
            run.table_bytes = await connection.fetchval("SELECT pg_relation_size('analytics')")
    finally:
        for connection in connections.values():
            await connection.close()
    return runs


def run_benchmark(
    rows: int = 3_000_000,
    batch_rows: int = 100_000,
    shared_buffers: str = "16MB",
    data_dir: Path | None = None,
    keep: bool = False,
    quiet: bool = False,
) -> UuidReport:
    """
    Start the throwaway cluster, measure both key types, stop it (and
    delete it unless ``keep``).

    :param rows:
        Events per key type.
    :param batch_rows:
        Events per COPY (and transaction).
    :param shared_buffers:
        The cluster's ``shared_buffers``.
    :param data_dir:
        The cluster's directory; default a new temporary one. It must not
        be a cluster of anything else: it is reconfigured (and deleted).
    """
    from conference import embedded
    from conference.engine import create_database_if_missing, with_database

    temporary = data_dir is None
    if data_dir is None:
        parent = Path(tempfile.mkdtemp(prefix="conference-uuid-keys-"))
        parent.chmod(0o755)  # as root, the server runs as a user of its own
        data_dir = parent / "pgdata"
    try:
        server_url = _start_cluster(data_dir, shared_buffers)
        urls = {}
        for name in DEFAULTS:
            database = f"uuid_keys_{name}"
            asyncio.run(_drop(server_url, database))
            asyncio.run(create_database_if_missing(server_url, database))
            urls[name] = with_database(server_url, database)
            _migrate(urls[name])

        async def measure() -> UuidReport:
            connection = await asyncpg.connect(server_url)
            try:
                server = await server_facts(connection)
            finally:
                await connection.close()
            load_before = load_average()
            started = time.perf_counter()
            runs = await _measure(urls, rows, batch_rows, quiet)
            report = UuidReport(
                rows=len(runs["v4"].seconds) * batch_rows,
                batch_rows=batch_rows,
                shared_buffers=shared_buffers,
                runs=runs,
            )
            report.seconds = time.perf_counter() - started
            report.machine = machine_description(server, load_before, load_average())
            return report

        return asyncio.run(measure())
    finally:
        embedded.stop(data_dir)
        if temporary and not keep:
            shutil.rmtree(data_dir.parent, ignore_errors=True)


async def _drop(server_url: str, database: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: prints the table and writes ``docs/benchmarks.md``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.uuid_keys",
        description=(__doc__ or "").split("::")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=3_000_000, help="events per key type")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="events per COPY")
    parser.add_argument("--shared-buffers", default="16MB", help="the cluster's shared_buffers")
    parser.add_argument("--data-dir", type=Path, help="the throwaway cluster's directory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary cluster")
    parser.add_argument(
        "--output", type=Path, help="the Markdown file (default docs/benchmarks.md)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.batch_rows < 1 or args.batch_rows > args.rows:
        parser.error("need 1 <= --batch-rows <= --rows")
    command = "python -m benchmarks.uuid_keys " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    started = timestamp()
    report = run_benchmark(
        args.rows, args.batch_rows, args.shared_buffers, args.data_dir, args.keep, args.quiet
    )
    report.started = started
    report.command = command.strip()
    print(report.table())
    if not args.no_write:
        kwargs = {"path": args.output} if args.output else {}
        write_section(SECTION, report.markdown(), **kwargs)
        print(f"written to {args.output or 'docs/benchmarks.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
