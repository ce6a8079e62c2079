"""
Batched backfills: change many rows of a live table in short transactions,
so that no transaction holds row locks (or a snapshot) for long.

Use it from a raw step, a script or a deploy hook — the expand/contract
recipes of :mod:`conference.migrations.safety` need it between "add the new
column" and "switch readers"::

    from conference.migrations import backfill

    await backfill(
        "analytics",
        set_sql="event_kind = split_part(event_type, '_', 1)",
        where_sql="event_kind IS NULL",
    )

Each batch picks up to ``batch_size`` rows by primary key
(``WHERE <where> ORDER BY pk LIMIT n``, with ``FOR UPDATE SKIP LOCKED`` so it
never waits on a writer), updates them, and commits; it runs until a batch
updates nothing. ``where_sql`` must stop matching a row once it is updated,
or the backfill never ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from conference.db import Database, get_database

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillResult:
    """How many rows a :func:`backfill` changed, in how many batches and how long."""

    rows: int
    batches: int
    duration_ms: float


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def backfill(
    table: str,
    *,
    set_sql: str,
    where_sql: str,
    key: str = "id",
    batch_size: int = 5000,
    pause: float = 0.05,
    statement_timeout: float = 30.0,
    database: Database | None = None,
) -> BackfillResult:
    """
    ``UPDATE table SET <set_sql> WHERE <where_sql>`` in batches of
    ``batch_size`` rows, each in a transaction of its own, pausing
    ``pause`` seconds between batches (replication and vacuum keep up).

    :param table: the table (a trusted name from the migration, not input).
    :param set_sql: the SET clause, e.g. ``"new_col = old_col::bigint"``.
    :param where_sql: the rows still to do, e.g. ``"new_col IS NULL"``.
    :param key: the primary key column.
    :param statement_timeout: per batch, in seconds; a batch that takes
        longer fails rather than hold its locks.
    :param database: a :class:`conference.db.Database`; default the
        process's (``conference.db.get_database()``).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    database = database or get_database()
    quoted, pk = _quote(table), _quote(key)
    sql = (
        f"WITH batch AS (SELECT {pk} FROM {quoted} WHERE {where_sql} "
        f"ORDER BY {pk} LIMIT {int(batch_size)} FOR UPDATE SKIP LOCKED) "
        f"UPDATE {quoted} AS t SET {set_sql} FROM batch WHERE t.{pk} = batch.{pk}"
    )
    started = time.perf_counter()
    rows = batches = 0
    while True:
        async with database.transaction(), database.connection() as connection:
            await connection.execute(
                f"SET LOCAL statement_timeout = '{round(statement_timeout * 1000)}ms'"
            )
            status = await connection.execute(sql)
        changed = int(str(status).rsplit(" ", 1)[-1])
        if changed == 0:
            break
        rows += changed
        batches += 1
        logger.info("backfill %s: %d rows so far (%d batches)", table, rows, batches)
        await asyncio.sleep(pause)
    return BackfillResult(rows, batches, (time.perf_counter() - started) * 1000)
