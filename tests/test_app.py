"""
The ASGI app over real HTTP: uvicorn started by the test, a real
PostgreSQL 18 behind it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from conference.admin import check_production_settings, development_credentials
from conference.devdata.target import table_names
from conference.errors import ConfigurationError
from conference.settings import Settings
from tests.support import ROOT, LiveServer, ensure_admin_user

ADMIN_API_REQUESTS = [
    ("GET", "/admin/api/tables/"),
    ("GET", "/admin/api/tables/grouped/"),
    ("GET", "/admin/api/tables/meetings/"),
    ("GET", "/admin/api/tables/meetings/schema/"),
    ("GET", "/admin/api/tables/participants/?meeting_id=00000000-0000-0000-0000-000000000000"),
    ("GET", "/admin/api/tables/piccolo_user/"),
    ("GET", "/admin/api/user/"),
    ("GET", "/admin/api/forms/"),
    ("POST", "/admin/api/tables/meetings/"),
    ("DELETE", "/admin/api/tables/meetings/00000000-0000-0000-0000-000000000000/"),
]


@pytest.fixture
async def admin_user() -> tuple[str, str]:
    username, password = "test-admin", "a-long-test-password-1234"
    await ensure_admin_user(username, password, superuser=True)
    return username, password


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


NO_KEYS = {"LIVEKIT_API_KEY": "", "LIVEKIT_API_SECRET": "", "LIVEKIT_WEBHOOK_KEYS": ""}


def test_importing_the_app_module_builds_no_app_and_logs_nothing() -> None:
    imported = _python(
        "import logging; logging.basicConfig(level=logging.DEBUG); import conference.app",
        NO_KEYS,
    )

    assert imported.returncode == 0, imported.stderr
    assert imported.stderr == ""


def test_the_old_app_attribute_still_serves_with_a_deprecation_warning() -> None:
    built = _python(
        "import logging; logging.basicConfig(); from conference.app import app; "
        "print(type(app).__name__, len(app.routes) > 3)",
        NO_KEYS,
    )

    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == "Starlette True"
    assert "FutureWarning" in built.stderr
    assert "uvicorn --factory conference.app:create_app" in built.stderr
    assert "no LiveKit API key is configured" in built.stderr  # built when read


def test_startup_objects_are_left_out_of_full_garbage_collections() -> None:
    # A full collection walked every object of startup and paused all
    # requests for ~50 ms; the lifespan freezes them once it is ready.
    served = _python(
        "import asyncio, gc\n"
        "from conference.app import create_app\n"
        "app = create_app()\n"
        "async def main():\n"
        "    async with app.router.lifespan_context(app):\n"
        "        tracked = any(o is app.router for o in gc.get_objects())\n"
        "        print(gc.get_freeze_count(), tracked)\n"
        "asyncio.run(main())\n",
        NO_KEYS,
    )

    assert served.returncode == 0, served.stderr
    frozen, router_tracked = served.stdout.split()
    assert int(frozen) > 10_000
    assert router_tracked == "False"  # frozen with the rest of startup


def test_healthz_answers_without_the_database(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_a_migrated_reachable_database(server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["server_version"].startswith("18.")
    assert body["pending_migrations"] == []


def test_readyz_is_503_while_the_database_is_down_and_recovers_without_restart(
    stoppable_server, stoppable_database_url: str, tmp_path: Path
) -> None:
    live = LiveServer(stoppable_database_url, state_dir=tmp_path)
    try:
        live.wait_until_serving()
        assert httpx.get(f"{live.base_url}/readyz", timeout=10).status_code == 200

        stoppable_server.stop()
        down = httpx.get(f"{live.base_url}/readyz", timeout=10)
        assert down.status_code == 503
        assert down.json()["status"] == "unavailable"
        assert down.json()["reason"]
        assert httpx.get(f"{live.base_url}/healthz").status_code == 200

        stoppable_server.start()
        again = httpx.get(f"{live.base_url}/readyz", timeout=10)
        assert again.status_code == 200, again.text
        assert live.process.poll() is None, "the app restarted or died"
    finally:
        live.close()


@pytest.mark.parametrize(("method", "path"), ADMIN_API_REQUESTS)
def test_admin_api_refuses_requests_without_a_session(
    server: LiveServer, method: str, path: str
) -> None:
    response = httpx.request(method, f"{server.base_url}{path}", json={})
    assert response.status_code in (401, 403), (method, path, response.status_code)
    assert "room_name" not in response.text


def test_admin_api_refuses_a_forged_session_cookie(server: LiveServer) -> None:
    response = httpx.get(
        f"{server.base_url}/admin/api/tables/meetings/", cookies={"id": "forged-token"}
    )
    assert response.status_code in (401, 403)


def _login(client: httpx.Client, base_url: str, username: str, password: str, csrf: bool):
    client.get(f"{base_url}/admin/")  # sets the CSRF cookie
    headers = {"X-CSRFToken": client.cookies.get("csrftoken", "")} if csrf else {}
    return client.post(
        f"{base_url}/admin/public/login/",
        json={"username": username, "password": password},
        headers=headers,
    )


def test_login_without_the_csrf_token_is_refused(
    server: LiveServer, admin_user: tuple[str, str]
) -> None:
    with httpx.Client() as client:
        refused = _login(client, server.base_url, *admin_user, csrf=False)
        assert refused.status_code == 403
        assert "id" not in client.cookies


def test_login_with_the_csrf_token_opens_the_admin_api(
    server: LiveServer, admin_user: tuple[str, str]
) -> None:
    with httpx.Client() as client:
        response = _login(client, server.base_url, *admin_user, csrf=True)
        assert response.status_code == 200, response.text
        tables = client.get(f"{server.base_url}/admin/api/tables/")
        assert tables.status_code == 200
        assert set(table_names()) <= set(tables.json())


def test_wrong_password_is_refused(server: LiveServer, admin_user: tuple[str, str]) -> None:
    with httpx.Client() as client:
        response = _login(client, server.base_url, admin_user[0], "wrong", csrf=True)
        assert response.status_code == 401
        assert "id" not in client.cookies


async def test_two_apps_started_at_once_on_a_fresh_database_both_become_ready(
    fresh_database_url: str, tmp_path: Path
) -> None:
    servers = [LiveServer(fresh_database_url, state_dir=tmp_path) for _ in range(2)]
    try:
        await asyncio.gather(
            *(asyncio.to_thread(server.wait_until_serving, 120) for server in servers)
        )
        async with httpx.AsyncClient(timeout=10) as client:
            for server in servers:
                response = await client.get(f"{server.base_url}/readyz")
                assert response.status_code == 200, server.output()
    finally:
        for server in servers:
            server.close()


async def test_sigterm_lets_the_request_in_flight_finish_then_exits_cleanly(
    database_url: str, tmp_path: Path
) -> None:
    live = LiveServer(
        database_url, app="tests.slow_app:create_app", state_dir=tmp_path, via_run=True
    )
    try:
        await asyncio.to_thread(live.wait_until_serving)
        async with httpx.AsyncClient(timeout=30) as client:
            request = asyncio.create_task(client.get(f"{live.base_url}/slow"))
            await _wait_until_sleeping(database_url)
            exit_code = await asyncio.to_thread(live.terminate)
            response = await request

        assert response.status_code == 200
        assert response.json() == {"answer": 42}
        assert exit_code == 0, live.output()
        assert "connection pool closed" in live.output()
    finally:
        live.close()


async def _wait_until_sleeping(database_url: str, timeout: float = 10) -> None:
    """Until the slow request's query runs on the server."""
    connection = await asyncpg.connect(database_url)
    try:
        async with asyncio.timeout(timeout):
            while not await connection.fetchval(  # noqa: ASYNC110 - another process
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE query LIKE 'SELECT pg_sleep(2)%' AND state = 'active'"
            ):
                await asyncio.sleep(0.05)
    finally:
        await connection.close()


