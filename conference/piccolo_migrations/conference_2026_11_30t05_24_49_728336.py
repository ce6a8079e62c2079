"""
Composite indexes, hand-written: Piccolo columns declare single-column
indexes only, and these serve the two hottest query shapes.

- ``participants (meeting_id, left_at)``: who is still in a meeting
  (``WHERE meeting_id = $1 AND left_at IS NULL``).
- ``analytics (meeting_id, created_at)``: a meeting's event timeline in a
  time range, in order.

The SQL lives in ``FORWARDS_SQL`` / ``BACKWARDS_SQL`` so that a dry run can
print it without running it.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-30T05:24:49:728336"
VERSION = "1.38.0"
DESCRIPTION = "composite indexes"

FORWARDS_SQL = [
    "CREATE INDEX participants_meeting_id_left_at "
    "ON participants (meeting_id, left_at)",
    "CREATE INDEX analytics_meeting_id_created_at "
    "ON analytics (meeting_id, created_at)",
]

BACKWARDS_SQL = [
    "DROP INDEX IF EXISTS analytics_meeting_id_created_at",
    "DROP INDEX IF EXISTS participants_meeting_id_left_at",
]


class RawTable(Table):
    """Runs raw SQL inside the migration's transaction."""


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="conference", description=DESCRIPTION
    )

    async def run():
        for statement in FORWARDS_SQL:
            await RawTable.raw(statement)

    async def run_backwards():
        for statement in BACKWARDS_SQL:
            await RawTable.raw(statement)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)

    return manager
