"""The webhook benchmark runs end to end (a tiny run; no timing asserted)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.webhooks import ENDPOINTS, main, section_name


def test_a_tiny_run_measures_every_route_without_errors_and_writes_its_own_section(
    tmp_path: Path,
) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nkept by hand\n")
    argv = ["--requests", "22", "--rounds", "2", "--concurrency", "2", "--history", "30"]
    argv += ["--output", str(output)]
    assert main(argv) == 0  # 1 when any request was not answered 200
    text = output.read_text()
    assert "kept by hand" in text
    name = "webhooks-connections-2"
    section = text.split(f"<!-- begin {name} -->", 1)[1].split(f"<!-- end {name} -->", 1)[0]
    assert "python -m benchmarks.webhooks --requests 22" in section
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
