"""How every ``piccolo conference`` command fails: one line on stderr, exit status 1."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime, timedelta, timezone

import pytest

from conference.commands.cli import exit_on_error, parse_moment
from conference.errors import ConfigurationError


@exit_on_error
async def _async_command(name: str, count: int = 1, force: bool = False) -> str:
    """
    An async command.

    :param name:
        What to fail with.
    """
    if name == "config":
        raise ConfigurationError("DATABASE_URL is not set; set it in .env")
    if name == "bug":
        raise KeyError("a bug")
    return name * count


@exit_on_error(ValueError)
def _sync_command(value: str) -> int:
    """A plain command that also expects ValueError."""
    return int(value)


def test_a_conference_error_prints_one_line_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        asyncio.run(_async_command("config"))

    assert exited.value.code == 1
    assert capsys.readouterr().err == "conference: error: DATABASE_URL is not set; set it in .env\n"


def test_the_error_types_given_are_reported_the_same_way(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        _sync_command("many")

    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith("conference: error: invalid literal for int()")


def test_an_unexpected_error_keeps_its_traceback() -> None:
    with pytest.raises(KeyError):
        asyncio.run(_async_command("bug"))


def test_a_command_that_succeeds_returns_its_result() -> None:
    assert asyncio.run(_async_command("ab", count=2)) == "abab"
    assert _sync_command("42") == 42


def test_the_command_keeps_what_targ_reads_signature_docstring_and_kind() -> None:
    assert inspect.iscoroutinefunction(_async_command)
    assert not inspect.iscoroutinefunction(_sync_command)
    # targ maps positional arguments with getfullargspec, not signature().
    assert inspect.getfullargspec(_async_command).args == ["name", "count", "force"]
    assert inspect.signature(_async_command).parameters["count"].default == 1
    assert ":param name:" in (_async_command.__doc__ or "")


def test_a_moment_without_a_zone_is_utc_and_one_with_a_zone_keeps_it() -> None:
    assert parse_moment("--until", "") is None
    assert parse_moment("--until", "2026-09-01T12:00") == datetime(2026, 9, 1, 12, tzinfo=UTC)
    assert parse_moment("--since", "2026-09-01T12:00+02:00") == datetime(
        2026, 9, 1, 12, tzinfo=timezone(timedelta(hours=2))
    )


def test_a_moment_that_is_not_iso_8601_names_its_option() -> None:
    with pytest.raises(ValueError, match=r"^--before must be an ISO 8601 time .* got 'yesterday'$"):
        parse_moment("--before", "yesterday")
