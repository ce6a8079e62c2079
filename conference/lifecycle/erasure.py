"""
Erasure of one participant identity (GDPR Art. 17): their participant
rows, every ``analytics`` event about them, and their identity, name and
metadata inside the bodies of the other events that carry them.

What is erased, meeting by meeting (one transaction each):

- the participant rows of that identity (every session: a reconnect is a
  row of its own), limited to a room and a time range when asked;
- the events about them: those linked to those rows (``participant_id``),
  and unlinked ones whose body's ``participant.identity`` is theirs;
- in the other events of the meeting, wherever the identity occurs: an
  object whose ``identity`` is theirs (a ``ParticipantInfo`` in a room or
  track event, an egress request naming them) loses its ``identity``,
  ``name``, ``metadata`` and ``attributes``; any other string containing
  the identity gets it replaced by :data:`REDACTED`. Nothing else of those
  bodies changes.

It cannot edit recording files: it lists the recordings of the meetings
the person was in (:attr:`ErasureResult.recordings`), for the operator to
act on. Each run leaves a row in ``erasures`` (:class:`~conference.tables.Erasure`)
with when, who ran it and the rows changed per table, never the identity.

The meetings are found from the participant rows; bodies of rooms where the
identity has no participant row are not searched (the webhook path always
writes one for an event about a participant).

Example::

    result = await erase_participant("alice", erased_by="ops@example.com")
    for recording in result.recordings:
        print(recording.egress_id, recording.storage_path)
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conference import db
from conference.db import Database
from conference.devdata.target import current_database, ensure_not_production
from conference.text import rows_per_table

logger = logging.getLogger(__name__)

#: What replaces an erased identity, name or string in an event body.
REDACTED = "[erased]"

#: Keys of an object about the erased participant that are cleared too.
_PERSONAL_KEYS = ("name", "metadata", "attributes")


@dataclass(frozen=True)
class RecordingToReview:
    """A recording of a meeting the erased person was in: the file may show them."""

    meeting_id: uuid.UUID
    egress_id: str
    status: str
    storage_path: str | None


@dataclass(frozen=True)
class ErasureProgress:
    """Where an erasure is, after each meeting's transaction."""

    meetings_done: int
    meetings_total: int


@dataclass
class ErasureResult:
    """
    What an erasure changed, or would change with ``dry_run``.

    :param erasure_id:
        The row of ``erasures`` that records it (``None`` for a dry run).
    :param meetings:
        Meetings the identity was found in (within the scope asked).
    :param counts:
        ``participants`` and ``analytics``: rows deleted;
        ``analytics_scrubbed``: other events whose body was rewritten.
    :param recordings:
        Recordings of those meetings, to review by hand.
    """

    database: str
    dry_run: bool
    erasure_id: uuid.UUID | None = None
    meetings: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"participants": 0, "analytics": 0, "analytics_scrubbed": 0}
    )
    recordings: list[RecordingToReview] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        """One paragraph: what changed (or would), and the recordings to review."""
        counts = self.counts
        verb = "would delete" if self.dry_run else "deleted"
        text = (
            f"{verb} {counts['participants']:,} participant rows and "
            f"{counts['analytics']:,} events, and "
            f"{'would scrub' if self.dry_run else 'scrubbed'} "
            f"{counts['analytics_scrubbed']:,} other event bodies, in {self.meetings:,} meetings."
        )
        if self.recordings:
            files = ", ".join(
                f"{r.egress_id} ({r.storage_path or 'no file path'})" for r in self.recordings
            )
            text += f" Recordings of those meetings to review by hand: {files}."
        return text

    def table(self) -> str:
        """Rows per table as a small text table, for a terminal."""
        return rows_per_table(self.counts)


# --- Scrubbing one body ---------------------------------------------------------


def scrub(value: Any, identity: str) -> Any:
    """
    ``value`` (a decoded JSON body) without ``identity``: an object whose
    ``identity`` is it loses its name, metadata and attributes too; any
    other string or key containing it gets it replaced by :data:`REDACTED`.
    Returns a new value; everything else is kept as it was.
    """
    if isinstance(value, dict):
        about_them = value.get("identity") == identity
        cleaned = {_scrub_text(key, identity): scrub(item, identity) for key, item in value.items()}
        if about_them:
            cleaned["identity"] = REDACTED
            for key in _PERSONAL_KEYS:
                if key in cleaned:
                    cleaned[key] = _emptied(cleaned[key])
        return cleaned
    if isinstance(value, list):
        return [scrub(item, identity) for item in value]
    if isinstance(value, str):
        return _scrub_text(value, identity)
    return value


