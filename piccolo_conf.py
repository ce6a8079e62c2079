"""
Piccolo's configuration for this project: which database, which apps.

The database is ``DATABASE_URL`` when set, otherwise the embedded
PostgreSQL 18 (started on demand); see ``conference/engine.py``. Building
the engine checks the server, so a wrong URL or an old server fails here,
with one line, before any command runs.
"""

from piccolo.conf.apps import AppRegistry

from conference.engine import create_engine
from conference.errors import install_cli_excepthook

install_cli_excepthook()

DB = create_engine()

APP_REGISTRY = AppRegistry(
    apps=[
        "conference.piccolo_app",
        # Users and sessions: piccolo-admin logs in with these.
        "piccolo.apps.user.piccolo_app",
        "piccolo_api.session_auth.piccolo_app",
    ]
)
