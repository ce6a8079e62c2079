"""
What synthetic meetings look like: when they start (busier on weekdays and
in working hours), how big they are (mostly small, a long tail of
all-hands and webinars), what they are called, how long they last, and when
each participant joins and leaves.

Every function draws from the ``random.Random`` it is given, in a fixed
order, so that :class:`~conference.devdata.synthetic.SyntheticData` stays
deterministic for a seed. Times are Unix milliseconds.
"""

from __future__ import annotations

import base64
import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from datetime import UTC, datetime

#: A minute, in milliseconds.
MINUTE = 60_000
_HOUR = 60 * MINUTE

# Relative meeting starts per UTC hour of day: a team spread over Europe and
# the Americas, quiet at night.
_HOUR_WEIGHTS = (
    0.15, 0.1, 0.1, 0.1, 0.1, 0.15, 0.3, 0.6, 1.0, 1.4, 1.6, 1.5,
    1.1, 1.4, 1.7, 1.8, 1.6, 1.3, 0.9, 0.6, 0.45, 0.35, 0.25, 0.2,
)  # fmt: skip
_WEEKEND_WEIGHT = 0.15

FIRST_NAMES = (
    "alice", "bob", "carol", "dana", "erik", "frank", "grace", "heidi", "ivan", "judy",
    "kofi", "lena", "mateo", "nina", "omar", "priya", "quinn", "rosa", "sven", "tariq",
    "uma", "victor", "wei", "xenia", "yusuf", "zoe", "amara", "bruno", "chen", "diego",
    "elif", "farah", "goran", "hana", "ines", "jonas", "kenji", "leila", "marta", "noah",
)  # fmt: skip
LAST_NAMES = (
    "martin", "okafor", "nguyen", "kowalski", "johansson", "mendes", "adeyemi", "braun",
    "petrov", "garcia", "mensah", "schmidt", "rossi", "haddad", "sharma", "obrien",
    "larsen", "silva", "tanaka", "novak", "dubois", "yilmaz", "kim", "moreau", "costa",
    "fischer", "ali", "jensen", "lopez", "murphy", "weber", "ivanova", "sato", "popescu",
    "horvat", "bianchi", "nowak", "ferreira", "keller", "andersen",
)  # fmt: skip
_TEAMS = (
    "platform", "payments", "growth", "mobile", "data", "infra", "design", "sales",
    "support", "marketing", "security", "search", "billing", "identity", "media", "web",
)  # fmt: skip
_RITUALS = ("standup", "weekly-sync", "planning", "retro", "demo", "backlog-grooming")
_AD_HOC = (
    "customer-call", "interview", "incident", "pairing", "office-hours", "design-review",
    "sales-demo", "onboarding",
)  # fmt: skip

#: Why participants leave, as LiveKit's ``DisconnectReason`` names, weighted
#: by repetition: most leave on purpose.
LEAVE_REASONS = ("CLIENT_INITIATED",) * 17 + (
    "PARTICIPANT_REMOVED",
    "CONNECTION_TIMEOUT",
    "MEDIA_FAILURE",
)

#: Errors of failed recordings, as LiveKit's egress reports them.
FAILURES = (
    "Start signal not received",
    "pipeline frozen",
    "upload failed: storage returned 503",
)


class StartTimes:
    """
    ``count`` meeting starts between ``start_ms`` and ``until_ms``, in
    ascending order, following the hour-of-day and weekday weights: sorted
    uniform quantiles (the sequential order-statistics method, so no list
    of ``count`` values is ever held) mapped through the hour-by-hour
    density.
    """

    def __init__(self, rng: random.Random, count: int, start_ms: int, until_ms: int) -> None:
        self._rng = rng
        self.count = count
        self.start_ms = start_ms
        self.until_ms = until_ms
        self._hour_starts: list[int] = []
        self._cumulative: list[float] = []
        total = 0.0
        for hour_start in range(start_ms - start_ms % _HOUR, until_ms, _HOUR):
            moment = datetime.fromtimestamp(hour_start / 1000, UTC)
            weight = _HOUR_WEIGHTS[moment.hour]
            if moment.weekday() >= 5:
                weight *= _WEEKEND_WEIGHT
            self._hour_starts.append(hour_start)
            total += weight
            self._cumulative.append(total)

    def __iter__(self) -> Iterator[int]:
        rng = self._rng
        n = self.count
        cumulative = self._cumulative
        total = cumulative[-1]
        quantile = 0.0
        for index in range(n):
            quantile = 1.0 - (1.0 - quantile) * rng.random() ** (1.0 / (n - index))
            target = quantile * total
            hour = min(bisect_right(cumulative, target), len(self._hour_starts) - 1)
            below = cumulative[hour - 1] if hour else 0.0
            width = cumulative[hour] - below
            within = (target - below) / width if width else 0.0
            start = self._hour_starts[hour] + int(within * _HOUR)
            yield min(max(start, self.start_ms), self.until_ms)


def participant_count(rng: random.Random) -> int:
    """Three in ten meetings are one-to-one; most are small; a few are big."""
    roll = rng.random()
    if roll < 0.30:
        return 2
    if roll < 0.97:
        return min(3 + int(rng.lognormvariate(1.0, 0.7)), 40)
    return min(20 + int(rng.lognormvariate(3.5, 0.6)), 500)


def room_name(rng: random.Random, size: int, people: list[int]) -> str:
    """
    A room name for a meeting of ``size`` people: ``1on1-alice-bob``, a
    team ritual, an ad-hoc call or an all-hands. ``people`` are indexes into
    the name pairs (see :func:`person_names`).
    """
    if size == 2:
        a, b = (FIRST_NAMES[person // len(LAST_NAMES)] for person in people)
        return f"1on1-{a}-{b}"
    if size >= 20:
        kind = "all-hands" if rng.random() < 0.5 else "webinar"
        return f"{kind}-{base64.b32encode(rng.randbytes(5)).decode().lower()}"
    if rng.random() < 0.6:
        return f"{rng.choice(_TEAMS)}-{rng.choice(_RITUALS)}"
    return f"{rng.choice(_AD_HOC)}-{base64.b32encode(rng.randbytes(5)).decode().lower()}"


def person_names(person: int) -> tuple[str, str]:
    """``("alice.martin", "Alice Martin")``: the identity and name of person number ``person``."""
    first, last = divmod(person, len(LAST_NAMES))
    identity = f"{FIRST_NAMES[first]}.{LAST_NAMES[last]}"
    return identity, f"{FIRST_NAMES[first].title()} {LAST_NAMES[last].title()}"


def meeting_duration(rng: random.Random) -> int:
    """How long a meeting is planned to last: about half an hour, 2 minutes to 4 hours."""
    duration = int(rng.lognormvariate(math.log(30), 0.6) * MINUTE)
    return min(max(duration, 2 * MINUTE), 240 * MINUTE)


def session_times(
    rng: random.Random, start: int, end: int, duration: int, position: int
) -> tuple[int, int]:
    """When one participant joins and leaves, inside [start, end]."""
    if position == 0:
        joined = start + int(rng.random() * 30_000)  # the host opens the room
    elif rng.random() < 0.85:
        joined = start + int(rng.expovariate(1 / 90) * 1000)  # on time, give or take
    else:
        joined = start + int(rng.random() * 0.8 * duration)  # late
    joined = min(joined, end - MINUTE)
    if rng.random() < 0.2:
        left = joined + int(rng.random() * (end - joined))  # leaves early
    else:
        left = end - int(rng.expovariate(1 / 30) * 1000)  # stays to the end
    return joined, max(left, joined + 1_000)