def _scrub_text(text: str, identity: str) -> str:
    return text.replace(identity, REDACTED) if identity in text else text


def _emptied(value: Any) -> Any:
    # LiveKit's metadata is a string and attributes a map; keep each type.
    if isinstance(value, dict):
        return {}
    if isinstance(value, list):
        return []
    return REDACTED if isinstance(value, str) and value else value


# --- The plan of one meeting ------------------------------------------------------

_FIND_MEETINGS = """
SELECT DISTINCT p.meeting_id FROM participants p JOIN meetings m ON m.id = p.meeting_id
WHERE p.identity = $1
  AND ($2::text IS NULL OR m.room_name = $2)
  AND ($3::timestamptz IS NULL OR coalesce(p.left_at, 'infinity') >= $3)
  AND ($4::timestamptz IS NULL OR p.joined_at < $4)
ORDER BY p.meeting_id
"""

_THEIR_PARTICIPANTS = """
SELECT id FROM participants
WHERE meeting_id = $1 AND identity = $2
  AND ($3::timestamptz IS NULL OR coalesce(left_at, 'infinity') >= $3)
  AND ($4::timestamptz IS NULL OR joined_at < $4)
ORDER BY id
"""

_THEIR_EVENTS = """
SELECT id FROM analytics
WHERE meeting_id = $1
  AND (participant_id = ANY($2::uuid[])
       OR (participant_id IS NULL AND event_data -> 'participant' ->> 'identity' = $3
           AND ($4::timestamptz IS NULL OR created_at >= $4)
           AND ($5::timestamptz IS NULL OR created_at < $5)))
ORDER BY id
"""

# Bodies of the meeting's other events that contain the identity, as it is
# or as JSON escapes it; the Python side decides what changes.
_BODIES_WITH_IDENTITY = """
SELECT id, event_data::text AS body FROM analytics
WHERE meeting_id = $1 AND NOT (id = ANY($2::uuid[]))
  AND (strpos(event_data::text, $3) > 0 OR strpos(event_data::text, $4) > 0)
ORDER BY id
"""

_RECORDINGS = """
SELECT meeting_id, egress_id, status, storage_path FROM recordings
WHERE meeting_id = $1 ORDER BY started_at NULLS LAST, egress_id
"""


@dataclass
class _MeetingPlan:
    """What erasing the identity from one meeting does: built once, run or counted."""

    meeting_id: uuid.UUID
    participants: list[uuid.UUID]
    events: list[uuid.UUID]
    rewritten: list[tuple[uuid.UUID, str]]
    recordings: list[RecordingToReview]

    def counts(self) -> dict[str, int]:
        return {
            "participants": len(self.participants),
            "analytics": len(self.events),
            "analytics_scrubbed": len(self.rewritten),
        }


async def _plan_meeting(
    database: Database,
    meeting_id: uuid.UUID,
    identity: str,
    since: datetime | None,
    until: datetime | None,
    lock: bool,
) -> _MeetingPlan:
    suffix = " FOR UPDATE" if lock else ""
    participants = [
        row["id"]
        for row in await database.query(
            _THEIR_PARTICIPANTS + suffix, meeting_id, identity, since, until
        )
    ]
    events = [
        row["id"]
        for row in await database.query(
            _THEIR_EVENTS + suffix, meeting_id, participants, identity, since, until
        )
    ]
    escaped = json.dumps(identity)[1:-1]
    rewritten = []
    for row in await database.query(
        _BODIES_WITH_IDENTITY + suffix, meeting_id, events, identity, escaped
    ):
        body = json.loads(row["body"])
        cleaned = scrub(body, identity)
        if cleaned != body:
            rewritten.append((row["id"], json.dumps(cleaned, ensure_ascii=False)))
    recordings = [
        RecordingToReview(r["meeting_id"], r["egress_id"], r["status"], r["storage_path"])
        for r in await database.query(_RECORDINGS, meeting_id)
    ]
    return _MeetingPlan(meeting_id, participants, events, rewritten, recordings)


