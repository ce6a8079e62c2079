"""
The exceptions ``conference`` raises, each with a message a user can act on.
"""

from __future__ import annotations

import sys
from types import TracebackType


class ConferenceError(Exception):
    """Base class: catch this to handle every error of this package."""


class ConfigurationError(ConferenceError):
    """A setting is missing or malformed (for example ``DATABASE_URL``)."""


class DatabaseUnavailable(ConferenceError):
    """The database server cannot be reached, or refused the connection."""


class DatabaseBusy(DatabaseUnavailable):
    """
    No pooled connection became free within ``DATABASE_POOL_ACQUIRE_TIMEOUT``
    (every connection was busy, or a new one took too long to open); the
    work was not started. Retry after a moment (HTTP: 503 with
    ``Retry-After``), or raise ``DATABASE_POOL_MAX_SIZE``.
    """


class DatabaseError(ConferenceError):
    """
    PostgreSQL rejected a statement. ``sqlstate`` is its error code;
    ``constraint``, ``table`` and ``column`` name what it complained about
    when it said so. The message never contains row values.
    """

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        constraint: str | None = None,
        table: str | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint = constraint
        self.table = table
        self.column = column


class IntegrityViolation(DatabaseError):
    """A row broke a constraint of the schema; the statement changed nothing."""


class UniqueViolation(IntegrityViolation):
    """A unique constraint or primary key already holds this value."""


class ForeignKeyViolation(IntegrityViolation):
    """A reference points at a missing row, or a referenced row is still in use."""


class CheckViolation(IntegrityViolation):
    """A ``CHECK`` constraint rejected the row."""


class NotNullViolation(IntegrityViolation):
    """A required column got no value."""


class QueryTimeout(DatabaseError):
    """A statement hit ``statement_timeout`` or ``lock_timeout``, or was cancelled."""


class TransactionConflict(DatabaseError):
    """A serialization failure or deadlock; running the transaction again may succeed."""


class InvalidEvent(ConferenceError, ValueError):
    """
    An event of a batch given to :func:`conference.ingest.record_events` is
    malformed or was rejected by the database, so the batch was not
    recorded. ``index`` is the event's position in the batch (from 0);
    ``field`` the field at fault when one is.
    """

    def __init__(self, message: str, *, index: int, field: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.field = field


class MigrationError(ConferenceError):
    """Migrations could not be planned, applied or verified."""


class MigrationLockTimeout(MigrationError):
    """Another process kept the migration lock longer than ``MIGRATION_LOCK_WAIT``."""


class MigrationRefused(MigrationError):
    """
    A pending migration holds an operation that would block a live table
    (or break running code) and does not acknowledge it; nothing ran. The
    message names each and its safe recipe; ``operations`` lists them as
    ``"app:ID: <rule> <table>[.<column>]"``.
    """

    def __init__(self, message: str, *, operations: list[str]) -> None:
        super().__init__(message)
        self.operations = operations


class MigrationFailed(MigrationError):
    """
    A migration raised; its transaction was rolled back, so neither its schema
    changes nor its ledger row remain. ``migration`` is ``"app:ID"``;
    ``applied`` lists the migrations of the same run that did commit.
    """

    def __init__(self, message: str, *, migration: str, applied: list[str]) -> None:
        super().__init__(message)
        self.migration = migration
        self.applied = applied


class UnsupportedServerVersion(ConferenceError):
    """The server is older than the PostgreSQL release this package needs."""


class EmbeddedServerError(ConferenceError):
    """The embedded PostgreSQL server could not be initialised or started."""


class ProductionDatabaseError(ConferenceError):
    """
    Refused to wipe or fill a database that looks like production (its name
    contains ``prod``, or ``CONFERENCE_ENV=production``); ``--force``
    overrides.
    """


class DatabaseNotEmpty(ConferenceError):
    """The conference tables hold rows that an operation would collide with."""


# --- Webhooks ----------------------------------------------------------------


class Unauthorized(ConferenceError):
    """
    The request is not a webhook signed by a configured LiveKit key (401).
    ``reason`` is a short code for logs and metrics: ``no_keys``,
    ``missing``, ``not_jwt``, ``no_issuer``, ``unknown_key``, ``expired``,
    ``bad_signature`` or ``body_mismatch``.
    """

    def __init__(self, message: str, *, reason: str = "bad_signature") -> None:
        super().__init__(message)
        self.reason = reason


class WebhookBacklog(DatabaseUnavailable):
    """
    A webhook waited longer than the bound for a database writer (every
    writer was stuck on a slow or unreachable database); it was not
    written. Answered 503: LiveKit retries.
    """


class MalformedWebhook(ConferenceError):
    """A signed webhook whose content cannot be recorded (answered with 400)."""


class BodyTooLarge(ConferenceError):
    """The request body is longer than the limit (answered with 413)."""


class ReplayError(ConferenceError):
    """The recording cannot be read, or the app cannot be reached."""


def install_cli_excepthook() -> None:
    """
    Print an uncaught :class:`ConferenceError` as one line instead of a
    traceback.

    ``piccolo`` imports ``piccolo_conf.py`` outside any ``try``, so a wrong
    ``DATABASE_URL`` would otherwise end in a page of asyncpg internals.
    Other exceptions keep the default hook.
    """
    previous_hook = sys.excepthook

    def hook(
        exc_type: type[BaseException],
        exc: BaseException,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, ConferenceError):
            print(f"conference: error: {exc}", file=sys.stderr)
            return
        previous_hook(exc_type, exc, traceback)

    if getattr(sys.excepthook, "__name__", "") != "hook":
        sys.excepthook = hook
