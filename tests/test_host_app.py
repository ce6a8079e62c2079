"""
A host application in ``tests/host_app`` (its own ``piccolo_conf.py`` with
``conference.piccolo_app`` and its own ``notes`` app) migrates, serves and
queries through the public API, in a process of its own, as in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.support import PICCOLO

HOST_APP = Path(__file__).parent / "host_app"
INJECTION = "'); DROP TABLE host_notes; --"


def _run(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in the host app's directory, where its piccolo_conf.py is."""
    return subprocess.run(
        args,
        cwd=HOST_APP,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "PICCOLO_CONF": "piccolo_conf",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_a_host_app_migrates_on_startup_and_queries_through_the_public_api(
    fresh_database_url: str,
) -> None:
    ran = _run([sys.executable, "exercise.py"], fresh_database_url)
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)

    status, ready = seen["ready"]
    assert status == 200, ready
    assert ready["ok"] is True and ready["pending_migrations"] == []
    assert ready["server_version"].startswith("18")

    status, created = seen["created"]
    assert (status, created["notes"]) == (201, 1)

    status, rejected = seen["rejected"]
    assert status == 400
    assert 'check constraint "meetings_room_name_not_blank" on meetings' in rejected["error"]

    connection = await asyncpg.connect(fresh_database_url)
    try:
        ledger = await connection.fetch("SELECT app_name, name FROM migration")
        notes = await connection.fetch(
            "SELECT n.text, m.room_name FROM host_notes n JOIN meetings m ON m.id = n.meeting"
        )
    finally:
        await connection.close()
    # The host's registry, not conference's: conference and notes, no users.
    assert {row["app_name"] for row in ledger} == {"conference", "notes"}
    assert [tuple(row) for row in notes] == [(INJECTION, "standup")]


async def test_a_host_app_gets_the_conference_commands(fresh_database_url: str) -> None:
    migrated = _run([PICCOLO, "conference", "migrate"], fresh_database_url)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied notes:" in migrated.stdout

    verified = _run([PICCOLO, "conference", "verify"], fresh_database_url)
    assert verified.returncode == 0, verified.stderr
