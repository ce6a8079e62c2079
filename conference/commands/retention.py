"""``piccolo conference retention``: delete old analytics events (and ended meetings)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from tqdm import tqdm

from conference import db
from conference.commands.cli import exit_on_error, parse_moment
from conference.lifecycle.retention import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PAUSE,
    RetentionProgress,
    RetentionResult,
    cutoff_for,
    parse_period,
    run_retention,
)
from conference.settings import get_settings


@exit_on_error(ValueError)
async def retention(
    keep: str = "",
    before: str = "",
    meetings: bool = False,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pause: float = DEFAULT_PAUSE,
    force: bool = False,
) -> None:
    """
    Delete analytics events older than a cut-off, in small batches that
    each commit on their own (safe to interrupt: run it again to continue).
    Without --keep or --before, keeps RETENTION_KEEP (default 90d). Refuses
    a database that looks like production (name contains "prod", or
    CONFERENCE_ENV=production) without --force.

    :param keep:
        How much history to keep: 90d (days), 12h (hours), 2w (weeks).
    :param before:
        Or the cut-off itself, ISO 8601 (2026-09-01T00:00:00+00:00).
    :param meetings:
        Also delete meetings that ended before the cut-off, with their
        participants, recordings and events.
    :param dry_run:
        Only count what would be deleted.
    :param batch_size:
        Most rows deleted per transaction.
    :param pause:
        Least seconds to sleep after each batch (it also sleeps as long as
        the batch took), leaving the server to the webhooks.
    :param force:
        Run on a database that looks like production (what a scheduled
        production job passes).
    """
    bars: list[tqdm] = []

    def progress(state: RetentionProgress) -> None:
        if not bars:
            bars.append(tqdm(total=state.total, unit="row", unit_scale=True, file=sys.stderr))
        bar = bars[0]
        bar.update(state.done - bar.n)
        bar.set_postfix(step=state.step, refresh=False)

    _require_values(keep=keep, before=before)
    cutoff = _cutoff(keep, before)
    # One connection for the whole run instead of one per statement.
    await db.start_pool(max_size=1, min_size=1)
    try:
        result = await run_retention(
            cutoff,
            meetings=meetings,
            dry_run=dry_run,
            batch_size=batch_size,
            pause=pause,
            force=force,
            progress=progress,
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(
            "conference: interrupted; every finished batch is committed, run the same "
            "command again to continue",
            file=sys.stderr,
        )
        raise
    finally:
        for bar in bars:
            bar.close()
        await db.close_pool()
    _report(result)


def _require_values(**options: object) -> None:
    # targ reads "--before 2026-09-01" as the flag --before (True) and a
    # positional argument, which lands in the first parameter.
    for name, value in options.items():
        if value is True:
            raise ValueError(f"--{name} needs a value: write --{name}=VALUE, with an equals sign")


def _cutoff(keep: str, before: str) -> datetime:
    if keep and before:
        raise ValueError("give --keep or --before, not both")
    moment = parse_moment("--before", before)
    if moment is not None:
        return moment
    return cutoff_for(parse_period(keep or get_settings().retention_keep))


def _report(result: RetentionResult) -> None:
    cutoff = f"{result.cutoff.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    what = f"the events older than {cutoff}"
    if result.meetings:
        what += " and the meetings that ended before it"
    if result.dry_run:
        print(f"Dry run on {result.database}: would delete {what}:")
        print(result.table())
        return
    print(f"Deleted from {result.database} {what}:")
    print(result.table())
    rate = result.rows / result.seconds if result.seconds else 0.0
    print(
        f"{result.seconds:.1f} s, {result.batches:,} batches, {rate:,.0f} rows/s. "
        "The space is reused by new rows once autovacuum has passed (docs/lifecycle.md)."
    )
