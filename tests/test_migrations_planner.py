"""
The planner (``conference.migrations.planner``) and the refusal rules
(``conference.migrations.safety``), as data: what a migration's SQL becomes
on tables that exist and on tables it creates. No database needed; the
runner's tests (tests/test_migrations.py) run these plans on PostgreSQL 18.
And ``conference.migrations.backfill`` on the session database.
"""

from __future__ import annotations

import types
from pathlib import Path

import asyncpg
import pytest

from conference.errors import MigrationError
from conference.migrations import backfill
from conference.migrations.ledger import MigrationFile
from conference.migrations.planner import Catalog, MigrationPlan, plan_migration
from conference.migrations.safety import acknowledgements

EXISTING = Catalog(frozenset({"analytics", "meetings"}))


def _plan(statements: list[str], catalog: Catalog = EXISTING, **acknowledged: str) -> MigrationPlan:
    module = types.ModuleType("scratch_migration")
    file = MigrationFile("scratch", "2030-01-01T00:00:00:000001", "", Path("x.py"), module)
    return plan_migration(
        file, statements, catalog, {k.replace("__", " "): v for k, v in acknowledged.items()}
    )


def _sql(plan: MigrationPlan) -> list[list[str]]:
    return [[statement.sql for statement in step.statements] for step in plan.steps]


def test_an_index_on_an_existing_table_is_built_concurrently_outside_the_transaction() -> None:
    plan = _plan(['CREATE INDEX analytics_created_at ON "analytics" USING btree ("created_at")'])

    first = plan.steps[0]
    assert first.statements[0].sql == (
        "CREATE INDEX CONCURRENTLY analytics_created_at ON analytics (created_at)"
    )
    assert not first.transactional and first.builds_index == "analytics_created_at"
    assert plan.steps[-1].records_ledger and plan.refusals == []


def test_a_table_created_by_the_migration_needs_nothing_special() -> None:
    plan = _plan(
        [
            "CREATE TABLE widgets (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int)",
            "CREATE INDEX widgets_n ON widgets (n)",
            "ALTER TABLE widgets ADD CONSTRAINT widgets_n_positive CHECK (n > 0)",
            "ALTER TABLE widgets ADD COLUMN m int UNIQUE",
        ]
    )

    assert len(plan.steps) == 1 and plan.steps[0].transactional
    assert plan.steps[0].records_ledger
    assert "CONCURRENTLY" not in str(_sql(plan)) and "NOT VALID" not in str(_sql(plan))


def test_unique_check_and_foreign_key_on_an_existing_table_take_the_non_blocking_route() -> None:
    plan = _plan(
        [
            'ALTER TABLE "analytics" ADD COLUMN "room_sid" VARCHAR(255) UNIQUE DEFAULT null',
            'ALTER TABLE "analytics" ADD COLUMN "meeting" UUID REFERENCES "meetings" ("id") '
            "ON DELETE CASCADE DEFAULT null",
            "ALTER TABLE analytics ADD CONSTRAINT analytics_room_sid_not_blank "
            "CHECK (btrim(room_sid) <> '')",
        ]
    )
    flat = [sql for step in _sql(plan) for sql in step]

    assert flat[0] == "ALTER TABLE analytics ADD COLUMN room_sid varchar(255) DEFAULT NULL"
    assert flat[1] == (
        'CREATE UNIQUE INDEX CONCURRENTLY "analytics_room_sid_key" ON "analytics" ("room_sid")'
    )
    assert 'ADD CONSTRAINT "analytics_room_sid_key" UNIQUE USING INDEX' in flat[2]
    assert any(
        'FOREIGN KEY ("meeting") REFERENCES meetings (id) ON DELETE CASCADE NOT VALID' in s
        for s in flat
    )
    assert any(s.endswith("CHECK (btrim(room_sid) <> '') NOT VALID") for s in flat)
    validations = [s for s in plan.steps if s.statements and "VALIDATE" in s.statements[0].sql]
    assert len(validations) == 2
    assert all(step.transactional and step.waits_without_blocking for step in validations)
    assert plan.steps[-1].records_ledger and not plan.steps[-1].statements


