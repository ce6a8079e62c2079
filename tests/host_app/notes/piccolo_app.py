"""The host's own Piccolo app; its tables refer to conference's."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from notes.tables import Note

APP_CONFIG = AppConfig(
    app_name="notes",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[Note],
    # conference's migrations run first: notes refer to meetings.
    migration_dependencies=["conference.piccolo_app"],
)
