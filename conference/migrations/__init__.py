"""
The live-migration runner: Piccolo's migrations, applied so that a large,
busy database keeps serving while they run, and so that any number of
processes may migrate one database at the same moment.

What it adds to ``piccolo migrations forwards`` (the guide for users is
``conference/piccolo_migrations/README.md``):

- **Non-blocking by default.** Each migration's SQL (Piccolo's generated
  statements, and raw steps kept in ``FORWARDS_SQL``) is parsed and planned
  (:mod:`.planner`): indexes on existing tables are built ``CONCURRENTLY``,
  ``UNIQUE`` becomes a concurrent unique index plus ``ADD CONSTRAINT …
  USING INDEX``, ``CHECK`` and ``FOREIGN KEY`` are added ``NOT VALID`` and
  validated in a transaction of their own. Tables the migration creates
  need none of this.
- **Unsafe operations refused before anything runs** (:mod:`.safety`),
  with the safe recipe, unless the migration acknowledges them.
- **Locks that never stall traffic** (:mod:`.executor`): a short
  ``lock_timeout`` per attempt, retries with backoff and jitter within a
  budget, and the blockers logged.
- **Step-level state**: a migration interrupted between steps resumes; its
  ledger row is written only when every step is done (:mod:`.ledger`).
- **One process at a time**: an advisory lock (:data:`MIGRATION_LOCK_KEY`),
  polled so that a waiter holds no transaction open.
- **A dry run that is the plan**: the executor prints the very steps it
  would run, with each step's lock and retry policy; ``make lint`` runs
  squawk over it (:mod:`.lint`).
- **verify()** for CI: pending migrations, models without a migration,
  applied migration files that changed.
- :func:`backfill` for batched data changes in short transactions.

The ledger is Piccolo's own ``migration`` table, so ``piccolo migrations
backwards`` and ``check`` keep working.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .ledger import CHECKSUM_TABLE, STEP_TABLE, MigrationFile, migration_files, pending_on
from .safety import ACKNOWLEDGEMENTS

if TYPE_CHECKING:
    from .backfills import BackfillResult, backfill
    from .runner import (
        APPLICATION_NAME,
        CLIENT_CHECK_INTERVAL,
        MIGRATION_LOCK_KEY,
        MigrationRunResult,
        MigrationState,
        MigrationStep,
        VerifyResult,
        auto_migrate,
        migration_status,
        pending_migrations,
        run_migrations,
        verify,
    )

# The runner and backfill use conference.db, which uses the ledger: they are
# imported on first use, so that ``conference.db`` importing
# ``conference.migrations.ledger`` does not import them back (no cycle).
_LAZY = {
    "BackfillResult": "backfills",
    "backfill": "backfills",
    **dict.fromkeys(
        [
            "APPLICATION_NAME",
            "CLIENT_CHECK_INTERVAL",
            "MIGRATION_LOCK_KEY",
            "MigrationRunResult",
            "MigrationState",
            "MigrationStep",
            "VerifyResult",
            "auto_migrate",
            "migration_status",
            "pending_migrations",
            "run_migrations",
            "verify",
        ],
        "runner",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ACKNOWLEDGEMENTS",
    "APPLICATION_NAME",
    "CHECKSUM_TABLE",
    "CLIENT_CHECK_INTERVAL",
    "MIGRATION_LOCK_KEY",
    "STEP_TABLE",
    "BackfillResult",
    "MigrationFile",
    "MigrationRunResult",
    "MigrationState",
    "MigrationStep",
    "VerifyResult",
    "auto_migrate",
    "backfill",
    "migration_files",
    "migration_status",
    "pending_migrations",
    "pending_on",
    "run_migrations",
    "verify",
]
