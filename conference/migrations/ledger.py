"""
The ledger: which migration files exist, their checksums, and what a
database has applied — down to the step of a migration interrupted halfway.

Three tables, read and written through an open asyncpg connection (this
module imports nothing from :mod:`conference.db`, which needs it for
``pending_on``):

- Piccolo's own ``migration`` table: one row per applied migration, so that
  ``piccolo migrations backwards`` and ``check`` keep working.
- :data:`CHECKSUM_TABLE`: the sha256 of each applied file, for ``verify``.
- :data:`STEP_TABLE`: the steps done of a migration that is not finished
  (see :mod:`conference.migrations.executor`). Its rows go when the ledger
  row comes, in the same transaction.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.tables import Migration
from piccolo.conf.apps import AppConfig, Finder

from conference.errors import MigrationError

#: The runner's own table: one checksum per applied migration file.
CHECKSUM_TABLE = "conference_migration_checksums"

#: The steps done of migrations not finished yet (a run interrupted between
#: steps); the next run skips them.
STEP_TABLE = "conference_migration_steps"

_CREATE_CHECKSUM_TABLE = f"""
CREATE TABLE IF NOT EXISTS {CHECKSUM_TABLE} (
    app_name text NOT NULL,
    migration_id text NOT NULL,
    checksum text NOT NULL,
    file_name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_name, migration_id)
)
""".strip()

_CREATE_STEP_TABLE = f"""
CREATE TABLE IF NOT EXISTS {STEP_TABLE} (
    app_name text NOT NULL,
    migration_id text NOT NULL,
    step_key text NOT NULL,
    step integer NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_name, migration_id, step_key)
)
""".strip()

INSERT_LEDGER = "INSERT INTO migration (name, app_name) VALUES ($1, $2)"

UPSERT_CHECKSUM = f"""
INSERT INTO {CHECKSUM_TABLE} (app_name, migration_id, checksum, file_name)
VALUES ($1, $2, $3, $4)
ON CONFLICT (app_name, migration_id) DO UPDATE
SET checksum = EXCLUDED.checksum, file_name = EXCLUDED.file_name, applied_at = now()
""".strip()

INSERT_STEP = f"""
INSERT INTO {STEP_TABLE} (app_name, migration_id, step_key, step)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
""".strip()

DELETE_STEPS = f"DELETE FROM {STEP_TABLE} WHERE app_name = $1 AND migration_id = $2"


@dataclass(frozen=True)
class MigrationFile:
    """One migration module of a registered app."""

    app_name: str
    migration_id: str
    description: str
    path: Path
    module: ModuleType = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        """``app:ID``, as every result and message names it."""
        return f"{self.app_name}:{self.migration_id}"

    @property
    def key(self) -> tuple[str, str]:
        """``(app_name, migration_id)``, the ledger's key."""
        return (self.app_name, self.migration_id)

    def checksum(self) -> str:
        """sha256 of the file, line endings normalised (a Windows checkout is no change)."""
        return hashlib.sha256(self.path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


@dataclass(frozen=True)
class LedgerState:
    """
    What a database has applied.

    :param applied:
        When each applied migration ran, by ``(app_name, migration_id)``.
    :param checksums:
        The recorded checksum of each applied file.
    :param steps:
        For a migration interrupted between steps: the steps done, by their
        key (a hash of their SQL), with their number in the plan.
    """

    applied: dict[tuple[str, str], datetime] = field(default_factory=dict)
    checksums: dict[tuple[str, str], str] = field(default_factory=dict)
    steps: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)


# --- Finding migrations -----------------------------------------------------


def _migration_modules(folder: str) -> dict[str, ModuleType]:
    """Piccolo's discovery, without growing ``sys.path`` on every call."""
    entries = sys.path.count(folder)
    modules = BaseMigrationManager().get_migration_modules(folder)
    while sys.path.count(folder) > max(entries, 1):
        sys.path.remove(folder)
    return dict(modules)


def migration_files(app_configs: Sequence[AppConfig] | None = None) -> list[MigrationFile]:
    """
    Every migration of the apps in ``piccolo_conf``'s ``APP_REGISTRY``, in
    the order they apply: apps by their ``migration_dependencies``, then
    each app's migrations by ID (Piccolo's order).

    :param app_configs:
        The apps to look at; default all registered apps.
    """
    configs = list(app_configs) if app_configs is not None else Finder().get_app_configs()
    files = []
    for config in configs:
        modules = _migration_modules(config.resolved_migrations_folder_path)
        for migration_id in sorted(modules):
            module = modules[migration_id]
            files.append(
                MigrationFile(
                    app_name=config.app_name,
                    migration_id=migration_id,
                    description=str(getattr(module, "DESCRIPTION", "")),
                    path=Path(str(module.__file__)),
                    module=module,
                )
            )
    return files


