"""
The admin's "Erase a participant" form in a real headless Chromium, against
uvicorn and a seeded PostgreSQL 18: a superuser gets a preview that changes
nothing, then erases after typing the identity again; a staff user who is
not a superuser is refused.

Outside CI these tests skip, saying why, when no Chromium is installed;
under ``CI=true`` a missing browser fails them.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from conference.devdata.seed import seed
from tests.browser import browser_page, chromium_path, log_in
from tests.support import LiveServer, ensure_admin_user

SUPERUSER = ("erase-superuser", "erase-test-password-123")
STAFF = ("erase-staff", "erase-test-password-456")
FORM = "/admin/#/forms/erase-a-participant"


@pytest.fixture
async def seeded(connection: asyncpg.Connection) -> asyncpg.Connection:
    """The development seed, a superuser and a staff user who is not one."""
    await seed(force=True)
    for (username, password), superuser in ((SUPERUSER, True), (STAFF, False)):
        await ensure_admin_user(username, password, superuser=superuser)
    return connection


def _submit(page, server: LiveServer, identity: str, confirm: str = "") -> None:
    page.goto(f"{server.base_url}{FORM}")
    page.locator("input[name=identity]").fill(identity)
    page.locator("input[name=confirm]").fill(confirm)
    page.click("[data-uitest=submit_custom_form_button]")


async def _sessions(connection: asyncpg.Connection, identity: str) -> int:
    return int(
        await connection.fetchval("SELECT count(*) FROM participants WHERE identity = $1", identity)
    )


async def test_a_superuser_previews_then_erases_a_participant_in_the_browser(
    seeded: asyncpg.Connection, server: LiveServer
) -> None:
    executable = chromium_path()
    connection = seeded
    identity = await connection.fetchval(
        "SELECT identity FROM participants GROUP BY identity ORDER BY count(*) DESC, identity "
        "LIMIT 1"
    )
    sessions = await _sessions(connection, identity)
    events = await connection.fetchval("SELECT count(*) FROM analytics")
    assert sessions >= 1

    def preview() -> None:
        with browser_page(executable) as page:
            log_in(page, server.base_url, *SUPERUSER)
            _submit(page, server, identity)
            page.get_by_text("Preview, nothing changed").wait_for()

    await asyncio.to_thread(preview)
    assert await _sessions(connection, identity) == sessions
    assert await connection.fetchval("SELECT count(*) FROM analytics") == events
    assert not await connection.fetchval("SELECT count(*) FROM erasures")

    def erase() -> None:
        with browser_page(executable) as page:
            log_in(page, server.base_url, *SUPERUSER)
            _submit(page, server, identity, confirm=identity + "x")  # a typo: refused
            page.get_by_text("does not match").wait_for()
            _submit(page, server, identity, confirm=identity)
            page.get_by_text(f"Erased '{identity}'").wait_for()

    await asyncio.to_thread(erase)
    assert await _sessions(connection, identity) == 0
    assert not await connection.fetchval(
        "SELECT count(*) FROM analytics WHERE strpos(event_data::text, $1) > 0", identity
    )
    record = await connection.fetchrow("SELECT erased_by, counts FROM erasures")
    assert record["erased_by"] == f"admin:{SUPERUSER[0]}"
    assert identity not in record["counts"]


async def test_a_staff_user_who_is_not_a_superuser_cannot_erase(
    seeded: asyncpg.Connection, server: LiveServer
) -> None:
    executable = chromium_path()
    connection = seeded
    identity = await connection.fetchval("SELECT identity FROM participants LIMIT 1")
    sessions = await _sessions(connection, identity)

    def attempt() -> None:
        with browser_page(executable) as page:
            log_in(page, server.base_url, *STAFF)
            _submit(page, server, identity, confirm=identity)
            page.get_by_text("only superusers may erase participants").wait_for()

    await asyncio.to_thread(attempt)
    assert await _sessions(connection, identity) == sessions
    assert not await connection.fetchval("SELECT count(*) FROM erasures")
