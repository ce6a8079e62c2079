"""
Every code block of DATABASE_SETUP.md, and README's "From Python" example,
runs against a real PostgreSQL 18 and does what the text says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from conference.migrations import MIGRATION_LOCK_KEY
from tests.support import ROOT

DATABASE_SETUP = ROOT / "DATABASE_SETUP.md"
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def _blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def _section(path: Path, heading: str) -> str:
    """``heading``'s text (``## X`` or ``### X``) up to the next heading at its level or above."""
    text = path.read_text()
    start = text.index(f"\n{heading}\n")
    level = len(heading.split(" ", 1)[0])
    following = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE)
    end = following.search(text, start + len(heading) + 2)
    return text[start : end.start() if end else None]


def _run(args: list[str], database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_every_code_block_is_one_these_tests_run() -> None:
    languages = sorted(lang for lang, _ in FENCE.findall(DATABASE_SETUP.read_text()))
    # Adding a block? Add it to a test below, then here.
    assert languages == ["dotenv", "python", "python", "python", "python", "sh", "sh", "sql", "sql"]


@pytest.mark.parametrize("block", _blocks(DATABASE_SETUP, "python"), ids=lambda b: b.split()[1])
def test_python_examples_are_the_files_the_tests_run(block: str) -> None:
    header, _, code = block.partition("\n")
    path, _, excerpt = header.removeprefix("# ").partition(" ")
    source = (ROOT / path).read_text()
    if excerpt == "(excerpt)":
        assert code in source
    else:
        assert code == source


async def test_the_setup_sql_and_url_give_a_role_that_can_migrate(server_url: str) -> None:
    create_sql = next(b for b in _blocks(DATABASE_SETUP, "sql") if "CREATE ROLE" in b)
    (env_line,) = _blocks(DATABASE_SETUP, "dotenv")
    suffix = uuid.uuid4().hex[:8]
    role, database = f"conference_{suffix}", f"livekit_conference_{suffix}"

    def ours(text: str) -> str:
        return re.sub(r"\bconference\b", role, text.replace("livekit_conference", database))

    # The documented URL, with the test server's host, port and socket.
    documented = urlsplit(ours(env_line.strip().removeprefix("DATABASE_URL=")))
    server = urlsplit(server_url)
    login = documented.netloc.split("@")[0]
    host = server.netloc.split("@")[-1]
    url = urlunsplit(documented._replace(netloc=f"{login}@{host}", query=server.query))

    admin = await asyncpg.connect(server_url)
    try:
        for statement in ours(create_sql).strip().split(";\n"):
            await admin.execute(statement)
        migrated = _run([sys.executable, "-m", "piccolo.main", "conference", "migrate"], url)
        verified = _run([sys.executable, "-m", "piccolo.main", "conference", "verify"], url)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()

    assert migrated.returncode == 0, migrated.stderr
    assert "applied conference:" in migrated.stdout
    assert verified.returncode == 0, verified.stderr


def test_the_shell_examples_run_in_order(fresh_database_url: str) -> None:
    script = "set -euo pipefail\n" + "\n".join(_blocks(DATABASE_SETUP, "sh"))
    bin_dir = str(Path(sys.executable).parent)
    ran = _run(["bash", "-c", script], fresh_database_url, PATH=f"{bin_dir}:{os.environ['PATH']}")

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "-- dry run:" in ran.stdout
    assert "applied conference:" in ran.stdout
    assert "ok: no pending migrations" in ran.stdout
    assert "nothing to migrate" in ran.stdout  # the last one, with its timeouts


async def test_the_lock_holder_query_finds_the_process_holding_the_lock(
    database_url: str,
) -> None:
    holder_sql = next(b for b in _blocks(DATABASE_SETUP, "sql") if "pg_locks" in b)
    holder = await asyncpg.connect(database_url)
    observer = await asyncpg.connect(database_url)
    try:
        await holder.execute("SET application_name = 'conference migrations'")
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY)
        rows = await observer.fetch(holder_sql)
        assert [(row["pid"], row["application_name"]) for row in rows] == [
            (holder.get_server_pid(), "conference migrations")
        ]
    finally:
        await holder.close()
        await observer.close()


def test_the_readme_example_runs_and_prints_what_it_says(fresh_database_url: str) -> None:
    section = _section(README, "### From Python")
    (example,) = [body for lang, body in FENCE.findall(section) if lang == "python"]

    ran = _run([sys.executable, "-c", example], fresh_database_url)

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["standup ['alice']", "True []"]
    assert "It prints `standup ['alice']` and `True []`." in section
