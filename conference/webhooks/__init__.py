"""
LiveKit webhooks fill the conference tables.

- :mod:`~conference.webhooks.verification`: which requests come from our
  LiveKit server (its API keys, checked with ``livekit-api``);
- :mod:`~conference.webhooks.mapping`: what one event changes, as plain data;
- :mod:`~conference.webhooks.store`: writing it, once, in one transaction,
  whatever order the events arrive in;
- :mod:`~conference.webhooks.endpoint`: ``POST /webhooks/livekit``;
- :mod:`~conference.webhooks.replay`: signing and posting recorded events,
  for development (``piccolo conference replay``).

Add the endpoint to an app with::

    routes = [*webhook_routes(get_settings()), ...]
"""

from conference.webhooks.endpoint import WEBHOOK_PATH, webhook_routes

__all__ = ["WEBHOOK_PATH", "webhook_routes"]
