"""
The usage dashboard (``conference.dashboard``) on a real uvicorn: refused
without an admin session; with one, the vendored Chart.js and the CSV are
served, and in headless Chromium the charts show the numbers of the report
API (``conference.reports.usage_report``).

Outside CI the browser test skips, saying why, when no Chromium is
installed; under ``CI=true`` a missing browser fails it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from piccolo.apps.user.tables import BaseUser
from piccolo_api.session_auth.tables import SessionsBase

from conference import reports
from conference.dashboard import CHART_JS_VERSION
from conference.devdata.seed import seed
from tests.browser import browser_page, chromium_path, fill_login_form
from tests.support import LiveServer, ensure_admin_user

USERNAME, PASSWORD = "dashboard-admin", "dashboard-test-password-123"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` (with piccolo-admin's session cookie ``id``), without following redirects."""
    request = urllib.request.Request(url, headers={"Cookie": f"id={token}"} if token else {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
async def seeded(connection: asyncpg.Connection) -> asyncpg.Connection:
    """The development seed, its rollups, and an admin user."""
    await seed(force=True)
    await reports.refresh()
    await ensure_admin_user(USERNAME, PASSWORD, superuser=False)
    return connection


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(database_url, state_dir=tmp_path)
    live.wait_until_serving()
    yield live
    live.close()


async def _session_token() -> str:
    user = await BaseUser.objects().get(BaseUser.username == USERNAME)
    assert user is not None
    session = await SessionsBase.create_session(user_id=user.id)
    return str(session.token)


def _range() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return str(today - timedelta(days=2)), str(today)


async def test_without_an_admin_session_the_dashboard_is_refused(
    seeded: asyncpg.Connection, server: LiveServer
) -> None:
    base = f"{server.base_url}/reports"
    page = await asyncio.to_thread(_get, f"{base}/")
    assert page[0] == 303 and page[1]["location"] == "/admin/"
    for path in ("/api/usage", "/usage.csv", "/api/rooms", "/static/chart.umd.min.js"):
        status, _, body = await asyncio.to_thread(_get, base + path)
        assert status == 401, path
        assert b"log in" in body
    forged = await asyncio.to_thread(_get, f"{base}/api/usage", "not-a-session")
    assert forged[0] == 401


async def test_with_a_session_it_serves_chart_js_json_and_csv_from_the_rollups(
    seeded: asyncpg.Connection, server: LiveServer
) -> None:
    token = await _session_token()
    base = f"{server.base_url}/reports"
    start, end = _range()

    status, headers, script = await asyncio.to_thread(
        _get, f"{base}/static/chart.umd.min.js", token
    )
    assert status == 200 and "javascript" in headers["content-type"]
    assert script.startswith(f"/*!\n * Chart.js v{CHART_JS_VERSION}".encode())

    status, _, body = await asyncio.to_thread(
        _get, f"{base}/usage.csv?start={start}&end={end}&grain=day", token
    )
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    expected = await reports.usage_report(
        datetime.fromisoformat(start).replace(tzinfo=UTC),
        datetime.fromisoformat(end).replace(tzinfo=UTC) + timedelta(days=1),
    )
    assert [int(row["meetings_started"]) for row in rows] == [
        bucket.meetings_started for bucket in expected.buckets
    ]
    assert [float(row["participant_minutes"]) for row in rows] == [
        bucket.participant_minutes for bucket in expected.buckets
    ]
    assert sum(int(row["meetings_started"]) for row in rows) == 3

    status, _, body = await asyncio.to_thread(
        _get, f"{base}/api/usage?start={end}&end={start}", token
    )
    assert status == 400 and b"before start" in body


async def test_the_charts_show_the_numbers_of_the_report_api(
    seeded: asyncpg.Connection, server: LiveServer
) -> None:
    executable = chromium_path()
    start, end = _range()
    expected = await reports.usage_report(
        datetime.fromisoformat(start).replace(tzinfo=UTC),
        datetime.fromisoformat(end).replace(tzinfo=UTC) + timedelta(days=1),
        grain="hour",
    )
    assert sum(bucket.participant_us for bucket in expected.buckets) > 0

    def browse() -> dict[str, list[float]]:
        with browser_page(executable) as page:
            page.goto(f"{server.base_url}/reports/")
            fill_login_form(page, USERNAME, PASSWORD)  # sent to the admin's login
            link = page.get_by_role("link", name="Usage reports")
            assert link.get_attribute("href") == "../reports/"

            page.goto(f"{server.base_url}/reports/?start={start}&end={end}&grain=hour")
            page.wait_for_selector("body[data-ready=true]")
            return page.evaluate(
                """() => Object.fromEntries(
                    ['chart-sessions', 'chart-minutes', 'chart-peak', 'chart-recording']
                    .flatMap((id) => Chart.getChart(id).data.datasets.map(
                        (set, index) => [id + ':' + index, set.data])))"""
            )

    shown = await asyncio.to_thread(browse)

    buckets = expected.buckets
    assert shown["chart-sessions:0"] == [b.meetings_started for b in buckets]
    assert shown["chart-sessions:1"] == [b.participant_sessions for b in buckets]
    assert shown["chart-minutes:0"] == [b.participant_minutes for b in buckets]
    assert shown["chart-peak:0"] == [b.peak_participants for b in buckets]
    assert shown["chart-recording:0"] == [b.recording_hours for b in buckets]