@pytest.mark.parametrize(
    ("statement", "key"),
    [
        (
            "ALTER TABLE analytics ALTER COLUMN event_type TYPE text",
            "alter_column_type analytics.event_type",
        ),
        ("ALTER TABLE analytics ALTER COLUMN kind SET NOT NULL", "set_not_null analytics.kind"),
        (
            "ALTER TABLE analytics ADD COLUMN token uuid DEFAULT gen_random_uuid()",
            "volatile_default analytics.token",
        ),
        ("ALTER TABLE analytics DROP COLUMN event_data", "drop_column analytics.event_data"),
        (
            "ALTER TABLE analytics RENAME COLUMN event_data TO payload",
            "rename_column analytics.event_data",
        ),
        ("DROP TABLE meetings", "drop_table meetings"),
        ("ALTER TABLE meetings RENAME TO rooms", "rename_table meetings"),
        ("ALTER TABLE meetings ADD CHECK (ended_at > created_at)", "unnamed_constraint meetings"),
    ],
)
def test_unsafe_operations_on_existing_tables_are_refused_until_acknowledged(
    statement: str, key: str
) -> None:
    refused = _plan([statement])
    assert [refusal.key for refusal in refused.refusals] == [key]
    assert "safe recipe" in refused.refusals[0].describe()

    allowed = _plan(
        [statement], **{key.replace(" ", "__"): "the table is empty in every deployment"}
    )
    assert allowed.refusals == []
    assert any("acknowledged" in s.safety for step in allowed.steps for s in step.statements)


def test_set_not_null_passes_once_a_validated_check_proves_it() -> None:
    catalog = Catalog(EXISTING.tables, frozenset({("analytics", "kind")}))
    plan = _plan(["ALTER TABLE analytics ALTER COLUMN kind SET NOT NULL"], catalog)
    assert plan.refusals == []


def test_a_constant_default_and_dropping_an_index_are_safe() -> None:
    plan = _plan(
        [
            "ALTER TABLE analytics ADD COLUMN source text DEFAULT 'webhook'",
            "ALTER TABLE analytics ADD COLUMN seen_at timestamptz DEFAULT now()",
            "DROP INDEX analytics_event_type",
        ]
    )
    assert plan.refusals == []
    assert _sql(plan)[-2] == ["DROP INDEX CONCURRENTLY IF EXISTS analytics_event_type"]


def test_an_acknowledgement_needs_a_known_rule_and_a_reason() -> None:
    module = types.ModuleType("m")
    module.ACKNOWLEDGE_UNSAFE = {"drop_column analytics.x": " "}  # type: ignore[attr-defined]
    with pytest.raises(MigrationError, match="needs a reason"):
        acknowledgements(module)
    module.ACKNOWLEDGE_UNSAFE = {"nuke analytics": "why not"}  # type: ignore[attr-defined]
    with pytest.raises(MigrationError, match="is not '<rule> <table>"):
        acknowledgements(module)


def test_step_keys_do_not_depend_on_step_numbers() -> None:
    # Piccolo orders a migration's tables differently from one process to
    # the next; a resumed run recognises steps by what they do.
    one = _plan(["CREATE INDEX a_x ON analytics (x)", "CREATE INDEX m_y ON meetings (y)"])
    two = _plan(["CREATE INDEX m_y ON meetings (y)", "CREATE INDEX a_x ON analytics (x)"])
    assert one.step_keys == two.step_keys


async def test_backfill_updates_every_matching_row_in_short_batches(
    connection: asyncpg.Connection,
) -> None:
    meeting = await connection.fetchval(
        "INSERT INTO meetings (room_name) VALUES ('backfill') RETURNING id"
    )
    await connection.execute(
        "INSERT INTO analytics (meeting_id, event_type) "
        "SELECT $1, 'old_kind' FROM generate_series(1, 250)",
        meeting,
    )

    result = await backfill(
        "analytics",
        set_sql="event_type = 'new_kind'",
        where_sql="event_type = 'old_kind'",
        batch_size=100,
        pause=0,
    )

    assert (result.rows, result.batches) == (250, 3)
    assert (
        await connection.fetchval("SELECT count(*) FROM analytics WHERE event_type = 'new_kind'")
        == 250
    )


def test_a_reversal_drops_what_the_migration_added_without_a_refusal() -> None:
    module = types.ModuleType("scratch_migration")
    file = MigrationFile("scratch", "2030-01-01T00:00:00:000001", "", Path("x.py"), module)
    statements = ["ALTER TABLE analytics DROP COLUMN note", "DROP INDEX analytics_note"]

    plan = plan_migration(file, statements, EXISTING, {}, backwards=True)

    assert plan.refusals == [] and plan.backwards
    assert _sql(plan)[1] == ["DROP INDEX CONCURRENTLY IF EXISTS analytics_note"]
    assert (
        "reverses the migration (drop_column analytics.note)" in plan.steps[0].statements[0].safety
    )
