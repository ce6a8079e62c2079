"""
``piccolo conference run`` (``make run``): it migrates only when
AUTO_MIGRATE says so, like the app's own lifespan, and uvicorn serves on
uvloop and httptools.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn

from tests.support import LiveServer

PRODUCTION = {
    "CONFERENCE_ENV": "production",
    "ALLOWED_HOSTS": "127.0.0.1",
    "ADMIN_PASSWORD": "correct-horse-battery-staple-9",
}


async def test_run_in_production_leaves_migrations_to_the_release_step(
    fresh_database_url: str, tmp_path: Path
) -> None:
    live = LiveServer(fresh_database_url, env=PRODUCTION, state_dir=tmp_path, via_run=True)
    try:
        await asyncio.to_thread(live.wait_until_serving)
        ready = await asyncio.to_thread(httpx.get, f"{live.base_url}/readyz", timeout=10)
        output = live.output()
    finally:
        live.close()

    assert "pending, not applied (AUTO_MIGRATE is off)" in output
    assert ready.status_code == 503
    assert "migration(s) pending" in ready.json()["reason"]
    connection = await asyncpg.connect(fresh_database_url)
    try:
        assert await connection.fetchval("SELECT to_regclass('meetings')") is None
    finally:
        await connection.close()


def test_run_migrates_when_auto_migrate_is_set_even_in_production(
    fresh_database_url: str, tmp_path: Path
) -> None:
    live = LiveServer(
        fresh_database_url,
        env={**PRODUCTION, "AUTO_MIGRATE": "true"},
        state_dir=tmp_path,
        via_run=True,
    )
    try:
        live.wait_until_serving(timeout=120)
        ready = httpx.get(f"{live.base_url}/readyz", timeout=10)
        output = live.output()
    finally:
        live.close()

    assert "Migrations: applied " in output
    assert ready.status_code == 200, ready.text


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not exist on Windows")
def test_uvicorn_auto_picks_uvloop_and_httptools() -> None:
    # Both are dependencies of conference for speed (docs/scaling.md): this
    # breaks if one goes missing or uvicorn's "auto" stops choosing it.
    import uvloop

    config = uvicorn.Config("conference.app:create_app", factory=True)  # loop/http "auto"
    config.load()
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
    loop_factory = config.get_loop_factory()
    assert loop_factory is not None
    loop = loop_factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
