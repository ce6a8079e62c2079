"""
Posting recorded LiveKit webhooks to the app, signed as LiveKit signs them,
so that data flows without a LiveKit server (``piccolo conference replay``).

A recording is a JSON-lines file (one ``WebhookEvent`` per line, as LiveKit
sends it) or a JSON array of events. Each is posted on its own, in file
order, like LiveKit's notifier does for one room: ``Content-Type:
application/webhook+json`` and ``Authorization: <JWT>`` (no ``Bearer``)
whose ``sha256`` claim is the hash of the exact body.

Example::

    events = load_events(Path("docs/sample-webhooks.jsonl"))
    result = replay_events(events, "http://127.0.0.1:8000/webhooks/livekit", key, secret)
    print(result.summary())
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from conference.errors import ReplayError

#: How long a signature stays valid; LiveKit's notifier uses 5 minutes.
TOKEN_TTL = timedelta(minutes=5)

#: Keys whose values are LiveKit ids; ``fresh=True`` gives them new values.
ID_KEYS = frozenset({"id", "sid", "roomId", "egressId", "ingressId", "trackSid"})


@dataclass(frozen=True)
class Delivery:
    """One posted event and the app's answer (``status`` 0: no answer)."""

    event: str
    event_id: str
    status: int
    answer: str


@dataclass
class ReplayResult:
    """Every delivery of a replay, in order."""

    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the app answered every event with a 2xx."""
        return all(200 <= delivery.status < 300 for delivery in self.deliveries)

    def summary(self) -> str:
        """``12 events: 11 recorded, 1 duplicate``."""
        counts: dict[str, int] = {}
        for delivery in self.deliveries:
            counts[delivery.answer] = counts.get(delivery.answer, 0) + 1
        parts = ", ".join(f"{count} {answer}" for answer, count in counts.items())
        return f"{len(self.deliveries)} events: {parts or 'none'}"


def load_events(path: Path) -> list[str]:
    """
    The event bodies of a recording. JSON-lines bodies are kept byte for
    byte; the elements of a JSON array are serialised compactly.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReplayError(f"cannot read {path}: {error}") from error
    if text.lstrip().startswith("["):
        try:
            array = json.loads(text)
        except ValueError as error:
            raise ReplayError(f"{path} is not a JSON array of events: {error}") from error
        bodies = [json.dumps(event, separators=(",", ":")) for event in array]
    else:
        bodies = [line.strip() for line in text.splitlines() if line.strip()]
    for number, body in enumerate(bodies, 1):
        try:
            event = json.loads(body)
        except ValueError as error:
            raise ReplayError(f"{path}: event {number} is not JSON: {error}") from error
        if not isinstance(event, dict) or not event.get("event"):
            raise ReplayError(f"{path}: event {number} is not a WebhookEvent (no 'event')")
    return bodies


def with_fresh_ids(bodies: list[str], suffix: str | None = None) -> list[str]:
    """
    The same events with every LiveKit id (event, room, participant, egress,
    track) given a suffix, consistently across the events: replaying them
    records a new session instead of duplicates.
    """
    suffix = suffix or uuid.uuid4().hex[:8]

    def rename(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: f"{item}_{suffix}"
                if key in ID_KEYS and isinstance(item, str) and item
                else rename(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [rename(item) for item in value]
        return value

    return [json.dumps(rename(json.loads(body)), separators=(",", ":")) for body in bodies]


def sign(body: str, api_key: str, api_secret: str) -> str:
    """The ``Authorization`` value LiveKit would send with ``body``."""
    from livekit.api import AccessToken  # import cost only when signing

    digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
    return AccessToken(api_key, api_secret).with_sha256(digest).with_ttl(TOKEN_TTL).to_jwt()


def post_event(url: str, body: str, authorization: str, timeout: float = 10.0) -> tuple[int, str]:
    """
    POST one event as LiveKit does; ``(HTTP status, the app's "status")``.
    Raises :class:`ReplayError` when the app cannot be reached.
    """
    request = urllib.request.Request(
        url,
        data=body.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/webhook+json", "Authorization": authorization},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _answer(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _answer(error.read())
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ReplayError(f"cannot reach {url} ({reason}); is the app running?") from error


def _answer(payload: bytes) -> str:
    try:
        return str(json.loads(payload).get("status", "?"))
    except (ValueError, AttributeError):
        return payload[:60].decode("utf-8", "replace") or "?"


def replay_events(bodies: list[str], url: str, api_key: str, api_secret: str) -> ReplayResult:
    """
    Sign and post each event in order, one at a time; an error answer does
    not stop the replay (LiveKit moves on too).
    """
    result = ReplayResult()
    for body in bodies:
        event = json.loads(body)
        status, answer = post_event(url, body, sign(body, api_key, api_secret))
        result.deliveries.append(
            Delivery(
                event=str(event.get("event", "?")),
                event_id=str(event.get("id", "")),
                status=status,
                answer=answer,
            )
        )
    return result