def test_production_refuses_to_start_without_allowed_hosts_or_with_a_weak_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_production_settings(Settings(conference_env="production", admin_password="admin"))
    message = str(caught.value)
    assert "ALLOWED_HOSTS is empty" in message
    assert "ADMIN_PASSWORD is too weak" in message

    with pytest.raises(ConfigurationError, match="ADMIN_PASSWORD is not set"):
        check_production_settings(
            Settings(conference_env="production", allowed_hosts="conference.example.com")
        )

    check_production_settings(
        Settings(
            conference_env="production",
            allowed_hosts="conference.example.com",
            admin_password="correct-horse-battery-staple-9",
        )
    )


def test_uvicorn_refuses_a_weak_production_configuration(database_url: str, tmp_path: Path) -> None:
    live = LiveServer(
        database_url,
        env={"CONFERENCE_ENV": "production", "ADMIN_PASSWORD": "short"},
        state_dir=tmp_path,
    )
    try:
        exit_code = live.process.wait(timeout=60)
        assert exit_code != 0
        assert "refusing to start with CONFERENCE_ENV=production" in live.output()
    finally:
        live.close()


def test_production_app_sets_secure_session_cookies_and_checks_the_host(
    database_url: str, tmp_path: Path, admin_user: tuple[str, str]
) -> None:
    live = LiveServer(
        database_url,
        env={
            "CONFERENCE_ENV": "production",
            "ALLOWED_HOSTS": "127.0.0.1",
            "ADMIN_PASSWORD": "correct-horse-battery-staple-9",
        },
        state_dir=tmp_path,
    )
    try:
        live.wait_until_serving()
        wrong_host = httpx.get(f"{live.base_url}/healthz", headers={"Host": "evil.example"})
        assert wrong_host.status_code == 400
        with httpx.Client() as client:
            response = _login(client, live.base_url, *admin_user, csrf=True)
            assert response.status_code == 200, response.text
            session_cookie = next(
                header
                for header in response.headers.get_list("set-cookie")
                if header.startswith("id=")
            )
        attributes = {part.strip().lower() for part in session_cookie.split(";")}
        assert {"secure", "httponly", "samesite=lax"} <= attributes
    finally:
        live.close()


def test_development_password_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(conference_state_dir=tmp_path, admin_password=None)
    first = development_credentials(settings)
    second = development_credentials(settings)
    assert first.password == second.password
    assert len(first.password) >= 20
    assert (tmp_path / "admin-password").stat().st_mode & 0o077 == 0
    explicit = development_credentials(
        Settings(conference_state_dir=tmp_path, admin_password="from-the-environment")
    )
    assert explicit.password == "from-the-environment"
