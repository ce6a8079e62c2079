"""
A ``piccolo_conf`` for planning migrations without a database, used by
:mod:`conference.migrations.lint` (``PICCOLO_CONF=conference.migrations.offline_conf``):
Piccolo's preview mode needs an engine to exist, never to connect. The apps
are those ``CONFERENCE_LINT_APPS`` names (comma-separated ``piccolo_app``
modules), by default ``conference.piccolo_app``.
"""

import os

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine


class OfflineEngine(PostgresEngine):
    """A PostgreSQL 18 engine that never connects (no version check at start)."""

    async def get_version(self) -> float:
        """The server version planning assumes."""
        return 18.0

    async def prep_database(self) -> None:
        """Nothing to prepare: there is no database."""


#: Never connected: planning only asks Piccolo for SQL.
DB = OfflineEngine(config={"dsn": "postgresql:///planning-only?host=/nonexistent"})

APP_REGISTRY = AppRegistry(
    apps=[
        name.strip()
        for name in os.environ.get("CONFERENCE_LINT_APPS", "conference.piccolo_app").split(",")
        if name.strip()
    ]
)
