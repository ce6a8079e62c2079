"""
A deliberately unsafe Piccolo app for tests/test_migrations_lint.py: its
second migration adds a NOT NULL column without a default to a table that
already exists, which squawk (adding-required-field) must catch.
"""

from pathlib import Path

from piccolo.conf.apps import AppConfig

APP_CONFIG = AppConfig(
    app_name="unsafe_fixture",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[],
    migration_dependencies=[],
)
