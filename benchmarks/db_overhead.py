"""
What ``conference.db`` adds to each statement, against asyncpg's own pool
in the same run::

    python -m benchmarks.db_overhead                  # 60 blocks of 100 calls a side
    python -m benchmarks.db_overhead --blocks 10 --no-write   # a quick look

**Method.** One trivial statement (``SELECT $1::int``, one row) through
``asyncpg.create_pool(...).fetch`` and through ``conference.db.query``
(the engine's :class:`~conference.pool.ConferencePool`: bounded acquire,
liveness bookkeeping, statement logging, error translation), both pools
of the same size on the same server, in blocks of 100 calls that
alternate which side goes first. Per block and side: wall time and CPU
time of this process per call; the overhead is paired (each block against
its neighbour on the other side, then the median), so that bursts of other
work cancel out. CPU time is the steadier figure on a shared machine.
The Python function calls per statement (counted with ``cProfile``) do not
depend on the load at all.

The statement only reads, so the configured database (``DATABASE_URL``,
or the embedded server) is used as it is. The table is printed and written
to the ``db_overhead`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from benchmarks.report import (
    load_average,
    machine_description,
    median,
    server_facts,
    timestamp,
    write_section,
)
from conference.db import Database, get_database

SQL = "SELECT $1::int AS n"
CALLS_PER_BLOCK = 100
POOL_SIZE = 4

Side = Callable[[int], Awaitable[Any]]


async def _block(side: Side) -> tuple[float, float]:
    """Wall and CPU microseconds per call over one block."""
    wall, cpu = time.perf_counter(), time.process_time()
    for number in range(CALLS_PER_BLOCK):
        await side(number)
    return (
        (time.perf_counter() - wall) / CALLS_PER_BLOCK * 1e6,
        (time.process_time() - cpu) / CALLS_PER_BLOCK * 1e6,
    )


async def _calls_per_statement(side: Side, count: int = 500) -> float:
    profile = cProfile.Profile()
    profile.enable()
    for number in range(count):
        await side(number)
    profile.disable()
    stats: Any = pstats.Stats(profile)  # total_calls is set at runtime, not declared
    return float(stats.total_calls) / count


async def measure(blocks: int, database: Database | None = None) -> str:
    """
    Run the comparison; return the Markdown section.

    :param database:
        Where to run; default the configured database (its pool is closed
        afterwards).
    """
    database = database or get_database()
    load_before = load_average()
    await database.start_pool(min_size=POOL_SIZE, max_size=POOL_SIZE)
    raw = await asyncpg.create_pool(database.url, min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        async with raw.acquire() as connection:
            server = await server_facts(connection)

        async def raw_side(number: int) -> Any:
            return await raw.fetch(SQL, number)

        async def conference_side(number: int) -> Any:
            return await database.query(SQL, number)

        sides: list[tuple[str, Side]] = [
            ("asyncpg pool", raw_side),
            ("conference.db", conference_side),
        ]
        for _, side in sides:  # warm up: connections, prepared statements
            await _block(side)
        wall: dict[str, list[float]] = {name: [] for name, _ in sides}
        cpu: dict[str, list[float]] = {name: [] for name, _ in sides}
        for block in range(blocks):
            for name, side in sides if block % 2 == 0 else reversed(sides):
                block_wall, block_cpu = await _block(side)
                wall[name].append(block_wall)
                cpu[name].append(block_cpu)
        calls = {name: await _calls_per_statement(side) for name, side in sides}
    finally:
        await raw.close()
        await database.close_pool()

    def paired(values: dict[str, list[float]]) -> float:
        return median(
            [c - r for r, c in zip(values["asyncpg pool"], values["conference.db"], strict=True)]
        )

    rows = [
        f"| {name} | {median(wall[name]):.1f} | {median(cpu[name]):.1f} | {calls[name]:.0f} |"
        for name, _ in sides
    ]
    return "\n".join(
        [
            "## What conference.db adds to a statement",
            "",
            f"{timestamp()}, `python -m benchmarks.db_overhead --blocks {blocks}`: "
            + machine_description(server, load_before, load_average()),
            "",
            f"`{SQL}` with one parameter, {blocks} blocks of {CALLS_PER_BLOCK} calls a side "
            f"(alternating which goes first), pools of {POOL_SIZE} connections on one server; "
            "medians per call.",
            "",
            "| side | wall µs | CPU µs | Python calls |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"conference.db over the asyncpg pool, paired: **{paired(wall):+.1f} µs wall, "
            f"{paired(cpu):+.1f} µs CPU, "
            f"{calls['conference.db'] - calls['asyncpg pool']:+.0f} Python calls** per statement.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.db_overhead``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.db_overhead", description=__doc__)
    parser.add_argument("--blocks", type=int, default=60, help="blocks of 100 calls a side")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    section = asyncio.run(measure(args.blocks))
    print(section)
    if not args.no_write:
        write_section("db_overhead", section)
        print("\nwritten to the db_overhead section of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
