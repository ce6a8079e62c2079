"""
LiveKit webhooks fill the conference tables.

- :mod:`~conference.webhooks.verification`: which requests come from our
  LiveKit server (its API keys, checked with ``livekit-api``);
- :mod:`~conference.webhooks.event`: the body as typed structs (msgspec);
- :mod:`~conference.webhooks.mapping`: what one event changes, as plain data;
- :mod:`~conference.webhooks.store`: writing it, once, whatever order the
  events arrive in: one event (the reference statement) or a batch;
- :mod:`~conference.webhooks.batch`: a batch in two set-based statements;
- :mod:`~conference.webhooks.batching`: group commit, the webhooks that
  arrive together in one transaction;
- :mod:`~conference.webhooks.endpoint`: ``POST /webhooks/livekit``;
- :mod:`~conference.webhooks.replay`: signing and posting recorded events,
  for development (``piccolo conference replay``).

Add the endpoint to an app with::

    routes = [*webhook_routes(get_settings()), ...]
"""

from conference.webhooks.endpoint import WEBHOOK_PATH, webhook_routes

__all__ = ["WEBHOOK_PATH", "webhook_routes"]
