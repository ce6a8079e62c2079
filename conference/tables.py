"""
The schema of ``conference``: one Piccolo table per database table.

Table and column names are a contract with other services; change them only
with a migration and a note to those services. The database itself enforces
what a row must satisfy (``Check`` constraints below), so a writer that
bypasses this module cannot store a bad row either.

Piccolo columns only declare single-column indexes, so the composite and
partial ones live in hand-written migrations: ``participants (meeting_id,
left_at)``, ``analytics (meeting_id, created_at, id)``, ``recordings
(status, started_at, id)`` and ``meetings (created_at) WHERE ended_at IS
NULL`` (the last three serve ``conference/queries.py``).
"""

from __future__ import annotations

import os
import time
import uuid
from enum import Enum

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    DoublePrecision,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.defaults.uuid import UUID7 as PiccoloUUID7
from piccolo.columns.readable import Readable
from piccolo.constraints import Check, Unique
from piccolo.table import Table


class RecordingStatus(str, Enum):
    """LiveKit's egress states (``EgressStatus`` without the prefix)."""

    starting = "starting"
    active = "active"
    ending = "ending"
    complete = "complete"
    failed = "failed"
    aborted = "aborted"
    limit_reached = "limit_reached"


class UUID7(PiccoloUUID7):
    """
    Time-ordered keys: ``uuidv7()`` in the database (PostgreSQL 18), and
    the same kind of key for rows the ORM creates. Piccolo's ``UUID7``
    makes those with ``uuid.uuid7()``, which Python has from 3.14 only.

    New rows land at the right edge of the primary key index instead of on
    a random page of it: measured in ``docs/benchmarks.md``. Migrations
    name Piccolo's ``UUID7``, which this one equals (same name, same SQL).
    """

    def python(self) -> uuid.UUID:
        return uuid7()


def uuid7() -> uuid.UUID:
    """
    A UUIDv7 (RFC 9562) as PostgreSQL 18's ``uuidv7()`` makes it: 48 bits of
    Unix milliseconds, 12 bits of sub-millisecond fraction, 62 random bits.
    """
    if hasattr(uuid, "uuid7"):  # Python 3.14+
        return uuid.uuid7()  # type: ignore[no-any-return]
    ns = time.time_ns()
    ms, sub_ms = divmod(ns, 1_000_000)
    fraction = sub_ms * 4096 // 1_000_000
    random_bits = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (fraction << 64) | (0b10 << 62) | random_bits)


def _status_values_sql() -> str:
    return ", ".join(f"'{status.value}'" for status in RecordingStatus)


class Meeting(Table, tablename="meetings"):
    """One LiveKit room session, from its first event to ``ended_at``."""

    id = UUID(primary_key=True, default=UUID4())
    # default=None with null=False: the database has no default, so a
    # missing room name is an error, not a silent ''.
    room_name = Varchar(length=255, null=False, default=None, index=True)
    created_at = Timestamptz(null=False, default=TimestamptzNow(), index=True)
    ended_at = Timestamptz(null=True, default=None)
    metadata = JSONB(null=False, default={})
    # LiveKit's room sid (RM_…): one meeting per room session. Null for rows
    # not written from webhooks; NULLs never collide in a unique constraint.
    room_sid = Varchar(length=255, null=True, default=None, unique=True)

    meetings_room_name_not_blank = Check("btrim(room_name) <> ''")
    meetings_ended_after_created = Check("ended_at IS NULL OR ended_at >= created_at")
    meetings_metadata_is_object = Check("jsonb_typeof(metadata) = 'object'")
    meetings_room_sid_not_blank = Check("room_sid IS NULL OR btrim(room_sid) <> ''")

    @classmethod
    def get_readable(cls) -> Readable:
        return Readable(template="%s", columns=[cls.room_name])


class Participant(Table, tablename="participants"):
    """One participant session in a meeting, from join to leave."""

    id = UUID(primary_key=True, default=UUID4())
    meeting_id = ForeignKey(references=Meeting, null=False, on_delete=OnDelete.cascade, index=True)
    identity = Varchar(length=255, null=False, default=None)
    joined_at = Timestamptz(null=False, default=TimestamptzNow())
    left_at = Timestamptz(null=True, default=None)
    metadata = JSONB(null=False, default={})
    # LiveKit's participant sid (PA_…): a reconnect with the same identity is
    # a new sid, so a new row. Null for rows not written from webhooks.
    participant_sid = Varchar(length=255, null=True, default=None, unique=True)

    participants_identity_not_blank = Check("btrim(identity) <> ''")
    participants_left_after_joined = Check("left_at IS NULL OR left_at >= joined_at")
    participants_metadata_is_object = Check("jsonb_typeof(metadata) = 'object'")
    participants_participant_sid_not_blank = Check(
        "participant_sid IS NULL OR btrim(participant_sid) <> ''"
    )

    @classmethod
    def get_readable(cls) -> Readable:
        return Readable(template="%s", columns=[cls.identity])


