"""
``python -m conference.migrations.lint``: squawk over the SQL the runner
will really execute, migration by migration — ``make lint`` runs it.

Each migration is planned as the runner plans it on a database where the
migrations before it are applied (offline: Piccolo's preview mode, no
server needed), rendered by the executor exactly as ``piccolo conference
migrate --dry_run`` prints it (``CONCURRENTLY``, ``NOT VALID``, the
timeouts, which steps run outside a transaction), and written to one file
per migration for squawk, with the project's ``.squawk.toml``. Piccolo's
own ``migration`` table and the runner's ledger tables are not ours to
lint: the files hold the migrations' steps only.

Exits non-zero when a migration would be refused (the refusal is printed)
or when squawk reports a problem.

    python -m conference.migrations.lint                       # conference's migrations
    python -m conference.migrations.lint tests.migration_fixtures.unsafe.piccolo_app
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQUAWK_CONFIG = ROOT / ".squawk.toml"


def _squawk() -> str:
    candidate = Path(sys.executable).parent / "squawk"
    return str(candidate) if candidate.exists() else "squawk"


async def write_plans(directory: Path) -> list[Path]:
    """
    Plan every migration of the configured apps offline and write each as
    ``NNN_app_ID.sql`` in ``directory``; raises
    :class:`~conference.errors.MigrationRefused` as the runner would.
    """
    from piccolo.engine.finder import engine_finder

    from conference.settings import get_settings

    from .ledger import migration_files
    from .planner import Catalog
    from .runner import describe_plans, plan_files, refuse

    engine = engine_finder()
    files = migration_files()
    plans = await plan_files(engine, files, Catalog())  # type: ignore[arg-type]
    refuse(plans)
    paths = []
    for number, (plan, described) in enumerate(
        zip(plans, describe_plans(plans, get_settings()), strict=True), start=1
    ):
        safe = re.sub(r"[^A-Za-z0-9]+", "_", plan.file.name)
        path = directory / f"{number:03d}_{safe}.sql"
        header = f"-- {plan.file.name}: {plan.file.description} ({plan.file.path.name})\n"
        path.write_text(header + "\n".join(described.statements) + "\n")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Plan, write, and run squawk; the exit status is the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "apps", nargs="*", default=["conference.piccolo_app"], help="piccolo_app modules"
    )
    parser.add_argument("--keep", type=Path, help="write the SQL files here and keep them")
    args = parser.parse_args(argv)
    os.environ["PICCOLO_CONF"] = "conference.migrations.offline_conf"
    os.environ["CONFERENCE_LINT_APPS"] = ",".join(args.apps)

    from conference.errors import MigrationRefused

    with tempfile.TemporaryDirectory(prefix="conference-squawk-") as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            paths = asyncio.run(write_plans(directory))
        except MigrationRefused as error:
            print(f"lint: {error}", file=sys.stderr)
            return 1
        result = subprocess.run(
            [_squawk(), "--config", str(SQUAWK_CONFIG), *map(str, paths)], check=False
        )
        if result.returncode == 0:
            print(
                f"lint: squawk found nothing in {len(paths)} migration(s) of {', '.join(args.apps)}"
            )
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
