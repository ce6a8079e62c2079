"""
piccolo-admin in a real headless Chromium (Debian's ``chromium``, driven by
Playwright; see tests/browser.py), against uvicorn and a seeded PostgreSQL 18.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from conference.devdata.seed import seed
from tests.browser import browser_page, chromium_path, log_in
from tests.support import LiveServer, ensure_admin_user

USERNAME, PASSWORD = "browser-admin", "browser-test-password-123"


@pytest.fixture
async def seeded(connection: asyncpg.Connection) -> asyncpg.Connection:
    """The session database with the development seed and an admin user."""
    await seed(force=True)
    await ensure_admin_user(USERNAME, PASSWORD, superuser=True)
    return connection


async def test_admin_shows_meetings_their_participants_and_saves_metadata(
    seeded: asyncpg.Connection, server: LiveServer
) -> None:
    executable = chromium_path()
    meetings = await seeded.fetch("SELECT id, room_name FROM meetings ORDER BY created_at")
    assert len(meetings) == 3
    busiest = await seeded.fetchrow(
        "SELECT m.id, m.room_name, array_agg(p.identity) AS identities "
        "FROM meetings m JOIN participants p ON p.meeting_id = m.id "
        "GROUP BY m.id, m.room_name ORDER BY count(*) DESC LIMIT 1"
    )
    others = await seeded.fetch(
        "SELECT identity FROM participants WHERE meeting_id <> $1", busiest["id"]
    )
    only_elsewhere = {r["identity"] for r in others} - set(busiest["identities"])

    # Playwright's sync API runs its own event loop: drive it from a thread.
    def browse() -> None:
        with browser_page(executable) as page:
            _browse(page)

    def _browse(page) -> None:
        log_in(page, server.base_url, USERNAME, PASSWORD)
        page.goto(f"{server.base_url}/admin/#/meetings")
        for meeting in meetings:
            page.get_by_role("link", name=meeting["room_name"], exact=True).wait_for()

        # Open the busiest meeting, then its participants through the
        # "referencing tables" links piccolo-admin shows on a row.
        page.get_by_role("link", name=busiest["room_name"], exact=True).click()
        page.wait_for_selector("textarea[name=metadata]")
        page.get_by_text("Show referencing tables").click()
        page.get_by_role("link", name="participants with a matching meeting_id").click()
        for identity in busiest["identities"]:
            page.get_by_role("link", name=identity, exact=True).wait_for()
        for identity in only_elsewhere:
            assert page.get_by_role("link", name=identity, exact=True).count() == 0

        page.goto(f"{server.base_url}/admin/#/meetings/{busiest['id']}/")
        editor = page.locator("textarea[name=metadata]")
        editor.wait_for()
        editor.fill(json.dumps({"topic": "edited in the browser", "priority": 2}))
        page.click("[data-uitest=save_button]")
        page.get_by_text("Successfully saved").wait_for()

    await asyncio.to_thread(browse)

    saved = await seeded.fetchval("SELECT metadata FROM meetings WHERE id = $1", busiest["id"])
    assert json.loads(saved) == {"topic": "edited in the browser", "priority": 2}
