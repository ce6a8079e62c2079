"""
The usage dashboard: charts of :mod:`conference.reports` behind
piccolo-admin's login, mounted at ``/reports/`` by ``conference.app`` and
linked from the admin's sidebar.

- ``GET /reports/``: the page (static HTML and JavaScript; Chart.js is
  vendored in ``static/``, see ``static/VENDORED.md``: nothing from a CDN);
- ``GET /reports/api/usage``: the report as JSON;
- ``GET /reports/usage.csv``: the same as CSV;
- ``GET /reports/api/rooms``: the rooms with usage in the range.

The three take ``start`` and ``end`` (dates, ``YYYY-MM-DD``; ``end`` is the
last day shown), ``grain`` (``hour``, ``day``, ``week``), ``room`` (default
all rooms) and ``tz`` (default ``UTC``). Every path needs an admin's
session (piccolo-admin's ``id`` cookie): without one, the page redirects
to the admin's login and the data paths answer 401.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from piccolo_api.session_auth.middleware import SessionsAuthBackend
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from conference import reports
from conference.reports.model import Grain, Report, zone
from conference.settings import Settings, get_settings

STATIC = Path(__file__).parent / "static"

#: The Chart.js build in ``static/`` (see ``static/VENDORED.md``).
CHART_JS_VERSION = "4.6.1"

#: The longest range the dashboard asks for at once, in days.
MAX_DAYS = 400

#: Where the page sends a visitor without a session, from /reports/.
DEFAULT_LOGIN_URL = "/admin/"


class BadRequest(ValueError):
    """A query parameter the dashboard cannot use; the message says which."""


def report_arguments(request: Request) -> dict[str, object]:
    """The :func:`~conference.reports.usage_report` arguments of a request's query."""
    params = request.query_params
    tz = params.get("tz") or "UTC"
    local = zone(tz)
    today = datetime.now(UTC).astimezone(local).date()
    first = _date(params.get("start"), "start", today - timedelta(days=29))
    last = _date(params.get("end"), "end", today)
    if last < first:
        raise BadRequest(f"end ({last}) is before start ({first})")
    if (last - first).days >= MAX_DAYS:
        raise BadRequest(f"at most {MAX_DAYS} days at once; narrow the range")
    return {
        "start": datetime.combine(first, datetime.min.time(), tzinfo=local),
        "end": datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=local),
        "grain": params.get("grain") or Grain.day.value,
        "room_name": params.get("room") or None,
        "tz": tz,
    }


def _date(value: str | None, name: str, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date like 2026-12-01, got {value!r}") from None


async def _report(request: Request) -> Report:
    return await reports.usage_report(**report_arguments(request))  # type: ignore[arg-type]


async def page(request: Request) -> Response:
    """The dashboard page."""
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def usage_json(request: Request) -> Response:
    """The report as JSON (:meth:`Report.as_dict`), or 400 with ``error``."""
    try:
        report = await _report(request)
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return JSONResponse(report.as_dict())


async def usage_csv(request: Request) -> Response:
    """The report as CSV: one row per bucket, one column per figure and event type."""
    try:
        report = await _report(request)
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return Response(
        report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
    )


def report_csv(report: Report) -> str:
    """``report`` as CSV text, with a header row."""
    types = sorted({event for bucket in report.buckets for event in bucket.events})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "start",
            "end",
            "meetings_started",
            "participant_sessions",
            "participant_minutes",
            "peak_participants",
            "recording_hours",
            *(f"events_{event}" for event in types),
        ]
    )
    for bucket in report.buckets:
        writer.writerow(
            [
                bucket.start.isoformat(),
                bucket.end.isoformat(),
                bucket.meetings_started,
                bucket.participant_sessions,
                repr(bucket.participant_minutes),
                bucket.peak_participants,
                repr(bucket.recording_hours),
                *(bucket.events.get(event, 0) for event in types),
            ]
        )
    return out.getvalue()


async def rooms_json(request: Request) -> Response:
    """The rooms with usage in the range, by name."""
    try:
        arguments = report_arguments(request)
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    names = await reports.room_names(arguments["start"], arguments["end"])  # type: ignore[arg-type]
    return JSONResponse(names)


def create_dashboard_app(
    settings: Settings | None = None, *, login_url: str = DEFAULT_LOGIN_URL
) -> Starlette:
    """
    The dashboard as an ASGI app; mount it at ``/reports`` next to the admin
    at ``/admin/`` (it shares the admin's session cookie).

    :param login_url:
        Where a visitor without a session is sent to log in.
    """
    settings = settings or get_settings()

    def refuse(connection: HTTPConnection, error: Exception) -> Response:
        if connection.url.path.rstrip("/") == connection.scope.get("root_path", "").rstrip("/"):
            return RedirectResponse(login_url, status_code=303)
        return JSONResponse({"error": "log in to the admin first"}, status_code=401)

    return Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/api/usage", usage_json, methods=["GET"]),
            Route("/api/rooms", rooms_json, methods=["GET"]),
            Route("/usage.csv", usage_csv, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=SessionsAuthBackend(admin_only=True, increase_expiry=timedelta(minutes=20)),
                on_error=refuse,
            )
        ],
    )
