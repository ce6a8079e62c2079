"""``piccolo conference seed``: replace the conference data with development data."""

from __future__ import annotations

from conference.commands.cli import exit_on_error
from conference.devdata.seed import seed as seed_database


@exit_on_error
async def seed(force: bool = False) -> None:
    """
    Replace all conference data (meetings, participants, recordings,
    analytics) with a small development data set: 3 meetings (1 ended, 2 in
    progress), 8 participants, 1 recording and their analytics events. One
    transaction: if anything fails, the previous data stays. Refuses a
    database that looks like production (name contains "prod", or
    CONFERENCE_ENV=production).

    :param force:
        Seed even a database that looks like production; its conference
        data is deleted.
    """
    result = await seed_database(force=force)
    print(f"Seeded {result.database}:")
    print(result.table())
