"""
Usage reports: meetings started, participant sessions, participant-minutes,
peak concurrent participants, recording hours and events by type, per hour,
day or week, for all rooms or one, from incrementally refreshed rollups.

Example::

    from datetime import UTC, datetime, timedelta

    from conference import reports

    await reports.refresh()  # or `piccolo conference rollup`, or the app's timer
    end = datetime.now(UTC)
    report = await reports.usage_report(end - timedelta(days=90), end, grain="day")
    print(report.as_of, [bucket.participant_minutes for bucket in report.buckets])

What each figure means exactly: :class:`~conference.reports.model.Bucket`
and ``docs/reports.md``. How the rollups stay exact:
:mod:`conference.reports.rollup`.
"""

from conference.reports.model import Bucket, Grain, Report, bucket_bounds
from conference.reports.query import room_names, usage_report
from conference.reports.reference import brute_force_report
from conference.reports.rollup import RefreshResult, invalidate, refresh

__all__ = [
    "Bucket",
    "Grain",
    "RefreshResult",
    "Report",
    "brute_force_report",
    "bucket_bounds",
    "invalidate",
    "refresh",
    "room_names",
    "usage_report",
]
