"""The webhook benchmark runs end to end (a tiny run; no timing asserted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from benchmarks.webhooks import ENDPOINTS, main, section_name
from tests import support


async def _history(database_url: str) -> tuple[int, bool]:
    """Generated meetings (not the benchmark's own rooms), and whether analytics was analyzed."""
    connection = await asyncpg.connect(database_url)
    try:
        generated = await connection.fetchval(
            "SELECT count(*) FROM meetings WHERE room_name NOT LIKE 'product-sync%'"
        )
        analyzed = await connection.fetchval(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'analytics'"
        )
        return generated, analyzed
    finally:
        await connection.close()


def test_a_tiny_run_measures_every_route_without_errors_and_writes_its_own_section(
    tmp_path: Path, server_url: str
) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nkept by hand\n")
    database_url = asyncio.run(support.create_database(server_url, prefix="bench_webhooks_test"))
    try:
        argv = ["--requests", "22", "--rounds", "2", "--concurrency", "2", "--history", "30"]
        argv += ["--database-url", database_url, "--output", str(output)]
        assert main(argv) == 0  # 1 when any request was not answered 200
        # The history was loaded and analyzed before the requests.
        generated, analyzed = asyncio.run(_history(database_url))
    finally:
        asyncio.run(support.drop_database(server_url, database_url))
    assert generated == 30 and analyzed
    text = output.read_text()
    assert "kept by hand" in text
    name = "webhooks-connections-2"
    section = text.split(f"<!-- begin {name} -->", 1)[1].split(f"<!-- end {name} -->", 1)[0]
    assert "python -m benchmarks.webhooks --requests 22" in section
    assert "--database-url URL" in section  # not the URL itself
    assert "Load average" in section and "webhook / bare = " in section
    assert "webhook / webhook on asyncio + h11 = " in section
    assert "webhook / webhook with a 2 ms batch wait = " in section
    assert "webhook / verify = " in section
    assert "token / bare = " in section
    assert "holding 30 generated meetings (analyzed)" in section
    for name, *_ in ENDPOINTS:
        assert f"| {name} | 44 |" in section
    assert "msgspec decode_event alone" in section


def test_a_run_writes_the_section_of_its_load() -> None:
    assert section_name(workers=1, concurrency=32) == "webhooks"
    assert section_name(workers=2, concurrency=32) == "webhooks-workers-2"
    assert section_name(workers=1, concurrency=128) == "webhooks-connections-128"
    assert section_name(workers=2, concurrency=128) == "webhooks-workers-2-connections-128"
