"""``piccolo conference migrate``: apply pending migrations, safely."""

from __future__ import annotations

from conference.commands.cli import exit_on_error
from conference.migrations import MigrationRunResult, run_migrations


@exit_on_error
async def migrate(
    dry_run: bool = False, verbose: bool = False, target: str | None = None, backwards: bool = False
) -> None:
    """
    Apply the pending migrations of every registered app without stalling
    traffic: indexes on existing tables built CONCURRENTLY, constraints
    added NOT VALID then validated, each step under a short lock_timeout
    retried with backoff (MIGRATION_LOCK_TIMEOUT, MIGRATION_LOCK_BUDGET);
    unsafe operations refused before anything runs, with their recipe. One
    process at a time (an advisory lock). The guide:
    conference/piccolo_migrations/README.md.

    :param dry_run:
        Print the plan: every statement of every step, hand-written raw SQL
        included, with the lock each step takes and its retry policy; change
        nothing.
    :param verbose:
        Print every statement as it runs.
    :param target:
        Stop after this migration: its ID, or app:ID.
    :param backwards:
        Reverse the applied migrations from --target on, newest first, with
        the same non-blocking steps (stock `piccolo migrations backwards`
        runs them in one blocking transaction).
    """
    result = await run_migrations(
        dry_run=dry_run, verbose=verbose, target=target, backwards=backwards
    )
    print(format_result(result, verbose=verbose))


def format_result(result: MigrationRunResult, verbose: bool = False) -> str:
    """What ``migrate`` prints for ``result``."""
    if result.dry_run:
        if not result.migrations:
            return "-- dry run: nothing to migrate"
        return f"{result.sql}\n-- dry run: {len(result.migrations)} migration(s), nothing changed"
    lines = []
    if result.lock_wait_ms >= 1000:
        lines.append(f"waited {result.lock_wait_ms / 1000:.1f} s for another process's migrations")
    for step in result.migrations:
        described = f" ({step.description})" if step.description else ""
        notes = [f"{step.steps} steps"] if step.steps > 1 else []
        if step.retries:
            notes.append(f"{step.retries} lock retries")
        if step.resumed_at:
            notes.append(f"resumed at step {step.resumed_at}")
        extra = f" ({', '.join(notes)})" if notes else ""
        verb = "reversed" if result.backwards else "applied"
        lines.append(f"{verb} {step.name}{described} in {step.duration_ms or 0:.0f} ms{extra}")
        if verbose:
            for statement in step.statements:
                lines.extend(f"    {line}" for line in statement.splitlines())
    if result.migrations:
        lines.append(f"{len(result.migrations)} migration(s) in {result.duration_ms:.0f} ms")
    else:
        lines.append("nothing to migrate: every migration is applied")
    return "\n".join(lines)
