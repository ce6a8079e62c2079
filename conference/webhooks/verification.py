"""
Which webhooks come from our LiveKit server: the API key pairs from the
settings, and the check of each request with LiveKit's own SDK.

LiveKit signs each webhook with an HS256 JWT in the ``Authorization``
header (no ``Bearer``): ``iss`` is the API key, the claim ``sha256`` is the
base64 SHA-256 of the exact body. ``livekit-api``'s ``TokenVerifier``
checks signature, expiry and issuer; this module picks the verifier of
the key the token names (several pairs may be configured while keys are
rotated), compares the body's hash with the claim as ``livekit-api``'s
``WebhookReceiver`` does, and sorts the errors into "not from LiveKit"
(401, :attr:`~conference.errors.Unauthorized.reason` says why) and "from
LiveKit but unreadable" (400). The body is then decoded by
:func:`conference.webhooks.event.decode_event`, not by the receiver's
protobuf parse, which is ten times slower.

Example::

    verifier = WebhookVerifier({"APIkey": "secret"})
    event = verifier.verify(body_bytes, request.headers["authorization"])
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping

import jwt
from livekit.api import TokenVerifier

from conference.errors import ConfigurationError, MalformedWebhook, Unauthorized
from conference.settings import Settings
from conference.webhooks.event import WebhookEvent, decode_event


def webhook_keys(settings: Settings) -> dict[str, str]:
    """
    The API key pairs webhooks may be signed with, by key:
    ``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET`` and every
    ``key:secret`` of ``LIVEKIT_WEBHOOK_KEYS``. Raises
    :class:`~conference.errors.ConfigurationError` for half a pair, an
    entry without ``:``, or one key with two secrets.
    """
    keys: dict[str, str] = {}
    secret = settings.livekit_api_secret.get_secret_value() if settings.livekit_api_secret else ""
    if bool(settings.livekit_api_key) != bool(secret):
        raise ConfigurationError(
            "LIVEKIT_API_KEY and LIVEKIT_API_SECRET go together: set both (the key "
            "and secret of your LiveKit server) or neither"
        )
    if settings.livekit_api_key:
        keys[settings.livekit_api_key.strip()] = secret
    extra = settings.livekit_webhook_keys
    for position, entry in enumerate((extra.get_secret_value() if extra else "").split(","), 1):
        if not entry.strip():
            continue
        key, colon, entry_secret = entry.strip().partition(":")
        key, entry_secret = key.strip(), entry_secret.strip()
        if not colon or not key or not entry_secret:
            raise ConfigurationError(
                f"LIVEKIT_WEBHOOK_KEYS entry {position} is not 'key:secret'; expected "
                "'key1:secret1,key2:secret2'"
            )
        if keys.get(key, entry_secret) != entry_secret:
            raise ConfigurationError(
                f"API key {key!r} is given two different secrets (LIVEKIT_API_KEY, "
                "LIVEKIT_WEBHOOK_KEYS); keep one"
            )
        keys[key] = entry_secret
    return keys


class WebhookVerifier:
    """
    Checks LiveKit webhooks against a set of API key pairs.

    :param keys:
        Secret by API key. Empty: every request is refused.
    """

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._verifiers = {key: TokenVerifier(key, secret) for key, secret in keys.items()}

    @property
    def api_keys(self) -> list[str]:
        """The API keys accepted (not their secrets)."""
        return sorted(self._verifiers)

    def verify(self, body: bytes, authorization: str | None) -> WebhookEvent:
        """
        The event in ``body`` if ``authorization`` is LiveKit's signature of
        exactly these bytes by a configured key.

        Raises :class:`~conference.errors.Unauthorized` (answer 401) when it
        is not, and :class:`~conference.errors.MalformedWebhook` (answer
        400) when it is but the body is not a ``WebhookEvent``.
        """
        self.check_signature(body, authorization)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MalformedWebhook(f"the body is not UTF-8 ({error.reason})") from error
        return decode_event(body)

    def check_signature(self, body: bytes, authorization: str | None) -> None:
        """
        Raise :class:`~conference.errors.Unauthorized` unless
        ``authorization`` is a valid token of a configured key whose
        ``sha256`` claim is the hash of ``body``: what ``livekit-api``'s
        ``WebhookReceiver.receive`` checks, without its protobuf parse.
        """
        if not self._verifiers:
            raise Unauthorized(
                "no LiveKit API key is configured, so no webhook can be verified; set "
                "LIVEKIT_API_KEY and LIVEKIT_API_SECRET (or LIVEKIT_WEBHOOK_KEYS)",
                reason="no_keys",
            )
        token = (authorization or "").strip()
        if token[:7].lower() == "bearer ":  # LiveKit sends none; tolerate one
            token = token[7:].strip()
        if not token:
            raise Unauthorized("no Authorization header", reason="missing")
        api_key = _issuer(token)
        verifier = self._verifiers.get(api_key)
        if verifier is None:
            raise Unauthorized(
                f"signed with API key {api_key[:64]!r}, which is not configured",
                reason="unknown_key",
            )
        try:
            claims = verifier.verify(token)  # signature, expiry, issuer
        except jwt.ExpiredSignatureError as error:
            reason = f"{type(error).__name__}: {error}"
            raise Unauthorized(reason, reason="expired") from error
        except Exception as error:  # PyJWT's errors, livekit-api's ValueError
            raise Unauthorized(
                f"{type(error).__name__}: {error}", reason="bad_signature"
            ) from error
        if not claims.sha256:
            raise Unauthorized("the token has no sha256 claim", reason="body_mismatch")
        try:
            claimed = base64.b64decode(claims.sha256)
        except ValueError as error:
            raise Unauthorized("the sha256 claim is not base64", reason="body_mismatch") from error
        if not hmac.compare_digest(hashlib.sha256(body).digest(), claimed):
            raise Unauthorized(
                "the body's SHA-256 is not the token's sha256 claim: it was altered",
                reason="body_mismatch",
            )


def _issuer(token: str) -> str:
    """
    The API key the token claims to be signed with (its ``iss``), to pick
    the secret to check it with. Nothing is trusted yet: livekit-api checks
    the signature, expiry, issuer and body hash next.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as error:  # binascii.Error is a ValueError
        raise Unauthorized("the Authorization header is not a JWT", reason="not_jwt") from error
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    if not isinstance(issuer, str) or not issuer:
        raise Unauthorized("the token names no API key (no iss claim)", reason="no_issuer")
    return issuer
