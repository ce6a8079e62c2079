"""The capacity benchmark runs end to end (a tiny run; no timing asserted)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from benchmarks.capacity import CapacityReport, IngestPath, _levels, run, section_name
from conference import embedded
from tests.support import ROOT


async def test_a_tiny_capacity_run_measures_every_path_and_leaves_the_rows_as_they_were(
    database_url: str, connection: asyncpg.Connection
) -> None:
    report = await run(database_url, events=44, sessions=(1, 2), copy_rows=100, repeat=1)

    assert [(path.name, path.sessions) for path in report.paths] == [
        ("webhook, one by one", 1),
        ("webhook, commit_delay", 1),
        ("webhook, group commit", 1),
        ("webhook, one by one", 2),
        ("webhook, commit_delay", 2),
        ("webhook, group commit", 2),
        ("copy x1", None),
        ("copy x2", None),
    ]
    assert all(path.events[0] > 0 and path.seconds[0] > 0 for path in report.paths)
    assert "at saturation" in report.table() and "2 sessions: group commit" in report.table()
    assert await connection.fetchval("SELECT count(*) FROM analytics") == 0
    assert (
        await connection.fetchval(
            "SELECT count(*) FROM pg_db_role_setting WHERE setdatabase = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        == 0
    )  # commit_delay was reset
    assert section_name(1_040_000) == "capacity-1M" and section_name(10_200_000) == "capacity-10M"


def _path(name: str, sessions: int | None, *rates: float) -> IngestPath:
    return IngestPath(
        name, "", sessions, events=[int(r) for r in rates], seconds=[1.0] * len(rates)
    )


def test_saturation_pairs_each_run_s_best_number_of_sessions() -> None:
    report = CapacityReport(
        [
            _path("webhook, one by one", 32, 100, 300),
            _path("webhook, group commit", 32, 200, 400),
            _path("webhook, one by one", 128, 200, 100),
            _path("webhook, group commit", 128, 800, 900),
            _path("copy x1", None, 1000, 3000),
        ],
        sessions=(32, 128),
    )

    # Run 1: 800 / 200; run 2: 900 / 300. Not 850 / 200 from the medians.
    assert report.rates("webhook, group commit") == [800, 900]
    assert report.ratio("webhook, group commit", "webhook, one by one") == (4.0 + 3.0) / 2
    assert report.ratio("webhook, group commit", "copy x1") == (0.8 + 0.3) / 2
    assert report.ratio("webhook, group commit", "webhook, one by one", 32) == (2 + 4 / 3) / 2


def test_sessions_are_numbers_of_at_least_one() -> None:
    assert _levels("32,128") == (32, 128) and _levels("8") == (8,) and _levels("4,4") == (4,)
    for bad in ("", "0", "a,b", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            _levels(bad)


def test_meetings_loads_a_cluster_of_its_own_measures_it_and_stops_it(tmp_path: Path) -> None:
    data_dir, output = tmp_path / "pgdata", tmp_path / "benchmarks.md"
    argv = ["--meetings", "3", "--data-dir", str(data_dir), "--events", "22"]
    argv += ["--sessions", "2", "--copy-rows", "50", "--repeat", "1", "--output", str(output)]
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
