"""``piccolo conference verify``: the CI check that database and code agree."""

from __future__ import annotations

import sys

from conference.commands.cli import exit_on_error
from conference.migrations import verify as verify_migrations


@exit_on_error
async def verify() -> None:
    """
    Exit 1, naming each problem, when a migration is pending, when a table
    differs from its migrations (an auto migration would not be empty), or
    when an applied migration's file changed since it ran. Exit 0 otherwise.
    """
    result = await verify_migrations()
    for name in result.unrecorded:
        print(f"note: {name} was applied without a checksum; the next migrate records it")
    if not result.ok:
        for problem in result.problems():
            print(f"FAIL: {problem}", file=sys.stderr)
        sys.exit(1)
    print("ok: no pending migrations, models match migrations, no applied migration changed")
