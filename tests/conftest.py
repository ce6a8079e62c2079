"""
Fixtures shared by the whole suite.

Before any test module is imported, :func:`pytest_configure` creates a
fresh, fully migrated database on the test server (never the developer's,
see ``tests/support.py``) and points ``DATABASE_URL`` at it, so that
``piccolo_conf.py`` and every table in this process use it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
from piccolo.utils.sync import run_sync

from tests import support

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
