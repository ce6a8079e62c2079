"""
Fixtures shared by the whole suite.

Before any test module is imported, :func:`pytest_configure` creates a
fresh, fully migrated database on the test server (never the developer's,
see ``tests/support.py``) and points ``DATABASE_URL`` at it, so that
``piccolo_conf.py`` and every table in this process use it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from piccolo.utils.sync import run_sync

from conference import embedded
from tests import support
from tests.replication import StreamingReplica

_state: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    server_url = support.test_server_url()
    database_url = run_sync(support.create_database(server_url))
    _state.update(server_url=server_url, database_url=database_url)
    os.environ["DATABASE_URL"] = database_url
    from conference.settings import get_settings

    get_settings.cache_clear()
    support.run_piccolo(["migrations", "forwards", "all"], database_url)


def pytest_unconfigure(config: pytest.Config) -> None:
    if "database_url" in _state:
        run_sync(support.drop_database(_state["server_url"], _state["database_url"]))


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the test server's ``postgres`` database."""
    return _state["server_url"]


@pytest.fixture(scope="session")
def database_url() -> str:
    """URL of the session's migrated test database (``DATABASE_URL``)."""
    return _state["database_url"]


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``CONFERENCE_ENV=production`` for this process and its subprocesses."""
    monkeypatch.setenv("CONFERENCE_ENV", "production")
    from conference.settings import get_settings

    get_settings.cache_clear()
    yield
    monkeypatch.delenv("CONFERENCE_ENV")
    get_settings.cache_clear()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[support.LiveServer]:
    """The app under a real uvicorn on the session database, stopped after the test."""
    live = support.LiveServer(database_url, state_dir=tmp_path)
    live.wait_until_serving()
    yield live
    live.close()


@pytest.fixture
async def fresh_database_url(server_url: str) -> AsyncIterator[str]:
    """An empty database of its own, dropped after the test."""
    url = await support.create_database(server_url)
    yield url
    await support.drop_database(server_url, url)


@pytest.fixture
async def connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """
    A raw asyncpg connection to the migrated test database; the conference
    tables are emptied after the test.
    """
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.execute("TRUNCATE " + ", ".join(support.CONFERENCE_TABLES) + " CASCADE")
        await conn.close()


class StoppableServer:
    """
    A PostgreSQL 18 cluster of its own that a test may stop and start, to
    see how the code behaves while the database is down and after it
    returns, without disturbing the rest of the suite.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server_url = embedded.start(data_dir, "postgres")

    def stop(self) -> None:
        embedded.stop(self.data_dir)

    def start(self) -> None:
        embedded.start(self.data_dir)


@pytest.fixture(scope="session")
def cluster_root() -> Iterator[Path]:
    """
    A directory for the suite's extra PostgreSQL clusters, removed at the
    end. Not under pytest's tmp_path: pytest resets /tmp/pytest-of-USER to
    mode 0700 whenever a session starts, which locks out the OS user the
    clusters run as (root runs them as ``embedded_postgres``).
    """
    root = Path(tempfile.mkdtemp(prefix="conference-test-clusters-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def stoppable_server(cluster_root: Path) -> Iterator[StoppableServer]:
    """A separate cluster for outage tests; stopped at the end of the session."""
    server = StoppableServer(cluster_root / "stoppable" / "pgdata")
    yield server
    server.stop()


@pytest.fixture
async def stoppable_database_url(stoppable_server: StoppableServer) -> AsyncIterator[str]:
    """
    An empty database on :func:`stoppable_server`; the server is running
    again and the database dropped after the test.
    """
    stoppable_server.start()
    url = await support.create_database(stoppable_server.server_url)
    yield url
    stoppable_server.start()
    await support.drop_database(stoppable_server.server_url, url)


@pytest.fixture(scope="session")
async def streaming_replica(cluster_root: Path) -> AsyncIterator[StreamingReplica]:
    """
    A primary cluster of its own with a migrated database and a streaming
    replica of it (``pg_basebackup -R``); both stopped at the end of the
    session. Tests that stop the replica or pause its replay undo that.
    """
    (cluster_root / "replication").mkdir()
    pair = StreamingReplica(cluster_root / "replication")
    try:
        pair.database_url = await support.create_database(pair.server_url)
        support.run_piccolo(["migrations", "forwards", "all"], pair.database_url)
        pair.create_replica()
        yield pair
    finally:
        pair.close()
