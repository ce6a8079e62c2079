"""``piccolo conference rollup``: bring the usage rollups up to date."""

from __future__ import annotations

from conference.commands.cli import exit_on_error
from conference.reports import refresh


@exit_on_error(ValueError)
async def rollup(rebuild: bool = False) -> None:
    """
    Refresh the usage rollups behind the reports and the dashboard: only the
    hours whose rows changed since the last refresh (late webhooks
    included), and running meetings up to now. The first run, and the first
    after a TRUNCATE (seed, generate --replace), rebuilds everything. Safe to
    run at any time, from cron or a systemd timer; a run that finds another
    one in progress does nothing.

    :param rebuild:
        Recompute everything from the raw tables: after deleting analytics
        events on their own, or to check that the rollups are exact.
    """
    result = await refresh(rebuild=rebuild)
    if result.skipped:
        print("Another rollup refresh is running; nothing done.")
        return
    assert result.as_of is not None
    print(
        f"Rollups {'rebuilt' if result.rebuilt else 'refreshed'} as of "
        f"{result.as_of.isoformat(timespec='seconds')}: {result.meetings} meetings changed, "
        f"{result.hours} hour rows recomputed in {result.seconds:.2f} s."
    )
