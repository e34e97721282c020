"""Verify a webhook the service sent, per the Standard Webhooks spec (https://www.standardwebhooks.com/), without
depending on the server package: HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}`` with the raw key of a
``whsec_<base64>`` secret, sent as ``webhook-signature: v1,<base64> [v1,<base64> ...]``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(ValueError):
    """The event's headers are missing, its timestamp is outside the tolerance, or no signature matches."""


def _keys(secret: str) -> list[bytes]:
    keys = []
    for position, item in enumerate((part for part in re.split(r"[,\s]+", secret) if part), start=1):
        encoded = item.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"webhook secret #{position} is not base64 (after {SECRET_PREFIX!r})") from None
        if not key:
            raise ValueError(f"webhook secret #{position} is empty")
        keys.append(key)
    if not keys:
        raise ValueError("no webhook secret given")
    return keys


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a received webhook and return its parsed JSON body.

    ``headers``: the request's headers (any case); ``body``: the raw body exactly as received; ``secret``: the
    ``whsec_...`` secret (several, comma-separated, are each tried: rotation). Raises ``WebhookVerificationError``
    unless ``webhook-timestamp`` is within ``tolerance_s`` (5 minutes) of now and one ``v1`` signature matches
    (compared in constant time); a malformed secret raises ``ValueError``.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    keys = _keys(secret)
    lowered = {str(name).lower(): str(value) for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "").strip()
    signatures = lowered.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if not (stamp.isascii() and stamp.isdigit()):
        raise WebhookVerificationError("webhook-timestamp is not an integer number of seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise WebhookVerificationError("webhook timestamp is too old")
    if timestamp > current + tolerance_s:
        raise WebhookVerificationError("webhook timestamp is too far in the future")
    content = f"{msg_id}.{timestamp}.".encode() + raw
    expected = [hmac.new(key, content, hashlib.sha256).digest() for key in keys]
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Compare against every key, whatever matches first: the time taken does not depend on which one matched.
        if sum(hmac.compare_digest(digest, given) for digest in expected):
            try:
                parsed: dict[str, Any] = json.loads(raw)
            except ValueError as exc:
                raise WebhookVerificationError("the signed body is not JSON") from exc
            return parsed
    raise WebhookVerificationError("no matching webhook signature")
