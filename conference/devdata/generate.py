"""
Synthetic conference data at scale, for benchmarks and demos: the rows of
:class:`~conference.devdata.synthetic.SyntheticData` streamed into
PostgreSQL with ``COPY`` (asyncpg ``copy_records_to_table``).

:func:`generate` loads over two connections, one transaction
(:meth:`conference.db.Database.transaction`) per batch of whole meetings,
while a worker thread invents the next batch; memory stays at a few batches
(about 250 MB with the default batch size), however many meetings. It takes
the same optional ``database`` as :mod:`conference.queries` and
:mod:`conference.ingest`.

Example::

    from conference.devdata.generate import generate

    result = await generate(meetings=1_000, seed=1)
    print(result.counts)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from conference.db import Database, get_database
from conference.devdata.synthetic import DEFAULT_BATCH_SIZE, Batch, SyntheticData, column_names
from conference.devdata.target import (
    current_database,
    ensure_not_production,
    table_names,
    truncate_sql,
)
from conference.errors import DatabaseNotEmpty
from conference.text import rows_per_table

logger = logging.getLogger(__name__)

#: COPY streams at once. The server's share of the work (six indexes, two
#: foreign key checks and a JSON body per analytics row) is several times
#: Python's, so two streams keep a 2-core machine busy.
COPY_CONNECTIONS = 2


@dataclass(frozen=True)
class GenerateProgress:
    """Where a load is, after each committed batch."""

    meetings_done: int
    meetings_total: int
    rows: dict[str, int]


@dataclass(frozen=True)
class GenerateResult:
    """
    What :func:`generate` loaded.

    :param database:
        The database loaded (its name).
    :param counts:
        Rows inserted per table name.
    :param seconds:
        Wall-clock time of the load, including the final ``ANALYZE``.
    :param until:
        The generated "now" the data ends at.
    """

    database: str
    counts: dict[str, int]
    seconds: float
    until: datetime

    @property
    def rows(self) -> int:
        """Rows inserted, all tables."""
        return sum(self.counts.values())

    def table(self) -> str:
        """Rows per table as a small text table, for a terminal."""
        return rows_per_table(self.counts)


def default_until() -> datetime:
    """
    Midnight UTC today: a default "now" that stays put for a day, so that
    the same ``seed`` gives the same rows all day without ``until``.
    """
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def generate(
    meetings: int,
    seed: int,
    *,
    days: int = 30,
    until: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    replace: bool = False,
    force: bool = False,
    connections: int = COPY_CONNECTIONS,
    progress: Callable[[GenerateProgress], None] | None = None,
    database: Database | None = None,
) -> GenerateResult:
    """
    Invent ``meetings`` meetings (see
    :class:`~conference.devdata.synthetic.SyntheticData`) and load them with
    COPY, one transaction per batch of whole meetings. An interrupted load
    keeps the batches already committed: complete meetings, with all their
    rows. Not inside a transaction: the batches commit on their own.

    :param meetings:
        How many meetings; each brings about
        :data:`~conference.devdata.synthetic.ANALYTICS_PER_MEETING` analytics
        rows and 7 participants.
    :param seed:
        The random seed; the same arguments give the same rows.
    :param days:
        Days of history the meetings start in.
    :param until:
        The generated "now" (default :func:`default_until`).
    :param batch_size:
        Meetings per COPY batch and transaction.
    :param replace:
        Delete the existing conference data first (its own transaction, before
        the load). Without it the conference tables must be empty.
    :param force:
        Load even into a database that looks like production.
    :param connections:
        COPY streams working at once.
    :param progress:
        Called after each committed batch.
    :param database:
        Default: the engine of ``piccolo_conf`` (:func:`conference.db.get_database`).
    """
    began = time.perf_counter()
    data = SyntheticData(meetings=meetings, seed=seed, days=days, until=until or default_until())
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
    database = database or get_database()
    if database.engine.current_transaction.get() is not None:
        raise ValueError(
            "generate() commits a transaction per batch, on several connections; call it "
            "outside any transaction"
        )
    name = await current_database(database)
    ensure_not_production(name, "wipe and fill" if replace else "fill", force=force)
    if replace:
        await _bulk_statement(database, truncate_sql())
    else:
        await _ensure_empty(database, name)
    loader = _Loader(data, batch_size, progress)
    await loader.run(database, streams=max(connections, 1))
    # Fresh planner statistics, so that the first benchmark queries do not
    # run on the estimates of empty tables.
    await _bulk_statement(database, "ANALYZE " + ", ".join(table_names()))
    seconds = time.perf_counter() - began
    logger.info("generated %s meetings in %s: %s in %.1f s", meetings, name, loader.totals, seconds)
    return GenerateResult(database=name, counts=loader.totals, seconds=seconds, until=data.until)


class _Loader:
    """
    One producer, several COPY streams. The producer invents batches in a
    worker thread (the rows are plain Python work); each stream takes the
    next batch and COPYs it in a transaction of its own. The server does
    most of the work (six indexes and two foreign-key checks per analytics
    row), so two streams keep both cores busy while Python invents the next
    batch.
    """

    def __init__(
        self,
        data: SyntheticData,
        batch_size: int,
        progress: Callable[[GenerateProgress], None] | None,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.progress = progress
        self.totals = dict.fromkeys(table_names(), 0)
        self.meetings_done = 0

    async def run(self, database: Database, streams: int) -> None:
        # At most one batch waits per stream: memory stays at a few batches
        # however many meetings there are.
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=streams)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._produce(queue, streams))
                for _ in range(streams):
                    # Each task has its own context, so its own transaction.
                    group.create_task(self._consume(queue, database))
        except ExceptionGroup as failure:
            # One task failed and the group cancelled the others: surface
            # that one error as it is.
            raise failure.exceptions[0] from None

    async def _produce(self, queue: asyncio.Queue[Batch | None], consumers: int) -> None:
        batches = self.data.batches(self.batch_size)
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            await queue.put(batch)
        for _ in range(consumers):
            await queue.put(None)

    async def _consume(self, queue: asyncio.Queue[Batch | None], database: Database) -> None:
        while (batch := await queue.get()) is not None:
            async with database.transaction() as transaction:
                for table, records in batch.by_table():
                    if records:
                        await transaction.connection.copy_records_to_table(
                            table._meta.tablename,
                            records=records,
                            columns=column_names(table),
                        )
            for name, rows in batch.counts().items():
                self.totals[name] += rows
            self.meetings_done += len(batch.meetings)
            if self.progress is not None:
                self.progress(
                    GenerateProgress(self.meetings_done, self.data.meetings, dict(self.totals))
                )


async def _bulk_statement(database: Database, sql: str) -> None:
    # Not database.query(): a TRUNCATE or ANALYZE of millions of rows takes
    # seconds by nature, and the slow-query warning would only be noise.
    with database.translate_errors():
        async with database.connection() as connection:
            await connection.execute(sql)


async def _ensure_empty(database: Database, name: str) -> None:
    for table in table_names():
        rows = await database.query(f"SELECT EXISTS (SELECT 1 FROM {table}) AS taken")
        if rows[0]["taken"]:
            raise DatabaseNotEmpty(
                f"the conference tables of {name!r} already hold data ({table} is "
                "not empty); run again with --replace to delete it first, or point "
                "DATABASE_URL at an empty database"
            )
