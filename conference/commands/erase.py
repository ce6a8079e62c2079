"""``piccolo conference erase``: erase one participant identity (GDPR Art. 17)."""

from __future__ import annotations

import getpass
import sys

from tqdm import tqdm

from conference import db
from conference.commands.cli import exit_on_error, parse_moment
from conference.lifecycle.erasure import ErasureProgress, ErasureResult, erase_participant


@exit_on_error(ValueError)
async def erase(
    identity: str,
    room: str = "",
    since: str = "",
    until: str = "",
    dry_run: bool = False,
    force: bool = False,
) -> None:
    """
    Erase a participant: delete their participant rows and every analytics
    event about them, and scrub their identity, name and metadata from the
    other events' bodies; one transaction per meeting. Lists the recordings
    of their meetings (files it cannot edit). Records the erasure in the
    erasures table without the identity. Refuses a database that looks like
    production (name contains "prod", or CONFERENCE_ENV=production) without
    --force.

    :param identity:
        The LiveKit participant identity, exactly as stored.
    :param room:
        Only meetings of the room with this name.
    :param since:
        Only sessions that were still on at or after this time (ISO 8601).
    :param until:
        Only sessions that had started before this time (ISO 8601).
    :param dry_run:
        Count what would change; change and record nothing.
    :param force:
        Run on a database that looks like production.
    """
    # targ reads "--room weekly" as the flag --room (True) plus a positional
    # argument that would replace the identity: refuse before erasing anyone.
    for name, value in {"identity": identity, "room": room, "since": since, "until": until}.items():
        if value is True or not isinstance(value, str):
            raise ValueError(f"--{name} needs a value: write --{name}=VALUE, with an equals sign")
    bars: list[tqdm] = []

    def progress(state: ErasureProgress) -> None:
        if not bars:
            bars.append(tqdm(total=state.meetings_total, unit="meeting", file=sys.stderr))
        bars[0].update(state.meetings_done - bars[0].n)

    # One connection for the whole run instead of one per statement.
    await db.start_pool(max_size=1, min_size=1)
    try:
        result = await erase_participant(
            identity,
            erased_by=f"{getpass.getuser()} (piccolo conference erase)",
            room=room or None,
            since=parse_moment("--since", since),
            until=parse_moment("--until", until),
            dry_run=dry_run,
            force=force,
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
        await db.close_pool()
    _report(identity, result)


def _report(identity: str, result: ErasureResult) -> None:
    if result.dry_run:
        print(f"Dry run on {result.database}: erasing {identity!r} would change:")
    else:
        print(f"Erased {identity!r} from {result.database} (record {result.erasure_id}):")
    print(result.table())
    print(f"in {result.meetings:,} meetings, {result.seconds:.1f} s")
    if result.recordings:
        print(
            f"\n{len(result.recordings)} recordings of those meetings may show or name "
            "them; this command cannot edit files. Review them:"
        )
        for recording in result.recordings:
            path = recording.storage_path or "(no file path recorded)"
            print(f"  {recording.egress_id}  {recording.status:<13}  {path}")
