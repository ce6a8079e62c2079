"""``piccolo conference generate``: synthetic data at scale, for benchmarks and demos."""

from __future__ import annotations

import sys

from tqdm import tqdm

from conference.commands.cli import exit_on_error, parse_moment
from conference.devdata.generate import DEFAULT_BATCH_SIZE, GenerateProgress
from conference.devdata.generate import generate as generate_data


@exit_on_error(ValueError)
async def generate(
    meetings: int,
    seed: int = 1,
    days: int = 30,
    until: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
    replace: bool = False,
    force: bool = False,
) -> None:
    """
    Load synthetic meetings, with their participants, recordings and
    analytics events, streamed with COPY. The same --seed (and --days,
    --until) gives identical rows, ids included. 10 million analytics rows:
    --meetings=242000.

    :param meetings:
        How many meetings (about 41.5 analytics rows and 7 participants each).
    :param seed:
        The random seed.
    :param days:
        Days of history the meetings start in.
    :param until:
        The generated "now", ISO 8601 (2026-01-31T12:00:00+00:00): meetings
        running then stay open. Default: midnight UTC today.
    :param batch_size:
        Meetings per COPY batch and transaction.
    :param replace:
        Delete the existing conference data first; without it the
        conference tables must be empty.
    :param force:
        Load even into a database that looks like production.
    """
    moment = parse_moment("--until", until)
    # Shown from the first committed batch on, so that a refusal is not
    # preceded by an empty bar.
    bars: list[tqdm] = []

    def progress(state: GenerateProgress) -> None:
        if not bars:
            bars.append(tqdm(total=meetings, unit="meeting", unit_scale=True, file=sys.stderr))
        bar = bars[0]
        bar.update(state.meetings_done - bar.n)
        bar.set_postfix(analytics=f"{state.rows['analytics']:,}", refresh=False)

    try:
        result = await generate_data(
            meetings,
            seed,
            days=days,
            until=moment,
            batch_size=batch_size,
            replace=replace,
            force=force,
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    analytics = result.counts["analytics"]
    until_text = f"{result.until:%Y-%m-%d %H:%M} UTC"
    print(
        f"Generated {meetings:,} meetings in {result.database} (seed {seed}, until {until_text}):"
    )
    print(result.table())
    print(
        f"{result.seconds:.1f} s: {result.rows / result.seconds:,.0f} rows/s, "
        f"{analytics / result.seconds:,.0f} analytics rows/s"
    )
