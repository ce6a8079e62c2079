"""
``piccolo conference run`` (``make run``): from a fresh clone to the admin
in a browser; with ``--workers``, the production server too.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

from piccolo.utils.sync import run_sync

from conference.commands.cli import exit_on_error
from conference.settings import get_settings

logger = logging.getLogger(__name__)

#: Seconds uvicorn gives open requests after SIGTERM/Ctrl-C before closing.
GRACEFUL_SHUTDOWN_SECONDS = 5


@exit_on_error
def run(
    host: str = "",
    port: int = 0,
    seed: bool = True,
    app: str = "conference.app:create_app",
    factory: bool = True,
    workers: int = 1,
    proxy_headers: bool = False,
    forwarded_allow_ips: str = "127.0.0.1",
) -> None:
    """
    Migrate (when AUTO_MIGRATE is on: by default in development, not in
    production), seed an empty development database, make sure the
    development admin user exists, then serve the app (piccolo-admin at
    /admin/) with uvicorn.

    :param host:
        Interface to listen on (default: APP_HOST, 127.0.0.1). 0.0.0.0
        listens on every interface, for a LiveKit server in a container.
    :param port:
        Port to listen on (default: APP_PORT, 8000).
    :param seed:
        Seed development data when the conference tables are empty. Existing
        data is never touched; never in production.
    :param app:
        The ASGI app to serve, as ``module:function`` of a function that
        builds it (uvicorn --factory): a host application whose factory
        wraps ``conference.app.create_app()`` gets the same startup.
    :param factory:
        APP names a function that builds the app; --factory=false when it
        names an app object instead.
    :param workers:
        Server processes. Above 1, /metrics adds up the workers' counts
        through PROMETHEUS_MULTIPROC_DIR (default CONFERENCE_STATE_DIR/prometheus,
        emptied at start).
    :param proxy_headers:
        Trust X-Forwarded-For/-Proto from the addresses in
        --forwarded_allow_ips (behind a reverse proxy that terminates TLS).
    :param forwarded_allow_ips:
        Comma-separated addresses of the reverse proxies to trust, or *.
    """
    # Imported here: every `piccolo` command imports this module, and only
    # this one needs uvicorn and piccolo-admin.
    import uvicorn

    from conference.admin import ensure_development_admin
    from conference.devdata.seed import seed_if_empty
    from conference.logs import configure_logging
    from conference.migrations import pending_migrations, run_migrations

    settings = get_settings()
    host = host or settings.app_host
    port = port or settings.app_port
    configure_logging(settings)

    if settings.auto_migrate_enabled:
        migrated = run_sync(run_migrations())
        print(
            f"Migrations: applied {len(migrated.applied)}."
            if migrated.applied
            else "Migrations: all applied already."
        )
        pending: list[str] = []
    else:
        pending = run_sync(pending_migrations())
        print(
            f"Migrations: {len(pending)} pending, not applied (AUTO_MIGRATE is off); "
            "run `piccolo conference migrate`. /readyz answers 503 until then."
            if pending
            else "Migrations: all applied already."
        )

    if seed and not settings.production:
        if pending:
            print("Seed: skipped, the database is not migrated.")
        else:
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
    elif pending:
        print("  Users:    none yet: the database is not migrated")
    else:
        credentials = run_sync(ensure_development_admin(settings))
        print(f"  Username: {credentials.username}")
        print(f"  Password: {credentials.password}   (from {credentials.source})")
    print("  Stop with Ctrl-C; `make stop` also stops the embedded PostgreSQL.")
    print()

    if workers > 1:
        _share_metrics_between_workers(str(settings.conference_state_dir.resolve() / "prometheus"))

    # uvicorn finishes open requests and the lifespan (closing the pool),
    # then re-raises the signal that stopped it; exit 0 for it instead of
    # dying by SIGTERM or printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    uvicorn.run(
        app,
        factory=factory,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_level=settings.log_level.lower(),
        # conference.logs configures logging (LOG_FORMAT), here and in the app.
        log_config=None,
    )


def _share_metrics_between_workers(default_dir: str) -> None:
    """
    Point prometheus-client's multiprocess mode at an empty directory
    before the workers start (they inherit the environment).
    """
    from conference.metrics import reset_multiprocess_dir

    directory = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", default_dir)
    reset_multiprocess_dir(directory)
    logger.info("metrics of all workers are shared through %s", directory)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
