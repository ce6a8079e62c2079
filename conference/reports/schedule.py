"""
The app's own rollup timer: :func:`refresh_periodically` runs
:func:`~conference.reports.refresh` every ``REPORTS_REFRESH_INTERVAL``
seconds while the app runs (``conference.app``'s lifespan). Several app
processes may run it: a refresh that finds another one running skips.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from conference.db import Database
from conference.errors import DatabaseError
from conference.reports.rollup import refresh

logger = logging.getLogger(__name__)

#: Seconds after startup before the first refresh (at most the interval).
FIRST_REFRESH_DELAY = 5.0

#: SQLSTATE of a missing table: the app started before its migrations ran.
UNDEFINED_TABLE = "42P01"


@asynccontextmanager
async def refresh_periodically(
    interval: float, *, database: Database | None = None
) -> AsyncIterator[None]:
    """
    Refresh the rollups a few seconds after the block starts, then every
    ``interval`` seconds until it ends; nothing when ``interval`` is 0. A failed refresh is logged
    and tried again at the next tick.
    """
    if interval <= 0:
        yield
        return
    task = asyncio.create_task(_refresh_forever(interval, database), name="reports-refresh")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def _refresh_forever(interval: float, database: Database | None) -> None:
    # Not during startup: let the app start serving first.
    await asyncio.sleep(min(interval, FIRST_REFRESH_DELAY))
    while True:
        try:
            await refresh(database=database)
        except DatabaseError as error:
            if error.sqlstate == UNDEFINED_TABLE:
                logger.warning("no usage rollups yet: migrations pending (%s)", error)
            else:
                logger.error(
                    "refreshing the usage rollups failed: %s; next try in %.0f s", error, interval
                )
        except Exception:
            # The app keeps serving; the next tick tries again.
            logger.exception("refreshing the usage rollups failed; next try in %.0f s", interval)
        await asyncio.sleep(interval)
