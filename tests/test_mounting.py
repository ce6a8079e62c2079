"""
README's example of mounting ``create_app()`` in a host ASGI app, served
with uvicorn as it stands in README.md: the mounted app starts its pool,
serves under the prefix and closes the pool on shutdown.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT, LiveServer

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
HEADING = "### Mounting it in another ASGI app"


def mounting_example() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n{HEADING}\n")
    end = text.index("\n#", start + len(HEADING) + 2)
    (example,) = [body for lang, body in FENCE.findall(text[start:end]) if lang == "python"]
    return example


def test_the_readme_mounting_example_starts_and_closes_the_pool(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "mounted_example.py").write_text(mounting_example())
    live = LiveServer(
        database_url,
        env={"PYTHONPATH": str(tmp_path)},
        app="mounted_example:app",
        factory=False,
        state_dir=tmp_path,
    )
    try:
        # LiveServer waits on /healthz; the host has none, the mount has.
        live.base_url += "/conference"
        live.wait_until_serving()
        ready = httpx.get(f"{live.base_url}/readyz", timeout=10)
        metrics = httpx.get(f"{live.base_url}/metrics", timeout=10)
        live.terminate()
        output = live.output()
    finally:
        live.close()

    assert ready.status_code == 200, ready.text
    pool = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
    }
    assert pool["conference_db_pool_connections"] >= 1  # the pool runs
    assert "connection pool started" in output
    assert "connection pool closed" in output
