"""
``make lint``'s migration check (``conference.migrations.lint``): squawk
over the SQL the runner really executes, planned offline.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def _lint(*apps: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conference.migrations.lint", *apps],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_conference_migrations_pass_squawk_as_the_runner_executes_them() -> None:
    result = _lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "squawk found nothing" in result.stdout


def test_lint_fails_on_a_deliberately_unsafe_migration() -> None:
    result = _lint("tests.migration_fixtures.unsafe.piccolo_app")
    assert result.returncode != 0
    assert "adding-required-field" in result.stdout
    assert "unsafe_fixture_2030_01_01T00_00_00_000002" in result.stdout


def test_lint_prints_the_plan_the_runner_would_run(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "conference.migrations.lint", "--keep", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=180,
    )
    composite = next(tmp_path.glob("*05_24_49*.sql")).read_text()
    # An index on a table an earlier migration created: concurrent, outside
    # a transaction, under the budget's lock_timeout; the ledger row last.
    assert "CREATE INDEX CONCURRENTLY analytics_meeting_id_created_at" in composite
    assert "outside a transaction (CONCURRENTLY)" in composite
    assert composite.index("CONCURRENTLY") < composite.index("INSERT INTO migration")
    keys = next(tmp_path.glob("*05_41_49*.sql")).read_text()
    assert "UNIQUE USING INDEX" in keys and "NOT VALID" in keys and "VALIDATE CONSTRAINT" in keys
