"""
Selecting the database: URL validation, the PostgreSQL 18.1 version check,
and one clear line instead of a traceback when something is wrong.
"""

from __future__ import annotations

import pytest

from conference.engine import (
    ConferenceEngine,
    check_server_version,
    parse_server_version,
    redact_url,
    validate_database_url,
    with_database,
)
from conference.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    UnsupportedServerVersion,
)
from tests.support import run_piccolo


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("18.6", (18, 6)),
        ("18.1 (Debian 18.1-1.pgdg13+2)", (18, 1)),
        ("18.10", (18, 10)),
        ("19devel", (19, 0)),
        ("18beta2", (18, 0)),
    ],
)
def test_parse_server_version_reads_major_and_minor(
    version: str, expected: tuple[int, int]
) -> None:
    assert parse_server_version(version) == expected


@pytest.mark.parametrize("version", ["18.1", "18.6", "18.10", "19.0", "19devel"])
def test_version_check_accepts_18_1_and_newer(version: str) -> None:
    check_server_version(version)


@pytest.mark.parametrize("version", ["18.0", "18beta2", "17.6 (Ubuntu 17.6-1)", "16.4", "9.6.24"])
def test_version_check_refuses_older_servers_naming_the_version(version: str) -> None:
    url = "postgresql://app:s3cret@db.internal:5432/livekit_conference"
    with pytest.raises(UnsupportedServerVersion) as caught:
        check_server_version(version, url)
    message = str(caught.value)
    assert "PostgreSQL 18.1 or newer is required" in message
    assert version.split()[0] in message
    assert "DATABASE_URL" in message
    assert "s3cret" not in message


async def test_engine_refuses_a_server_reporting_an_old_version(
    database_url: str,
) -> None:
    class SeventeenEngine(ConferenceEngine):
        async def server_version(self) -> str:
            return "17.6"

    with pytest.raises(UnsupportedServerVersion, match=r"points at 17\.6"):
        SeventeenEngine(url=database_url, connect_timeout=5)


async def test_engine_accepts_the_real_test_server(database_url: str) -> None:
    engine = ConferenceEngine(url=database_url, connect_timeout=5)
    version = await engine.server_version()
    assert parse_server_version(version) >= (18, 1)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://root@localhost/livekit_conference", "must start with postgresql://"),
        ("postgresql://localhost:5432/", "names no database"),
        ("postgresql://localhost:port/db", "malformed"),
    ],
)
def test_malformed_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        validate_database_url(url)


def test_redact_url_hides_the_password() -> None:
    assert redact_url("postgresql://app:hunter2@db:5432/x") == "postgresql://app:***@db:5432/x"


def test_unreachable_server_raises_database_unavailable() -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot reach PostgreSQL"):
        ConferenceEngine(url="postgresql://app:pw@127.0.0.1:1/db", connect_timeout=2)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:pw@127.0.0.1:1/livekit_conference", "cannot reach PostgreSQL"),
        ("mysql://nope", "must start with postgresql://"),
    ],
)
def test_piccolo_cli_prints_one_clear_line_for_a_bad_database_url(url: str, expected: str) -> None:
    result = run_piccolo(["migrations", "forwards", "all"], url, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("conference: error:")
    assert expected in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


async def test_missing_database_names_it_and_says_how_to_create_it(
    server_url: str,
) -> None:
    url = with_database(server_url, "no_such_database")
    with pytest.raises(DatabaseUnavailable, match="'no_such_database' does not exist"):
        ConferenceEngine(url=url, connect_timeout=5)
