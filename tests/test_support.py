"""The tests' own helpers, where a fault would hide in every other test."""

from __future__ import annotations

import asyncpg
import pytest

from conference.engine import database_name
from tests import support


async def _exists(server_url: str, name: str) -> bool:
    connection = await asyncpg.connect(server_url)
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


async def test_drop_database_drops_what_create_database_made(server_url: str) -> None:
    # The embedded server's URL ends in ?host=/…/test-pgdata: splitting the
    # URL on "/" named "test-pgdata" and every throwaway database stayed.
    url = await support.create_database(server_url, prefix="conference_test_drop")
    name = database_name(url)
    assert await _exists(server_url, name)

    await support.drop_database(server_url, url)

    assert not await _exists(server_url, name)


async def test_drop_database_refuses_the_server_database(server_url: str) -> None:
    with pytest.raises(ValueError, match="no throwaway database"):
        await support.drop_database(server_url, server_url)
