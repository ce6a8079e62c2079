"""The capacity benchmark runs end to end (a tiny run; no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from benchmarks.capacity import run, section_name
from conference import embedded
from tests.support import ROOT


async def test_a_tiny_capacity_run_measures_every_path_and_leaves_the_rows_as_they_were(
    database_url: str, connection: asyncpg.Connection
) -> None:
    report = await run(database_url, events=44, concurrency=2, copy_rows=100, repeat=1)

    assert [path.name for path in report.paths] == [
        "webhook, one by one",
        "webhook, commit_delay",
        "webhook, group commit",
        "copy x1",
        "copy x2",
    ]
    assert all(path.events[0] > 0 and path.seconds[0] > 0 for path in report.paths)
    assert "group commit / one by one" in report.table()
    assert await connection.fetchval("SELECT count(*) FROM analytics") == 0
    assert (
        await connection.fetchval(
            "SELECT count(*) FROM pg_db_role_setting WHERE setdatabase = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        == 0
    )  # commit_delay was reset
    assert section_name(1_040_000) == "capacity-1M" and section_name(10_200_000) == "capacity-10M"


def test_meetings_loads_a_cluster_of_its_own_measures_it_and_stops_it(tmp_path: Path) -> None:
    data_dir, output = tmp_path / "pgdata", tmp_path / "benchmarks.md"
    argv = ["--meetings", "3", "--data-dir", str(data_dir), "--events", "22"]
    argv += ["--concurrency", "2", "--copy-rows", "50", "--repeat", "1", "--output", str(output)]
    ran = subprocess.run(
        [sys.executable, "-m", "benchmarks.capacity", *argv],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert ran.returncode == 0, ran.stderr
    assert "loading 3 meetings" in ran.stderr
    assert "python -m benchmarks.capacity --meetings 3" in output.read_text()
    assert "| webhook, group commit |" in output.read_text()
    assert embedded.running_server(data_dir) is None  # stopped at the end
