"""
The conference migrations go forwards and backwards on a real PostgreSQL 18,
through the real ``piccolo`` CLI, and agree with the models.
"""

from __future__ import annotations

import asyncpg
from piccolo.apps.migrations.commands.new import AutoMigrationManager

from conference.piccolo_app import APP_CONFIG
from tests.support import (
    CONFERENCE_TABLES,
    catalog_snapshot,
    conference_migration_ids,
    run_piccolo,
)


def _without_conference_objects(snapshot: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    # A serial column's sequence is a relation of its own: "<table>_id_seq".
    sequences = tuple(f"{table}_" for table in CONFERENCE_TABLES)
    return [
        row
        for row in snapshot
        if row[1] not in CONFERENCE_TABLES and not row[1].startswith(sequences)
    ]


async def _ledger(database_url: str, app_name: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT name FROM migration WHERE app_name = $1 ORDER BY name", app_name
        )
    finally:
        await connection.close()
    return [row["name"] for row in rows]


async def test_backwards_all_leaves_no_conference_objects_and_forwards_restores_them(
    fresh_database_url: str,
) -> None:
    run_piccolo(["migrations", "forwards", "all"], fresh_database_url)
    first = await catalog_snapshot(fresh_database_url)
    assert {row[2] for row in first if row[0] == "relation"} >= set(CONFERENCE_TABLES)

    run_piccolo(
        ["migrations", "backwards", "conference", "--migration_id=all", "--auto_agree"],
        fresh_database_url,
    )
    after_backwards = await catalog_snapshot(fresh_database_url)
    # Exactly the conference objects are gone; users, sessions and the
    # migration ledger are untouched.
    assert after_backwards == _without_conference_objects(first)
    leftovers = [
        row for row in after_backwards if any(table in row[2] for table in CONFERENCE_TABLES)
    ]
    assert leftovers == []
    assert await _ledger(fresh_database_url, "conference") == []

    run_piccolo(["migrations", "forwards", "all"], fresh_database_url)
    assert await catalog_snapshot(fresh_database_url) == first


async def test_every_migration_steps_forwards_and_backwards_one_at_a_time(
    fresh_database_url: str,
) -> None:
    # The auth apps first, so that each snapshot differs by one migration.
    run_piccolo(["migrations", "forwards", "user"], fresh_database_url)
    run_piccolo(["migrations", "forwards", "session_auth"], fresh_database_url)
    before = await catalog_snapshot(fresh_database_url)

    ids = conference_migration_ids()
    assert len(ids) >= 2
    for migration_id in ids:
        run_piccolo(
            ["migrations", "forwards", "conference", f"--migration_id={migration_id}"],
            fresh_database_url,
        )
        after = await catalog_snapshot(fresh_database_url)
        assert after != before, f"{migration_id} changed nothing"
        assert (await _ledger(fresh_database_url, "conference"))[-1] == migration_id

        run_piccolo(
            [
                "migrations",
                "backwards",
                "conference",
                f"--migration_id={migration_id}",
                "--auto_agree",
            ],
            fresh_database_url,
        )
        assert await catalog_snapshot(fresh_database_url) == before, (
            f"backwards {migration_id} did not restore the previous schema"
        )
        assert migration_id not in await _ledger(fresh_database_url, "conference")

        run_piccolo(
            ["migrations", "forwards", "conference", f"--migration_id={migration_id}"],
            fresh_database_url,
        )
        assert await catalog_snapshot(fresh_database_url) == after
        before = after


async def test_auto_migration_on_committed_code_finds_no_changes() -> None:
    # What `piccolo migrations new conference --auto` computes, without
    # writing a file if it did find something.
    alter_statements = await AutoMigrationManager().get_alter_statements(APP_CONFIG)
    pending = [s for group in alter_statements for s in group.statements]
    assert pending == [], f"models and migrations disagree: {pending}"
