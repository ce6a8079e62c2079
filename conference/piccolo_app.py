"""
The ``conference`` Piccolo app: its tables, migrations and commands.

Host applications list ``"conference.piccolo_app"`` in their
``APP_REGISTRY``; ``piccolo migrations forwards all`` then applies this
app's migrations with theirs.
"""

from pathlib import Path

from piccolo.conf.apps import AppConfig, Command

from conference.commands.erase import erase
from conference.commands.erd import erd
from conference.commands.generate import generate
from conference.commands.migrate import migrate
from conference.commands.replay import replay
from conference.commands.retention import retention
from conference.commands.rollup import rollup
from conference.commands.run import run
from conference.commands.seed import seed
from conference.commands.status import status
from conference.commands.verify import verify
from conference.tables import APP_TABLES

APP_CONFIG = AppConfig(
    app_name="conference",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=list(APP_TABLES),
    migration_dependencies=[],
    commands=[
        Command(run),
        Command(migrate),
        Command(replay),
        Command(status),
        Command(verify),
        Command(seed),
        Command(generate),
        Command(retention),
        Command(erase),
        Command(erd),
        Command(rollup),
    ],
)
