"""
The database development data is written to: which one it is, whether it
may be written at all (:func:`ensure_not_production`), and the conference
tables' rows, emptied or counted.

The tables are :data:`conference.tables.TABLES`, parents first; every list
here is derived from it, so a new LiveKit table needs no edit in this
package beyond the rows that fill it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from piccolo.table import Table

from conference.db import Database
from conference.errors import ProductionDatabaseError
from conference.settings import Settings, get_settings
from conference.tables import TABLES

RowT = TypeVar("RowT")


def table_names() -> list[str]:
    """The conference tables' names, parents first (the order to insert in)."""
    return [table._meta.tablename for table in TABLES]


@dataclass
class TableRows(Generic[RowT]):
    """
    Rows to write, one list per conference table; each field is named as
    its table. :meth:`by_table` follows :data:`~conference.tables.TABLES`.
    """

    meetings: list[RowT] = field(default_factory=list)
    participants: list[RowT] = field(default_factory=list)
    recordings: list[RowT] = field(default_factory=list)
    analytics: list[RowT] = field(default_factory=list)

    def by_table(self) -> list[tuple[type[Table], list[RowT]]]:
        """``(table, rows)``, parents before children (the order to insert in)."""
        return [(table, getattr(self, table._meta.tablename)) for table in TABLES]

    def counts(self) -> dict[str, int]:
        """Rows per table name."""
        return {table._meta.tablename: len(rows) for table, rows in self.by_table()}


def truncate_sql() -> str:
    """
    ``TRUNCATE`` of the conference tables, children first. Without
    ``CASCADE``: a table of another app that references them makes it fail
    instead of being emptied too. Transactional in PostgreSQL: a rollback
    brings the rows back.
    """
    return "TRUNCATE " + ", ".join(reversed(table_names()))


async def current_database(database: Database) -> str:
    """The name of the database ``database`` connects to."""
    rows = await database.query("SELECT current_database() AS name")
    return str(rows[0]["name"])


async def count_rows(database: Database) -> dict[str, int]:
    """Rows per conference table, by table name, parents first; one statement."""
    selects = ", ".join(f"(SELECT count(*) FROM {name}) AS {name}" for name in table_names())
    rows = await database.query(f"SELECT {selects}")
    return {name: int(value) for name, value in rows[0].items()}


def ensure_not_production(
    database: str, action: str, force: bool = False, settings: Settings | None = None
) -> None:
    """
    Raise :class:`~conference.errors.ProductionDatabaseError` if
    ``database`` looks like production: its name contains ``prod`` (any
    case), or ``CONFERENCE_ENV=production``. ``force=True`` skips the check.

    :param database:
        The database's name (:func:`current_database`).
    :param action:
        What would happen to it, for the message: ``"wipe and seed"``.
    """
    if force:
        return
    settings = settings or get_settings()
    reasons = []
    if settings.production:
        reasons.append("CONFERENCE_ENV is 'production'")
    if "prod" in database.lower():
        reasons.append(f"its name {database!r} contains 'prod'")
    if reasons:
        raise ProductionDatabaseError(
            f"refusing to {action} database {database!r}: it looks like production "
            f"({' and '.join(reasons)}). If it really is a development or throwaway "
            "database, run again with --force (force=True from Python)"
        )
