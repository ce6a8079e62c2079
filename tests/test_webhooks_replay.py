"""
``piccolo conference replay``: recorded webhooks, signed and posted to a
running app, as a developer uses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conference.webhooks.replay import load_events, replay_events
from tests.support import ROOT, LiveServer, run_piccolo
from tests.webhook_sessions import (
    WEBHOOK_ENV,
    empty_tables,
    product_sync,
    read_state,
    row_counts,
)

SAMPLE = ROOT / "docs" / "sample-webhooks.jsonl"


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(database_url, env=WEBHOOK_ENV, state_dir=tmp_path_factory.mktemp("replay"))
    live.wait_until_serving()
    yield live
    live.close()


@pytest.fixture
def tables(database_url: str) -> Iterator[str]:
    empty_tables(database_url)
    yield database_url
    empty_tables(database_url)


@pytest.fixture
def livekit_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WEBHOOK_ENV.items():
        monkeypatch.setenv(name, value)


def test_the_sample_file_is_the_session_the_tests_check() -> None:
    # Regenerate with: python -m tests.webhook_sessions > docs/sample-webhooks.jsonl
    assert SAMPLE.read_text().splitlines() == [event.body for event in product_sync()]


def test_replaying_the_sample_records_a_session_and_replaying_it_again_changes_nothing(
    server: LiveServer, tables: str, livekit_keys: None
) -> None:
    url = f"--url={server.base_url}/webhooks/livekit"
    first = run_piccolo(["conference", "replay", str(SAMPLE), url], tables)
    assert "22 events: 22 recorded" in first.stdout
    counts = {"meetings": 1, "participants": 5, "recordings": 1, "analytics": 22}
    assert row_counts(read_state(tables)) == counts

    again = run_piccolo(["conference", "replay", str(SAMPLE), url], tables)
    assert "22 events: 22 duplicate" in again.stdout
    assert row_counts(read_state(tables)) == counts

    fresh = run_piccolo(["conference", "replay", str(SAMPLE), url, "--fresh"], tables)
    assert "22 events: 22 recorded" in fresh.stdout
    assert row_counts(read_state(tables)) == {table: 2 * n for table, n in counts.items()}


def test_a_json_array_of_events_replays_like_json_lines(
    server: LiveServer, tables: str, tmp_path: Path
) -> None:
    recording = tmp_path / "events.json"
    recording.write_text(json.dumps([json.loads(event.body) for event in product_sync()[:3]]))
    result = replay_events(
        load_events(recording),
        f"{server.base_url}/webhooks/livekit",
        WEBHOOK_ENV["LIVEKIT_API_KEY"],
        WEBHOOK_ENV["LIVEKIT_API_SECRET"],
    )
    assert result.ok, result.deliveries
    assert result.summary() == "3 events: 3 recorded"


def test_replay_without_a_key_or_without_the_app_says_what_to_do(
    tables: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_WEBHOOK_KEYS"):
        monkeypatch.setenv(name, "")
    no_key = run_piccolo(["conference", "replay", str(SAMPLE)], tables, check=False)
    assert no_key.returncode == 1
    assert "set LIVEKIT_API_KEY and LIVEKIT_API_SECRET" in no_key.stderr

    monkeypatch.setenv("LIVEKIT_API_KEY", "APIkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "a-secret-long-enough-for-hs256-0123456789")
    nobody = run_piccolo(
        ["conference", "replay", str(SAMPLE), "--url=http://127.0.0.1:9/webhooks/livekit"],
        tables,
        check=False,
    )
    assert nobody.returncode == 1
    assert "is the app running?" in nobody.stderr
