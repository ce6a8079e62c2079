"""
Piccolo configuration of a host application that uses ``conference``: its
own app (``notes``) next to ``conference.piccolo_app``.
"""

from piccolo.conf.apps import AppRegistry

from conference.engine import create_engine

# DATABASE_URL, or the embedded PostgreSQL 18; checks the server is 18.1+.
DB = create_engine()

APP_REGISTRY = AppRegistry(
    apps=[
        "conference.piccolo_app",
        "notes.piccolo_app",
    ]
)
