"""
``piccolo conference replay FILE``: post recorded LiveKit webhooks to the
running app, signed with the configured key, to see data flow without a
LiveKit server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from conference.commands.cli import exit_on_error
from conference.errors import ConferenceError
from conference.settings import get_settings


@exit_on_error
def replay(file: str, url: str = "", fresh: bool = False) -> None:
    """
    Sign each recorded webhook event with the configured LiveKit key (the
    first of LIVEKIT_API_KEY/LIVEKIT_API_SECRET, LIVEKIT_WEBHOOK_KEYS) and
    post it to the app, in file order. Exits 1 if any event was not
    accepted.

    :param file:
        A JSON-lines file of events (one WebhookEvent per line) or a JSON
        array of them, e.g. docs/sample-webhooks.jsonl.
    :param url:
        Where to post (default: http://APP_HOST:APP_PORT/webhooks/livekit).
    :param fresh:
        Give the events new ids (event, room, participants, egress) so a
        second replay records a new session instead of duplicates.
    """
    # Imported here, not for a cycle: every `piccolo` command imports this
    # module, and only this one needs livekit-api (slow to import).
    from conference.webhooks.endpoint import WEBHOOK_PATH
    from conference.webhooks.replay import load_events, replay_events, with_fresh_ids
    from conference.webhooks.verification import webhook_keys

    settings = get_settings()
    url = url or f"http://{settings.app_host}:{settings.app_port}{WEBHOOK_PATH}"
    keys = webhook_keys(settings)
    if not keys:
        raise ConferenceError(
            "no LiveKit API key to sign with: set LIVEKIT_API_KEY and "
            "LIVEKIT_API_SECRET (environment or .env), as for the app"
        )
    api_key, api_secret = next(iter(keys.items()))
    bodies = load_events(Path(file))
    if fresh:
        bodies = with_fresh_ids(bodies)
    result = replay_events(bodies, url, api_key, api_secret)
    for delivery in result.deliveries:
        print(f"{delivery.status}  {delivery.answer:<10} {delivery.event:<32} {delivery.event_id}")
    print(f"{result.summary()} (signed with API key {api_key}, posted to {url})")
    if not result.ok:
        sys.exit(1)
