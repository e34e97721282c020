"""Webhook secrets and signatures, as the Standard Webhooks spec (https://www.standardwebhooks.com/) has them.

Secrets are ``whsec_<base64>``; the signed content is ``{webhook-id}.{webhook-timestamp}.{body}`` (timestamp in
integer seconds), HMAC-SHA256, sent as ``webhook-signature: v1,<base64>`` with one entry per key while keys are
rotated. ``verify_signature`` is what a receiver runs (``from shared.webhooks import verify_signature`` keeps
working). Pure: no network, no Redis. It changes with the spec, not with delivery or the SSRF guard.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # the spec: secrets are 24 to 64 bytes
SECRET_BYTES = 32


class WebhookVerificationError(ValueError):
    """A webhook whose signature or timestamp does not check out."""


def parse_secrets(value: str) -> list[bytes]:
    """``whsec_<base64>`` secrets, separated by commas or whitespace, to raw keys (an empty value gives none).

    Errors name the position of the bad secret (1 = first), never the secret itself.
    """
    keys: list[bytes] = []
    for position, item in enumerate((part for part in re.split(r"[,\s]+", value) if part), start=1):
        if not item.startswith(SECRET_PREFIX):
            raise ValueError(f"webhook secret #{position} does not start with {SECRET_PREFIX!r}")
        encoded = item[len(SECRET_PREFIX) :]
        try:
            # Standard base64; padding may be left out (as the reference implementation allows).
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"webhook secret #{position} is not valid base64 after {SECRET_PREFIX!r}") from None
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"webhook secret #{position} is too short ({len(key)} bytes; at least {MIN_SECRET_BYTES} are needed)"
            )
        keys.append(key)
    return keys


def generate_secret() -> str:
    """A new secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def _check_msg_id(msg_id: str) -> None:
    if not msg_id or any(ch.isspace() or not ch.isprintable() for ch in msg_id):
        raise ValueError("webhook message id must be non-empty, without whitespace or control characters")


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64>`` for each key, space-separated (sign with all while rotating)."""
    if not keys or not all(keys):
        raise ValueError("at least one non-empty signing key is needed")
    _check_msg_id(msg_id)
    content = _signed_content(msg_id, int(timestamp), body)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii") for key in keys
    )


def signature_headers(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of a signed event (``timestamp`` in integer seconds since the epoch)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(keys, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def verify_signature(
    headers: Mapping[str, str], body: bytes, secret: str, *, tolerance_s: int = 300, now: float | None = None
) -> None:
    """Check a received event: raises ``WebhookVerificationError`` unless its timestamp is within ``tolerance_s`` of
    ``now`` and one of its ``v1`` signatures matches (constant-time). ``secret`` is the ``whsec_...`` secret (several,
    comma-separated, are tried in turn while rotating); a malformed secret raises ``ValueError``.
    """
    keys = parse_secrets(secret)
    if not keys:
        raise ValueError("no webhook secret given")
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    timestamp_header = lowered.get("webhook-timestamp", "").strip()
    signature_header = lowered.get("webhook-signature", "")
    if not (msg_id and timestamp_header and signature_header):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if not timestamp_header.isascii() or not timestamp_header.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not an integer number of seconds")
    timestamp = int(timestamp_header)
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise WebhookVerificationError("webhook timestamp is too old")
    if timestamp > current + tolerance_s:
        raise WebhookVerificationError("webhook timestamp is too far in the future")
    content = _signed_content(msg_id, timestamp, body)
    expected = [hmac.new(key, content, hashlib.sha256).digest() for key in keys]
    for entry in signature_header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if any(hmac.compare_digest(digest, given) for digest in expected):
            return
    raise WebhookVerificationError("no matching webhook signature")
