"""
The embedded PostgreSQL 18 default: no DATABASE_URL gives a running
server with ``livekit_conference``, kept between commands, stoppable.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from conference import embedded
from conference.engine import parse_server_version, resolve_database_url
from conference.settings import Settings


@pytest.fixture
def state_dir(cluster_root: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir=cluster_root))
    yield path
    embedded.stop(path / "pgdata")


async def test_without_database_url_an_embedded_server_hosts_livekit_conference(
    state_dir: Path,
) -> None:
    settings = Settings(database_url=None, conference_state_dir=state_dir)
    url = resolve_database_url(settings)

    assert "/livekit_conference" in url
    connection = await asyncpg.connect(url)
    try:
        version = await connection.fetchval("SHOW server_version")
        name = await connection.fetchval("SELECT current_database()")
    finally:
        await connection.close()
    assert parse_server_version(version) >= (18, 1)
    assert name == "livekit_conference"
    assert (state_dir / "pgdata" / "PG_VERSION").read_text().strip() == "18"

    # A second resolution (the next command) reuses the running server.
    pid = embedded.running_server(state_dir / "pgdata").pid  # type: ignore[union-attr]
    assert resolve_database_url(settings) == url
    assert embedded.running_server(state_dir / "pgdata").pid == pid  # type: ignore[union-attr]


def test_stop_stops_the_server_and_start_brings_it_back(state_dir: Path) -> None:
    data_dir = state_dir / "pgdata"
    embedded.start(data_dir)
    assert embedded.running_server(data_dir) is not None

    assert embedded.stop(data_dir) is True
    assert embedded.running_server(data_dir) is None
    assert embedded.stop(data_dir) is False

    embedded.start(data_dir)
    assert embedded.running_server(data_dir) is not None


def test_cli_status_reports_a_stopped_server(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert embedded.main(["status", "--data-dir", str(state_dir / "pgdata")]) == 3
    assert "not running" in capsys.readouterr().out


async def test_stoppable_server_refuses_connections_while_stopped(
    stoppable_server, stoppable_database_url: str
) -> None:
    stoppable_server.stop()
    with pytest.raises(OSError):
        await asyncpg.connect(stoppable_database_url, timeout=2)
    stoppable_server.start()
    connection = await asyncpg.connect(stoppable_database_url, timeout=5)
    assert await connection.fetchval("SELECT 1") == 1
    await connection.close()
