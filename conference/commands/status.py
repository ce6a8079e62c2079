"""``piccolo conference status``: the database, and which migrations ran."""

from __future__ import annotations

from conference import db
from conference.commands.cli import exit_on_error
from conference.errors import DatabaseUnavailable
from conference.migrations import migration_status


@exit_on_error
async def status() -> None:
    """
    Show the server (version, latency) and every migration of the
    registered apps: applied (and when), pending, partly applied (a run
    interrupted between steps: the next migrate resumes it), or changed
    since it ran.
    Exits 1 only when the database cannot be reached; `verify` is the check
    for CI.
    """
    health = await db.check_connection(deadline=10.0)
    if not health.ok:
        raise DatabaseUnavailable(health.error or "the database did not answer")
    print(f"PostgreSQL {health.server_version}, round trip {health.latency_ms:.1f} ms")
    states = await migration_status()
    for state in states:
        if not state.has_file:
            label = "no file"
        elif state.applied_at is None and state.steps_done:
            label = "PARTIAL"  # interrupted between steps; migrate resumes it
        elif state.applied_at is None:
            label = "PENDING"
        elif state.checksum_matches is False:
            label = "CHANGED"
        else:
            label = "applied"
        when = f"{state.applied_at:%Y-%m-%d %H:%M}" if state.applied_at else " " * 16
        print(f"{label:8} {when}  {state.name}  {state.description}".rstrip())
    pending = sum(1 for state in states if state.applied_at is None)
    print(f"{len(states) - pending} applied, {pending} pending")
