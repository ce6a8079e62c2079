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


class UnsupportedServerVersion(ConferenceError):
    """The server is older than the PostgreSQL release this package needs."""


class EmbeddedServerError(ConferenceError):
    """The embedded PostgreSQL server could not be initialised or started."""


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