class Recording(Table, tablename="recordings"):
    """
    One LiveKit egress of a meeting.

    ``file_size`` is in bytes. ``duration`` is in seconds, stored as double
    precision: fractional seconds are kept to sub-microsecond precision for
    any realistic recording length, and it maps to a plain ``float``.
    """

    id = UUID(primary_key=True, default=UUID4())
    meeting_id = ForeignKey(references=Meeting, null=False, on_delete=OnDelete.cascade, index=True)
    # unique=True creates a unique index, which also serves egress_id lookups.
    egress_id = Varchar(length=255, null=False, default=None, unique=True)
    storage_path = Text(null=True, default=None)
    status = Varchar(
        length=32,
        null=False,
        default=RecordingStatus.starting,
        choices=RecordingStatus,
        index=True,
    )
    started_at = Timestamptz(null=True, default=None)
    completed_at = Timestamptz(null=True, default=None)
    file_size = BigInt(null=True, default=None)
    duration = DoublePrecision(null=True, default=None)
    metadata = JSONB(null=False, default={})

    recordings_egress_id_not_blank = Check("btrim(egress_id) <> ''")
    recordings_status_is_known = Check(f"status IN ({_status_values_sql()})")
    recordings_completed_after_started = Check(
        "completed_at IS NULL OR started_at IS NULL OR completed_at >= started_at"
    )
    recordings_file_size_not_negative = Check("file_size IS NULL OR file_size >= 0")
    recordings_duration_not_negative = Check("duration IS NULL OR duration >= 0")
    recordings_metadata_is_object = Check("jsonb_typeof(metadata) = 'object'")

    @classmethod
    def get_readable(cls) -> Readable:
        return Readable(template="%s", columns=[cls.egress_id])


class AnalyticsEvent(Table, tablename="analytics"):
    """One event in a meeting, optionally about one participant."""

    # Time-ordered: the hottest table's key index stays small and is
    # appended to, not written all over (see UUID7).
    id = UUID(primary_key=True, default=UUID7())
    meeting_id = ForeignKey(references=Meeting, null=False, on_delete=OnDelete.cascade, index=True)
    participant_id = ForeignKey(
        references=Participant, null=True, on_delete=OnDelete.cascade, index=True
    )
    event_type = Varchar(length=64, null=False, default=None, index=True)
    event_data = JSONB(null=False, default={})
    created_at = Timestamptz(null=False, default=TimestamptzNow())
    # The webhook's ``id`` (EV_…): a retried delivery carries the same one,
    # so the unique constraint makes storing an event idempotent.
    webhook_event_id = Varchar(length=255, null=True, default=None, unique=True)

    analytics_event_type_not_blank = Check("btrim(event_type) <> ''")
    analytics_event_data_is_object = Check("jsonb_typeof(event_data) = 'object'")
    analytics_webhook_event_id_not_blank = Check(
        "webhook_event_id IS NULL OR btrim(webhook_event_id) <> ''"
    )

    @classmethod
    def get_readable(cls) -> Readable:
        return Readable(template="%s", columns=[cls.event_type])


class Erasure(Table, tablename="erasures"):
    """
    The record of one erasure of a participant (``piccolo conference
    erase``, or the admin's "Erase a participant" form): when, who ran it,
    and how many rows it changed per table. It holds no personal data: not
    the identity erased, not its hash, not the room's name.

    ``finished_at`` stays null while the erasure runs, and for good when it
    was interrupted; ``counts`` then holds what the committed meetings
    changed.
    """

    id = UUID(primary_key=True, default=UUID4())
    started_at = Timestamptz(null=False, default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)
    # The operator: an OS user for the command, "admin:<user>" for the form.
    erased_by = Varchar(length=255, null=False, default=None)
    # Whether a room limited it, and the time range (no names).
    scope = JSONB(null=False, default={})
    # Rows per table: deleted participants and analytics, scrubbed bodies.
    counts = JSONB(null=False, default={})
    meetings = Integer(null=False, default=0)
    recordings_listed = Integer(null=False, default=0)

    erasures_erased_by_not_blank = Check("btrim(erased_by) <> ''")
    erasures_counts_is_object = Check("jsonb_typeof(counts) = 'object'")
    erasures_scope_is_object = Check("jsonb_typeof(scope) = 'object'")


