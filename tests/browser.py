"""
What the browser tests share: finding Debian's ``chromium``, a headless page
driven by Playwright, and logging in to the admin.

Outside CI a test that needs Chromium skips, saying why, when none is
installed; under ``CI=true`` a missing browser fails it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",  # the suite runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The machine has no network but loopback: keep Chromium from trying.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if found:
        return found
    reason = "no Chromium found (install Debian's chromium or set CHROMIUM_PATH)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests")
    pytest.skip(reason)


@contextmanager
def browser_page(executable: str) -> Iterator[Any]:
    """
    A fresh headless Chromium page. Playwright's sync API runs its own event
    loop: use the page from one thread (``asyncio.to_thread`` in a test).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            browser.close()


def fill_login_form(page: Any, username: str, password: str) -> None:
    """Submit the admin's login form shown on ``page`` and wait for the admin."""
    page.wait_for_selector("[data-uitest=login_button]")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("[data-uitest=login_button]")
    page.wait_for_selector("#nav")


def log_in(page: Any, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/admin/")
    fill_login_form(page, username, password)
