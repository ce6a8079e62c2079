"""
Schema changes on a large, busy ``analytics``: ``piccolo conference migrate``
against stock ``piccolo migrations forwards``, in the same run::

    python -m benchmarks.migrations                  # 1M analytics rows
    python -m benchmarks.migrations --rows 10000000  # the documented larger run

It starts a cluster of its own (``.local/bench-issue11-pgdata``), builds a
database with the conference schema and ``--rows`` analytics rows (20,000
meetings), and copies it once per runner (``CREATE DATABASE … TEMPLATE``).
On each copy it serves the real app (uvicorn, one worker, ``AUTO_MIGRATE``
off), sends a steady ``--rate`` signed LiveKit webhooks per second (50 room
sessions in parallel, each in order, open loop: a late answer delays the
next ones, and latency counts from when a request was due), runs a probe
that inserts one analytics row every 20 ms, and applies seven migrations one
at a time (``--target`` / ``--migration_id``):

1. ``index=True`` on ``AnalyticsEvent.created_at`` (Piccolo's auto form),
2. a unique index (hand-written),
3. a CHECK constraint, 4. a FOREIGN KEY (hand-written),
5. a nullable column, 6. a column with a constant default (Piccolo's form),
7. a nullable column while a report transaction reads the table and holds
   its lock for 12 s more once the migration's lock request arrives.

Per migration it reports: duration, the longest write stall (the slowest
probe insert while it ran), webhook p99 and max latency, and answers that
were not 200. The figures go to ``docs/benchmarks.md`` (section
``migrations``) with the machine, the load average and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import asyncpg

from benchmarks.report import (
    ROOT,
    load_average,
    machine_description,
    percentile,
    server_facts,
    timestamp,
    write_section,
)
from conference import embedded
from conference.engine import database_name, with_database
from tests import support
from tests.webhook_sessions import API_KEY, API_SECRET, WEBHOOK_ENV, product_sync, sign

DATA_DIR = ROOT / ".local" / "bench-issue11-pgdata"
APP_NAME = "bench_issue11"
MEETINGS = 20_000
LANES = 50
REPORT_SECONDS = 12
PROBE_INTERVAL = 0.02
#: The no-migration window measured first: the floor the machine gives.
BASELINE = "(no migration: the floor)"
BASELINE_SECONDS = 10.0
#: A webhook not answered within this is counted as failed (LiveKit gives up sooner).
REQUEST_TIMEOUT = 30.0
#: Load before and after each migration, so that its effects are seen whole.
SETTLE_BEFORE = 2.0
SETTLE_AFTER = 2.0


@dataclass(frozen=True)
class Change:
    """One benchmark migration: its name and the body of ``forwards()``."""

    name: str
    body: str
    raw: tuple[str, ...] = ()
    report: bool = False


CHANGES = (
    Change(
        "index=True on analytics.created_at",
        """
        manager.alter_column(
            table_class_name="AnalyticsEvent", tablename="analytics",
            column_name="created_at", db_column_name="created_at",
            params={"index": True}, old_params={"index": False},
            column_class=Timestamptz, old_column_class=Timestamptz, schema=None,
        )
        """,
    ),
    Change(
        "unique index (id, created_at)",
        "",
        ("CREATE UNIQUE INDEX analytics_id_created_at ON analytics (id, created_at)",),
    ),
    Change(
        "CHECK constraint",
        "",
        (
            "ALTER TABLE analytics ADD CONSTRAINT analytics_created_before_2100 "
            "CHECK (created_at < '2100-01-01')",
        ),
    ),
    Change(
        "FOREIGN KEY",
        "",
        (
            "ALTER TABLE analytics ADD CONSTRAINT analytics_meeting_id_bench_fkey "
            "FOREIGN KEY (meeting_id) REFERENCES meetings (id)",
        ),
    ),
    Change(
        "nullable column",
        """
        manager.add_column(
            table_class_name="AnalyticsEvent", tablename="analytics",
            column_name="note", db_column_name="note",
            column_class_name="Varchar", column_class=Varchar,
            params={"length": 255, "default": None, "null": True, "primary_key": False,
                    "unique": False, "index": False, "index_method": IndexMethod.btree,
                    "choices": None, "db_column_name": None, "secret": False},
            schema=None,
        )
        """,
    ),
    Change(
        "column with a constant default",
        """
        manager.add_column(
            table_class_name="AnalyticsEvent", tablename="analytics",
            column_name="priority", db_column_name="priority",
            column_class_name="Integer", column_class=Integer,
            params={"default": 0, "null": False, "primary_key": False,
                    "unique": False, "index": False, "index_method": IndexMethod.btree,
                    "choices": None, "db_column_name": None, "secret": False},
            schema=None,
        )
        """,
    ),
    Change(
        f"nullable column, a {REPORT_SECONDS} s report holding the table",
        """
        manager.add_column(
            table_class_name="AnalyticsEvent", tablename="analytics",
            column_name="comment", db_column_name="comment",
            column_class_name="Text", column_class=Text,
            params={"default": None, "null": True, "primary_key": False,
                    "unique": False, "index": False, "index_method": IndexMethod.btree,
                    "choices": None, "db_column_name": None, "secret": False},
            schema=None,
        )
        """,
        report=True,
    ),
)

_MIGRATION = '''\
"""Benchmark migration {number}: {name}."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Integer, Text, Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = {id!r}
VERSION = "1.38.0"
DESCRIPTION = {name!r}
FORWARDS_SQL = {raw!r}