# --- Usage rollups (conference.reports) ---------------------------------------
#
# Derived from the four conference tables by conference.reports.refresh();
# never written by anything else. "" as a room name is the all-rooms series
# (meetings forbid a blank room name, so it cannot collide with a room).


class ReportState(Table, tablename="report_state"):
    """Where the rollups stand: one row, written by each refresh."""

    #: Everything up to this moment is in the rollups; running meetings count up to it.
    as_of = Timestamptz(null=False, default=None)
    #: The watermark: rows written by transactions from this one (a 64-bit
    #: transaction id) on may be new to the rollups.
    snapshot_xmin = BigInt(null=False, default=0)
    #: Analytics keys (uuidv7, time-ordered) below this were all seen.
    analytics_floor = UUID(null=False, default=None)
    #: The relfilenodes of the conference tables: a TRUNCATE changes them.
    filenodes = Varchar(length=255, null=False, default=None)
    refreshed_at = Timestamptz(null=False, default=TimestamptzNow())


class ReportMeeting(Table, tablename="report_meetings"):
    """
    What the last refresh knew of one meeting: its room and the time span of
    all its rows (so a change can find every hour it touched before).
    """

    meeting_id = UUID(primary_key=True, default=None)
    room_name = Varchar(length=255, null=False, default=None, index=True)
    created_at = Timestamptz(null=False, default=None)
    span_start = Timestamptz(null=False, default=None)
    #: Null while a participant session or a recording is still running.
    span_end = Timestamptz(null=True, default=None, index=True)
    sessions = Integer(null=False, default=0)
    recordings = Integer(null=False, default=0)


class ReportHour(Table, tablename="report_hours"):
    """The usage of one room (or all rooms: ``""``) in one UTC hour."""

    hour = Timestamptz(null=False, default=None)
    room_name = Varchar(length=255, null=False, default=None)
    meetings_started = Integer(null=False, default=0)
    participant_sessions = Integer(null=False, default=0)
    #: Participant time in microseconds (exact; minutes = / 60e6).
    participant_us = BigInt(null=False, default=0)
    peak_participants = Integer(null=False, default=0)
    #: Recording time in microseconds.
    recording_us = BigInt(null=False, default=0)

    report_hours_room_hour = Unique(["room_name", "hour"])


class ReportEventHour(Table, tablename="report_event_hours"):
    """Analytics events of one type in one room (or ``""``) in one UTC hour."""

    hour = Timestamptz(null=False, default=None)
    room_name = Varchar(length=255, null=False, default=None)
    event_type = Varchar(length=64, null=False, default=None)
    events = BigInt(null=False, default=0)

    report_event_hours_room_hour_type = Unique(["room_name", "hour", "event_type"])


class ReportDay(Table, tablename="report_days"):
    """
    One UTC day of ``report_hours`` and ``report_event_hours`` added up, per
    room (and ``""``): what day and week reports in UTC read.
    """

    day = Timestamptz(null=False, default=None)
    room_name = Varchar(length=255, null=False, default=None)
    meetings_started = Integer(null=False, default=0)
    participant_sessions = Integer(null=False, default=0)
    participant_us = BigInt(null=False, default=0)
    #: The largest of the day's hourly peaks: the day's exact peak.
    peak_participants = Integer(null=False, default=0)
    recording_us = BigInt(null=False, default=0)
    #: Events by type: ``{"participant_joined": 12, ...}``.
    events = JSONB(null=False, default={})

    report_days_room_day = Unique(["room_name", "day"])


#: The conference data: the four LiveKit tables, parents first (the order to
#: insert or COPY in; reversed, to delete or truncate in). The one list of
#: them: seed, generate, the tests and the benchmarks derive theirs from it
#: (``conference.devdata.target.table_names()``). Tables that are not
#: LiveKit data (records, rollups) get lists of their own below, which seed
#: and generate never touch; ``piccolo_app`` registers every list.
TABLES: list[type[Table]] = [Meeting, Participant, Recording, AnalyticsEvent]

#: Tables of this app that are not conference data: records about it.
RECORD_TABLES: list[type[Table]] = [Erasure]

#: The usage rollups: derived data, rebuilt from TABLES by conference.reports.
REPORT_TABLES: list[type[Table]] = [
    ReportState,
    ReportMeeting,
    ReportHour,
    ReportEventHour,
    ReportDay,
]

#: Every table of the app, in the order piccolo_app registers them.
APP_TABLES: list[type[Table]] = [*TABLES, *RECORD_TABLES, *REPORT_TABLES]
