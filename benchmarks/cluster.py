"""
A benchmark's own data: an embedded PostgreSQL 18 cluster in a directory of
its own, a migrated database on it, and generated meetings loaded once and
kept between runs (loading millions of rows takes far longer than measuring).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from piccolo.utils.sync import run_sync

ROOT = Path(__file__).resolve().parent.parent
PICCOLO = str(Path(sys.executable).parent / "piccolo")


@dataclass(frozen=True)
class GeneratedDatabase:
    server_url: str  # the cluster's maintenance database
    url: str  # the loaded database, now also DATABASE_URL of this process


def generated_database(
    data_dir: Path, database: str, *, meetings: int, days: int, seed: int, until: datetime
) -> GeneratedDatabase:
    """
    Start the cluster in ``data_dir`` (initialising it if needed), migrate
    ``database`` with the real ``piccolo`` CLI, and load ``meetings``
    generated meetings unless it already holds exactly that many. The same
    arguments always give the same rows.
    """
    from conference import embedded
    from conference.devdata.generate import generate
    from conference.engine import create_database_if_missing, with_database
    from conference.settings import get_settings

    server_url = embedded.start(data_dir, "postgres")
    run_sync(create_database_if_missing(server_url, database))
    url = with_database(server_url, database)
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    migrated = subprocess.run(
        [PICCOLO, "migrations", "forwards", "all"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
    )
    if migrated.returncode != 0:
        raise RuntimeError(f"piccolo migrations forwards all failed:\n{migrated.stderr}")

    async def loaded() -> int:
        connection = await asyncpg.connect(url)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM meetings"))
        finally:
            await connection.close()

    present = run_sync(loaded())
    if present != meetings:
        print(f"loading {meetings:,} meetings over {days} days ...", file=sys.stderr)
        # A different scale was loaded before: replace it (a benchmark's own database).
        result = run_sync(
            generate(meetings, seed, days=days, until=until, replace=present > 0, force=present > 0)
        )
        print(f"loaded in {result.seconds:.0f} s: {result.counts}", file=sys.stderr)
    return GeneratedDatabase(server_url=server_url, url=url)
