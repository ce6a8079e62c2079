"""The data-layer benchmark runs end to end at a tiny scale (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.data_layer import section_name
from tests.support import ROOT

SCENARIOS = (
    "ingest",
    "piccolo insert",
    "active participants",
    "active meetings",
    "active meetings in room",
    "timeline",
    "timeline next page",
    "recordings by status",
    "recordings next page",
    "meeting stats",
)


def test_a_tiny_run_prints_and_writes_the_table_of_every_scenario(
    fresh_database_url: str, tmp_path: Path
) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text(
        "# Benchmarks\n\nkept\n\n<!-- begin other -->\nother section\n<!-- end other -->\n"
    )

    result = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.data_layer",
            "--meetings=40", "--repetitions=1", "--calls=2", "--ingest-rows=100",
            f"--database-url={fresh_database_url}", f"--output={output}", "--quiet",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for scenario in SCENARIOS:
        assert any(line.startswith(scenario + " ") for line in lines), (scenario, result.stdout)
    written = output.read_text()
    section = section_name(40)
    assert f"<!-- begin {section} -->" in written and f"<!-- end {section} -->" in written
    assert "| scenario | unit | asyncpg connection |" in written
    assert all(f"| {scenario} |" in written for scenario in SCENARIOS)
    assert "kept" in written and "other section" in written  # other sections stay
    assert "postgresql://" not in written  # no URL (or password) in the report