async def _apply(database: Database, plan: _MeetingPlan) -> None:
    if plan.events:
        await database.query("DELETE FROM analytics WHERE id = ANY($1::uuid[])", plan.events)
    for event_id, body in plan.rewritten:
        await database.query(
            "UPDATE analytics SET event_data = $2::text::jsonb WHERE id = $1", event_id, body
        )
    if plan.participants:
        # Events linked to these rows and written since the plan went with
        # the lock's wait; the cascade takes any that slipped in.
        await database.query(
            "DELETE FROM participants WHERE id = ANY($1::uuid[])", plan.participants
        )


# --- Running it ----------------------------------------------------------------------


async def erase_participant(
    identity: str,
    *,
    erased_by: str,
    room: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    force: bool = False,
    database: Database | None = None,
    progress: Callable[[ErasureProgress], None] | None = None,
) -> ErasureResult:
    """
    Erase ``identity`` from the conference data, one transaction per
    meeting, and record that it was done (without the identity). Safe to run
    again: a second run finds nothing left and records that.

    :param identity:
        LiveKit's participant identity, exactly as stored.
    :param erased_by:
        Who asked for it, for the record: an operator, not the person erased.
    :param room:
        Only meetings of the room with this name.
    :param since, until:
        Only participant sessions that overlap ``[since, until)``.
    :param dry_run:
        Find and count everything, change nothing, record nothing.
    :param force:
        Run even on a database that looks like production (name contains
        ``prod``, or ``CONFERENCE_ENV=production``).
    :param database:
        Default: the engine of ``piccolo_conf``.
    :param progress:
        Called after each meeting.
    """
    if not identity.strip():
        raise ValueError("the identity to erase is empty; give it exactly as stored")
    if not erased_by.strip():
        raise ValueError("say who runs the erasure (erased_by): the record needs it")
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise ValueError(f"times need a time zone (+00:00 for UTC), got {moment}")
    if since is not None and until is not None and since >= until:
        raise ValueError(f"the time range is empty: since {since} is not before until {until}")
    database = database or db.get_database()
    began = time.perf_counter()
    name = await current_database(database)
    ensure_not_production(name, "erase a participant from", force=force)
    result = ErasureResult(database=name, dry_run=dry_run)
    meetings = [
        row["meeting_id"]
        for row in await database.query(_FIND_MEETINGS, identity, room, since, until)
    ]
    result.meetings = len(meetings)
    if not dry_run:
        scope = {
            "room": room is not None,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        }
        rows = await database.query(
            "INSERT INTO erasures (erased_by, scope, counts) "
            "VALUES ($1, $2::text::jsonb, $3::text::jsonb) RETURNING id",
            erased_by,
            json.dumps(scope),
            json.dumps(result.counts),
        )
        result.erasure_id = rows[0]["id"]
    for done, meeting_id in enumerate(meetings, start=1):
        async with database.transaction():
            plan = await _plan_meeting(database, meeting_id, identity, since, until, not dry_run)
            for table, rows_changed in plan.counts().items():
                result.counts[table] += rows_changed
            if not dry_run:
                await _apply(database, plan)
                await database.query(
                    "UPDATE erasures SET counts = $2::text::jsonb, meetings = meetings + 1, "
                    "recordings_listed = recordings_listed + $3 WHERE id = $1",
                    result.erasure_id,
                    json.dumps(result.counts),
                    len(plan.recordings),
                )
        result.recordings.extend(plan.recordings)
        if progress is not None:
            progress(ErasureProgress(done, len(meetings)))
    if result.erasure_id is not None:
        await database.query(
            "UPDATE erasures SET finished_at = now() WHERE id = $1", result.erasure_id
        )
    result.seconds = time.perf_counter() - began
    # The identity is personal data: the log names the record, not the person.
    logger.info(
        "erasure %s on %s by %s: %s in %d meetings",
        result.erasure_id or "(dry run)",
        name,
        erased_by,
        result.counts,
        result.meetings,
    )
    return result