def find_migration(files: list[MigrationFile], target: str) -> MigrationFile:
    """The file ``target`` (``ID`` or ``app:ID``) names; a clear error otherwise."""
    app_name, _, migration_id = target.partition(":")
    apps = {file.app_name for file in files}
    if app_name in apps:
        matches = [f for f in files if f.key == (app_name, migration_id)]
    else:
        matches = [f for f in files if f.migration_id == target]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(f.name for f in matches)
        raise MigrationError(f"target {target!r} is ambiguous ({names}); write it as app:ID")
    known = ", ".join(f.name for f in files[-5:])
    raise MigrationError(
        f"no migration {target!r}; give an ID or app:ID of a migration file "
        f"(the latest are: {known})"
    )


def reversible(
    files: list[MigrationFile], applied: dict[tuple[str, str], Any], target: str
) -> list[MigrationFile]:
    """The applied files from ``target`` on, newest first: what a reversal undoes."""
    first = files.index(find_migration(files, target))
    return [file for file in reversed(files[first:]) if file.key in applied]


def selected(
    files: list[MigrationFile], applied: dict[tuple[str, str], Any], target: str | None
) -> list[MigrationFile]:
    """The pending files, up to and including ``target`` in apply order."""
    last = files.index(find_migration(files, target)) if target else len(files) - 1
    return [file for file in files[: last + 1] if file.key not in applied]


# --- Reading and writing the ledger -----------------------------------------


async def _exists(connection: Any, table: str) -> bool:
    return bool(await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def ledger_exists(connection: Any) -> bool:
    """Whether all three ledger tables exist (else a run creates them first)."""
    for table in ("migration", CHECKSUM_TABLE, STEP_TABLE):
        if not await _exists(connection, table):
            return False
    return True


async def read_ledger(connection: Any) -> LedgerState:
    """The ledger of the database ``connection`` is connected to."""
    state = LedgerState()
    if await _exists(connection, "migration"):
        rows = await connection.fetch("SELECT app_name, name, ran_on FROM migration")
        state.applied.update({(row["app_name"], row["name"]): row["ran_on"] for row in rows})
    if await _exists(connection, CHECKSUM_TABLE):
        rows = await connection.fetch(
            f"SELECT app_name, migration_id, checksum FROM {CHECKSUM_TABLE}"
        )
        state.checksums.update(
            {(row["app_name"], row["migration_id"]): row["checksum"] for row in rows}
        )
    if await _exists(connection, STEP_TABLE):
        rows = await connection.fetch(
            f"SELECT app_name, migration_id, step_key, step FROM {STEP_TABLE}"
        )
        for row in rows:
            key = (row["app_name"], row["migration_id"])
            state.steps.setdefault(key, {})[row["step_key"]] = row["step"]
    return state


async def pending_on(connection: Any) -> list[str]:
    """
    The pending migrations (``app:ID``), read through an open asyncpg
    ``connection``; for :func:`conference.db.check_connection`.
    """
    state = await read_ledger(connection)
    return [file.name for file in migration_files() if file.key not in state.applied]


def ledger_setup() -> list[str]:
    """The statements that create the ledger tables (each ``IF NOT EXISTS``)."""
    return [
        *Migration.create_table(if_not_exists=True).ddl,
        _CREATE_CHECKSUM_TABLE,
        _CREATE_STEP_TABLE,
    ]


def record_statements(file: MigrationFile) -> list[tuple[str, tuple[Any, ...]]]:
    """The ledger row, the checksum, and the end of the step rows of ``file``."""
    return [
        (INSERT_LEDGER, (file.migration_id, file.app_name)),
        (UPSERT_CHECKSUM, (file.app_name, file.migration_id, file.checksum(), file.path.name)),
        (DELETE_STEPS, (file.app_name, file.migration_id)),
    ]


def unrecord_statements(file: MigrationFile) -> list[tuple[str, tuple[Any, ...]]]:
    """Forget ``file`` (it was reversed): its ledger row, checksum and step rows."""
    return [
        (
            "DELETE FROM migration WHERE name = $1 AND app_name = $2",
            (file.migration_id, file.app_name),
        ),
        (
            f"DELETE FROM {CHECKSUM_TABLE} WHERE app_name = $1 AND migration_id = $2",
            (file.app_name, file.migration_id),
        ),
        (DELETE_STEPS, (file.app_name, file.migration_id)),
    ]


def checksum_statement(file: MigrationFile) -> tuple[str, tuple[Any, ...]]:
    """The checksum upsert alone, for a file applied by stock Piccolo."""
    return record_statements(file)[1]


def step_statement(file: MigrationFile, step_key: str, step: int) -> tuple[str, tuple[Any, ...]]:
    """The row that says the step ``step_key`` (number ``step``) of ``file`` is done."""
    return (INSERT_STEP, (file.app_name, file.migration_id, step_key, step))
