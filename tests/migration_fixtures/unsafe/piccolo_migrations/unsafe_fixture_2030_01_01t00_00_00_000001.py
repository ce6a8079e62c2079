"""A new table: safe, needs nothing."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2030-01-01T00:00:00:000001"
VERSION = "1.38.0"
DESCRIPTION = "gadgets"

FORWARDS_SQL = ["CREATE TABLE fixture_gadgets (id bigint PRIMARY KEY, name text)"]


class RawTable(Table):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="unsafe_fixture", description=DESCRIPTION)

    async def run():
        for statement in FORWARDS_SQL:
            await RawTable.raw(statement)

    manager.add_raw(run)
    return manager
