"""
Indexes for the query catalogue (``conference/queries.py``), hand-written:
Piccolo columns declare single-column, full-table indexes only, and these
are a three-column index, a partial index and a replacement.

- ``analytics (meeting_id, created_at, id)`` replaces
  ``analytics (meeting_id, created_at)``: the timeline's keyset
  (``(created_at, id) > (…)``) and its ``ORDER BY created_at, id`` come
  straight from the index, with no sort. Same number of indexes on the
  hottest table, so bulk inserts pay nothing more.
- ``meetings (created_at) WHERE ended_at IS NULL``: the running meetings,
  newest first. It holds only meetings in progress, so it stays tiny
  however many have ended.
- ``recordings (status, started_at, id)``: recordings in one status,
  newest first, a keyset page at a time.

On a large live ``analytics`` the new index takes a while to build and
blocks writes to the table meanwhile (raw steps run in the migration's
transaction, so not ``CONCURRENTLY``). To avoid that, build it first with
``CREATE INDEX CONCURRENTLY analytics_meeting_id_created_at_id ON analytics
(meeting_id, created_at, id)``; the ``IF NOT EXISTS`` below then skips it.

The SQL lives in ``FORWARDS_SQL`` / ``BACKWARDS_SQL`` so that a dry run can
print it without running it.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-30T06:19:53:959085"
VERSION = "1.38.0"
DESCRIPTION = "indexes for the query catalogue (builds an index on analytics)"

FORWARDS_SQL = [
    "CREATE INDEX IF NOT EXISTS analytics_meeting_id_created_at_id "
    "ON analytics (meeting_id, created_at, id)",
    "DROP INDEX IF EXISTS analytics_meeting_id_created_at",
    "CREATE INDEX IF NOT EXISTS meetings_active_created_at "
    "ON meetings (created_at) WHERE ended_at IS NULL",
    "CREATE INDEX IF NOT EXISTS recordings_status_started_at_id "
    "ON recordings (status, started_at, id)",
]

BACKWARDS_SQL = [
    "DROP INDEX IF EXISTS recordings_status_started_at_id",
    "DROP INDEX IF EXISTS meetings_active_created_at",
    "CREATE INDEX IF NOT EXISTS analytics_meeting_id_created_at "
    "ON analytics (meeting_id, created_at)",
    "DROP INDEX IF EXISTS analytics_meeting_id_created_at_id",
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