class RawTable(Table):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name={app!r}, description=DESCRIPTION)

    async def run():
        for statement in FORWARDS_SQL:
            await RawTable.raw(statement)

    if FORWARDS_SQL:
        manager.add_raw(run)
{body}
    return manager
'''


def _migration_id(number: int) -> str:
    return f"2031-01-01T00:00:00:{number:06d}"


def write_project(root: Path) -> None:
    """A host project: ``conference`` plus the benchmark's app and migrations."""
    folder = root / APP_NAME / "piccolo_migrations"
    folder.mkdir(parents=True)
    (root / APP_NAME / "__init__.py").write_text("")
    (folder / "__init__.py").write_text("")
    (root / "piccolo_conf.py").write_text(
        "from piccolo.conf.apps import AppRegistry\n"
        "from conference.engine import create_engine\n"
        "DB = create_engine()\n"
        "APP_REGISTRY = AppRegistry(apps=['conference.piccolo_app', "
        "'piccolo.apps.user.piccolo_app', 'piccolo_api.session_auth.piccolo_app', "
        f"'{APP_NAME}.piccolo_app'])\n"
    )
    (root / APP_NAME / "piccolo_app.py").write_text(
        "from pathlib import Path\n"
        "from piccolo.conf.apps import AppConfig\n"
        f"APP_CONFIG = AppConfig(app_name='{APP_NAME}', migrations_folder_path="
        "str(Path(__file__).parent / 'piccolo_migrations'), table_classes=[], "
        "migration_dependencies=['conference.piccolo_app'])\n"
    )
    for number, change in enumerate(CHANGES, start=1):
        migration_id = _migration_id(number)
        module = f"{APP_NAME}_{migration_id.lower().replace('-', '_').replace(':', '_')}"
        body = textwrap.indent(textwrap.dedent(change.body).strip(), "    ") if change.body else ""
        (folder / f"{module}.py").write_text(
            _MIGRATION.format(
                number=number,
                name=change.name,
                id=migration_id,
                raw=list(change.raw),
                app=APP_NAME,
                body=body,
            )
        )


# --- Data ---------------------------------------------------------------------


async def build_template(server_url: str, rows: int, project: Path) -> str:
    """A database with the conference schema and ``rows`` analytics rows."""
    name = f"bench_issue11_template_{rows}"
    admin = await asyncpg.connect(server_url)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            # Kept from an earlier run: bring its schema up to date (new
            # conference migrations must not be measured as the benchmark's).
            for app in ("conference", "user", "session_auth"):
                _piccolo(project, with_database(server_url, name), "migrations", "forwards", app)
            return with_database(server_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}_building"')
        await admin.execute(f'CREATE DATABASE "{name}_building"')
    finally:
        await admin.close()
    url = with_database(server_url, f"{name}_building")
    for app in ("conference", "user", "session_auth"):
        _piccolo(project, url, "migrations", "forwards", app)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO meetings (room_name, created_at) "
            "SELECT 'bench-' || n, now() - interval '30 days' FROM generate_series(1, $1) n",
            MEETINGS,
        )
        done = 0
        while done < rows:
            batch = min(500_000, rows - done)
            await connection.execute(
                """
                WITH ids AS (SELECT array_agg(id) AS a FROM meetings)
                INSERT INTO analytics (meeting_id, event_type, event_data, created_at)
                SELECT ids.a[1 + n % $2], 'track_published', '{}'::jsonb,
                       now() - (n % 2592000) * interval '1 second'
                FROM generate_series($1::bigint, $1::bigint + $3 - 1) n, ids
                """,
                done,
                MEETINGS,
                batch,
            )
            done += batch
            print(f"  {done:,} analytics rows", file=sys.stderr)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}_building" RENAME TO "{name}"')
    finally:
        await admin.close()
    return with_database(server_url, name)


async def copy_database(server_url: str, template_url: str, name: str) -> str:
    """A fresh copy of the template database."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        template = database_name(template_url)
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return with_database(server_url, name)


def _piccolo(project: Path, url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [support.PICCOLO, *args],
        cwd=project,
        env={**os.environ, "DATABASE_URL": url, "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"piccolo {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# --- Load -----------------------------------------------------------------------


@dataclass
class Load:
    """What the webhook lanes and the probe saw, with monotonic times."""

    webhooks: list[tuple[float, float, int]] = field(default_factory=list)  # due, ms, status
    probes: list[tuple[float, float]] = field(default_factory=list)  # started, ms
    stop: bool = False


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int, body: bytes, auth: str
) -> int:
    head = (
        f"POST /webhooks/livekit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/webhook+json\r\n"
        f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode("ascii") + body)
    await writer.drain()
    header = await reader.readuntil(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    length = 0
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _lane(load: Load, port: int, lane: int, rate: float, tag: str) -> None:
    """One room session after another, in order, at ``rate / LANES`` events/s."""
    interval = LANES / rate
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    due = time.monotonic() + lane * interval / LANES
    session = 0
    try:
        while not load.stop:
            session += 1
            for event in product_sync(tag=f"{tag}-{lane}-{session}-"):
                if load.stop:
                    return
                auth = sign(event.body, API_KEY, API_SECRET, ttl=timedelta(minutes=30))
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                try:
                    if connection is None:
                        connection = await asyncio.open_connection("127.0.0.1", port)
                    status = await asyncio.wait_for(
                        _post(*connection, port, event.body.encode(), auth), REQUEST_TIMEOUT
                    )
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                    status = 0  # no answer: counted as not 200
                    if connection is not None:
                        connection[1].close()
                    connection = None
                load.webhooks.append((due, (time.monotonic() - due) * 1000, status))
                due += interval
    finally:
        if connection is not None:
            connection[1].close()


async def _probe(load: Load, url: str) -> None:
    """One analytics insert every 20 ms; each one's duration is a write stall."""
    connection = await asyncpg.connect(url)
    try:
        meeting = await connection.fetchval("SELECT id FROM meetings LIMIT 1")
        while not load.stop:
            started = time.monotonic()
            await connection.execute(
                "INSERT INTO analytics (meeting_id, event_type) VALUES ($1, 'probe')", meeting
            )
            load.probes.append((started, (time.monotonic() - started) * 1000))
            await asyncio.sleep(PROBE_INTERVAL)
    finally:
        await connection.close()


async def _report(url: str) -> None:
    """
    A long report: reads analytics in a transaction, and keeps its ACCESS
    SHARE lock for ``REPORT_SECONDS`` more once the migration's lock request
    arrives (the runners' start-up times differ; the report must outlast both).
    """
    connection = await asyncpg.connect(url)
    watcher = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.fetchval("SELECT count(*) FROM analytics")
            for _ in range(12_000):  # at most 2 minutes
                if await watcher.fetchval(
                    "SELECT EXISTS (SELECT FROM pg_locks WHERE NOT granted AND relation = "
                    "'analytics'::regclass AND mode = 'AccessExclusiveLock')"
                ):
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(REPORT_SECONDS)
    finally:
        await connection.close()
        await watcher.close()


# --- One runner, seven migrations ----------------------------------------------------


@dataclass(frozen=True)
class Row:
    """The figures of one migration under one runner."""

    runner: str
    change: str
    seconds: float
    stall_ms: float
    p99_ms: float
    max_ms: float
    webhooks: int
    not_200: int
    failed: str = ""


def _row(
    runner: str, change: str, load: Load, started: float, ended: float, failed: str = ""
) -> Row:
    """The figures of the load between ``started`` and ``ended`` (±0.5 s)."""
    window = [w for w in load.webhooks if started - 0.5 <= w[0] <= ended + 0.5]
    latencies = [ms for _, ms, _ in window]
    stalls = [ms for at, ms in load.probes if started - 0.5 <= at <= ended + 0.5]
    return Row(
        runner,
        change,
        ended - started,
        max(stalls, default=0.0),
        percentile(latencies, 0.99),
        max(latencies, default=0.0),
        len(window),
        sum(1 for _, _, status in window if status != 200),
        failed,
    )


def _error_line(output: str) -> str:
    """The line of a failed run's output that names the error."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in output.splitlines()]
    named = [line for line in lines if "Error" in line or "error" in line.lower()]
    return (named or [line for line in lines if line] or ["?"])[-1][:160]


def _command(runner: str, number: int) -> list[str]:
    migration = f"{APP_NAME}:{_migration_id(number)}"
    if runner == "conference migrate":
        return ["conference", "migrate", f"--target={migration}"]
    return ["migrations", "forwards", APP_NAME, f"--migration_id={_migration_id(number)}"]


async def run_arm(runner: str, url: str, project: Path, rate: float) -> list[Row]:
    """Serve the app on ``url``, load it, and apply the migrations with ``runner``."""
    rows = []
    with TemporaryDirectory() as state_dir:
        # No rollup timer: its refresh is a long transaction, which every
        # CONCURRENTLY build must wait for (a fact of PostgreSQL, not measured here).
        env = {
            **WEBHOOK_ENV,
            "AUTO_MIGRATE": "false",
            "LOG_LEVEL": "WARNING",
            "REPORTS_REFRESH_INTERVAL": "0",
        }
        server = support.LiveServer(url, env=env, state_dir=Path(state_dir))
        try:
            await asyncio.to_thread(server.wait_until_serving, 120)
            load = Load()
            tag = runner.split()[0]
            tasks = [
                asyncio.ensure_future(_lane(load, server.port, n, rate, tag)) for n in range(LANES)
            ]
            tasks.append(asyncio.ensure_future(_probe(load, url)))
            await asyncio.sleep(5)  # warm up
            # The floor: the same load with no migration running.
            started = time.monotonic()
            await asyncio.sleep(BASELINE_SECONDS)
            rows.append(_row(runner, BASELINE, load, started, time.monotonic()))
            print(f"  {runner}: {rows[-1]}", file=sys.stderr)
            for number, change in enumerate(CHANGES, start=1):
                await asyncio.sleep(SETTLE_BEFORE)
                report = None
                if change.report:
                    report = asyncio.ensure_future(_report(url))
                    await asyncio.sleep(0.5)
                started = time.monotonic()
                failed = ""
                try:
                    await asyncio.to_thread(_piccolo, project, url, *_command(runner, number))
                except RuntimeError as error:
                    failed = _error_line(str(error))
                    print(f"  {runner} failed on {change.name}:\n{error}", file=sys.stderr)
                ended = time.monotonic()
                if report is not None:
                    await report
                await asyncio.sleep(SETTLE_AFTER)
                rows.append(_row(runner, change.name, load, started, ended, failed))
                if failed:
                    # Apply it again, unmeasured, so that the next row is
                    # that migration's alone (an operator would rerun too).
                    await asyncio.to_thread(_piccolo, project, url, *_command(runner, number))
                print(f"  {runner}: {rows[-1]}", file=sys.stderr)
            load.stop = True
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            server.close()
    return rows


def table(rows: list[Row]) -> str:
    """The Markdown table, the two runners side by side per migration."""
    lines = [
        "| migration | runner | duration | longest write stall | webhook p99 | webhook max "
        "| webhooks | not 200 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in [BASELINE, *(change.name for change in CHANGES)]:
        for row in rows:
            if row.change != name:
                continue
            failed = f" (failed: {row.failed})" if row.failed else ""
            lines.append(
                f"| {row.change} | `{row.runner}`{failed} | {row.seconds:.1f} s "
                f"| {row.stall_ms:.0f} ms | {row.p99_ms:.0f} ms | {row.max_ms:.0f} ms "
                f"| {row.webhooks} | {row.not_200} |"
            )
    return "\n".join(lines)


async def main_async(rows: int, rate: float, command: str) -> list[Row]:
    """Build, run both runners, write the section."""
    load_before = load_average()
    server_url = embedded.start(DATA_DIR, "postgres")
    with TemporaryDirectory() as scratch:
        project = Path(scratch) / "project"
        write_project(project)
        print(f"building the template ({rows:,} analytics rows) ...", file=sys.stderr)
        template = await build_template(server_url, rows, project)
        results: list[Row] = []
        for runner in ("conference migrate", "piccolo migrations forwards"):
            name = "bench_issue11_" + runner.split()[0]
            url = await copy_database(server_url, template, name)
            print(f"{runner} ...", file=sys.stderr)
            results.extend(await run_arm(runner, url, project, rate))
        facts_connection = await asyncpg.connect(server_url)
        try:
            server = await server_facts(facts_connection)
        finally:
            await facts_connection.close()
    content = "\n\n".join(
        [
            "## Schema changes under load (issue 11)",
            f"{timestamp()}, `{command}`: {rows:,} analytics rows, {rate:g} signed webhooks/s "
            f"against the app (uvicorn, one worker) in {LANES} ordered room sessions, a probe "
            f"inserting one analytics row every {PROBE_INTERVAL * 1000:.0f} ms. Each migration "
            "applied alone; figures are for the time it ran (±0.5 s). Longest write stall: the "
            "slowest probe insert. Webhook latency counts from when the request was due.",
            table(results),
            machine_description(server, load_before, load_average()),
        ]
    )
    write_section("migrations", content)
    print(table(results))
    return results


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0].strip())
    parser.add_argument("--rows", type=int, default=1_000_000, help="analytics rows")
    parser.add_argument("--rate", type=float, default=100.0, help="webhooks per second")
    parser.add_argument("--stop", action="store_true", help="stop the benchmark cluster afterwards")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.migrations" + " ".join(
        [""] + [f"--rows {args.rows}"] * (args.rows != 1_000_000)
    )
    try:
        asyncio.run(main_async(args.rows, args.rate, command))
    finally:
        if args.stop:
            embedded.stop(DATA_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
