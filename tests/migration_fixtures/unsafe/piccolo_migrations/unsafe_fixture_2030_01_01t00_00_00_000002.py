"""Deliberately unsafe: a required column on an existing (populated) table."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2030-01-01T00:00:00:000002"
VERSION = "1.38.0"
DESCRIPTION = "gadgets get a required weight"

FORWARDS_SQL = ["ALTER TABLE fixture_gadgets ADD COLUMN weight bigint NOT NULL"]


class RawTable(Table):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="unsafe_fixture", description=DESCRIPTION)

    async def run():
        for statement in FORWARDS_SQL:
            await RawTable.raw(statement)

    manager.add_raw(run)
    return manager
