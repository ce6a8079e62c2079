"""Which key pairs are configured, and which requests they accept."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conference.errors import ConfigurationError, MalformedWebhook, Unauthorized
from conference.settings import Settings
from conference.webhooks.verification import WebhookVerifier, webhook_keys
from tests.webhook_sessions import product_sync, sign

KEY, SECRET = "APIcurrent", "current-secret-0123456789abcdefghijklmnopqr"
NEXT_KEY, NEXT_SECRET = "APInext", "next-secret-0123456789abcdefghijklmnopqrstu"
BODY = product_sync()[0].body


@pytest.fixture(autouse=True)
def _no_livekit_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_WEBHOOK_KEYS"):
        monkeypatch.delenv(name, raising=False)


def _settings(**fields: str) -> Settings:
    """Settings from ``fields`` alone, whatever the developer's .env says."""
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def test_both_settings_give_the_key_pairs_for_rotation() -> None:
    settings = _settings(
        livekit_api_key=KEY,
        livekit_api_secret=SECRET,
        livekit_webhook_keys=f" {NEXT_KEY} : {NEXT_SECRET} ,, {KEY}:{SECRET}",
    )
    assert webhook_keys(settings) == {KEY: SECRET, NEXT_KEY: NEXT_SECRET}


def test_no_keys_at_all_is_a_valid_configuration_that_accepts_nothing() -> None:
    verifier = WebhookVerifier(webhook_keys(_settings()))
    with pytest.raises(Unauthorized, match="no LiveKit API key is configured"):
        verifier.verify(BODY.encode(), sign(BODY, KEY, SECRET))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"livekit_api_key": KEY}, "go together"),
        ({"livekit_api_secret": SECRET}, "go together"),
        ({"livekit_webhook_keys": "just-a-key"}, "entry 1 is not 'key:secret'"),
        ({"livekit_webhook_keys": f"{KEY}:{SECRET},:orphan"}, "entry 2"),
        (
            {
                "livekit_api_key": KEY,
                "livekit_api_secret": SECRET,
                "livekit_webhook_keys": f"{KEY}:another",
            },
            "two different secrets",
        ),
    ],
)
def test_malformed_key_settings_fail_with_the_reason(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        webhook_keys(_settings(**fields))


def test_each_configured_key_verifies_its_own_signatures_only() -> None:
    verifier = WebhookVerifier({KEY: SECRET, NEXT_KEY: NEXT_SECRET})
    for key, secret in ((KEY, SECRET), (NEXT_KEY, NEXT_SECRET)):
        assert verifier.verify(BODY.encode(), sign(BODY, key, secret)).event == "room_started"
    with pytest.raises(Unauthorized):
        verifier.verify(BODY.encode(), sign(BODY, KEY, NEXT_SECRET))
    assert verifier.api_keys == sorted([KEY, NEXT_KEY])


def test_a_bearer_prefix_is_tolerated() -> None:
    verifier = WebhookVerifier({KEY: SECRET})
    event = verifier.verify(BODY.encode(), "Bearer " + sign(BODY, KEY, SECRET))
    assert event.id == product_sync()[0].event_id


def test_an_expired_signature_is_refused_past_livekit_s_one_minute_leeway() -> None:
    verifier = WebhookVerifier({KEY: SECRET})
    verifier.verify(BODY.encode(), sign(BODY, KEY, SECRET, ttl=timedelta(seconds=-30)))
    with pytest.raises(Unauthorized, match="Expired"):
        verifier.verify(BODY.encode(), sign(BODY, KEY, SECRET, ttl=timedelta(minutes=-2)))


def test_a_well_signed_body_that_is_no_webhook_event_is_malformed_not_unauthorized() -> None:
    verifier = WebhookVerifier({KEY: SECRET})
    with pytest.raises(MalformedWebhook):
        verifier.verify(b"[1, 2, 3]", sign("[1, 2, 3]", KEY, SECRET))
