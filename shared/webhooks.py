"""Webhooks: the pure, testable core of delivery (no Redis, no Celery; see ``shared/webhook_events.py`` for storage
and ``worker/webhooks.py`` for the worker that schedules attempts).

- ``post_event`` makes one attempt and reports it as an ``AttemptResult``; it never raises for network errors.
- ``retry_delay_s`` spaces the attempts; ``build_event`` and ``event_body`` make the JSON that is signed and sent.
- Secrets and signatures (Standard Webhooks) are in ``shared/webhook_signing.py``, the SSRF guard
  (``check_webhook_url``, ``AllowList``) in ``shared/webhook_urls.py``; both are re-exported here, so
  ``from shared.webhooks import verify_signature`` (the README's receiver example) and the other names keep working.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from shared.job_view import job_path
from shared.webhook_signing import (
    MIN_SECRET_BYTES,
    SECRET_BYTES,
    SECRET_PREFIX,
    WebhookVerificationError,
    generate_secret,
    parse_secrets,
    sign,
    signature_headers,
    verify_signature,
)
from shared.webhook_urls import (
    MAX_URL_CHARS,
    AllowList,
    IPAddress,
    IPNetwork,
    Resolver,
    WebhookUrlRefused,
    check_webhook_url,
    non_public_kind,
    resolve_host,
)

__all__ = [
    "DEFAULT_RETRY_SCHEDULE_S",
    "EVENT_TYPES",
    "MAX_RETRY_DELAY_S",
    "MAX_URL_CHARS",
    "MIN_SECRET_BYTES",
    "SECRET_BYTES",
    "SECRET_PREFIX",
    "AllowList",
    "AttemptResult",
    "IPAddress",
    "IPNetwork",
    "Resolver",
    "WebhookUrlRefused",
    "WebhookVerificationError",
    "build_event",
    "check_webhook_url",
    "event_body",
    "generate_secret",
    "non_public_kind",
    "parse_retry_after",
    "parse_secrets",
    "post_event",
    "resolve_host",
    "retry_delay_s",
    "sign",
    "signature_headers",
    "verify_signature",
]

DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000)
MAX_RETRY_DELAY_S = 24 * 3600.0
EVENT_TYPES = ("job.succeeded", "job.failed", "job.cancelled")


# --- one attempt ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptResult:
    at: float
    """Epoch seconds when the attempt started."""
    duration_ms: float
    status_code: int | None
    """None when there was no HTTP response (timeout, connection error, refused URL)."""
    error: str | None
    """Short and client-safe: "timeout", "connection refused", "redirect not followed (302)"..."""
    retry_after_s: float | None
    """From a Retry-After header (seconds or HTTP-date) on a 429 or 503."""

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def stop(self) -> bool:
        """410 Gone: the receiver asks us to stop retrying."""
        return self.status_code == 410


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delay-seconds or an HTTP-date (never negative); None if unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _connect_error(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "does not resolve"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).lower()
    if "certificate" in text or "ssl" in text or "tls" in text:
        return "TLS error"
    if "unreachable" in text:
        return "host unreachable"
    return "connection failed"


class _Deadline:
    """Ends an attempt at its deadline, whatever it is doing: httpx's timeouts are per read or write, so a receiver
    that trickles its answer could otherwise hold an attempt much longer. At the deadline the socket is shut down
    (captured with httpx's documented ``trace`` request extension), which ends any blocked read or write."""

    def __init__(self, timeout_s: float) -> None:
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if not event.endswith(".connect_tcp.complete"):  # "connection." (direct) or "proxy." (through a proxy)
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.append(sock)
                if self.expired:
                    self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed: the attempt is over
            sock.shutdown(socket.SHUT_RDWR)


def post_event(
    client: httpx.Client, url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float = 15.0
) -> AttemptResult:
    """One attempt: POST ``body`` to ``url``, never following redirects (a 3xx is a failed attempt), all within
    ``timeout_s`` (connect, send and response headers; the response body is not read). Never raises for network
    errors. Sent with ``Connection: close``: every attempt opens its own connection, to the address just checked.
    """
    started = time.time()
    clock = time.monotonic()
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    request_headers = {**headers, "connection": "close"}
    with _Deadline(timeout_s) as deadline:
        try:
            with client.stream(
                "POST",
                url,
                content=body,
                headers=request_headers,
                timeout=httpx.Timeout(timeout_s),
                follow_redirects=False,
                extensions={"trace": deadline.trace},
            ) as response:
                status = response.status_code
                if 300 <= status < 400:
                    error = f"redirect not followed ({status})"
                if status in (429, 503):
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.ConnectError as exc:
            error = "timeout" if deadline.expired else _connect_error(exc)
        except httpx.UnsupportedProtocol:
            error = "unsupported or invalid URL"
        except httpx.RemoteProtocolError:
            error = "timeout" if deadline.expired else "invalid or no HTTP response"
        except (httpx.TransportError, httpx.InvalidURL, httpx.StreamError, OSError, ValueError):
            error = "timeout" if deadline.expired else "connection error"
    return AttemptResult(
        at=started,
        duration_ms=round((time.monotonic() - clock) * 1000.0, 3),
        status_code=status,
        error=error,
        retry_after_s=retry_after,
    )


# --- retries ----------------------------------------------------------------------------------------------------

_rng = random.Random()


def retry_delay_s(
    attempt: int,
    schedule: Sequence[float],
    *,
    retry_after_s: float | None = None,
    jitter: float = 0.1,
    rng: random.Random | None = None,
    max_delay_s: float = MAX_RETRY_DELAY_S,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1), or None to give up.

    ``schedule[attempt - 1]`` give or take ``jitter`` (a fraction), but at least ``retry_after_s`` (capped at
    ``max_delay_s``) when the receiver asked for it.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if not 0 <= jitter < 1:
        raise ValueError("jitter is a fraction in [0, 1)")
    if attempt > len(schedule):
        return None
    base = float(schedule[attempt - 1])
    delay = base * (1.0 + (rng or _rng).uniform(-jitter, jitter)) if jitter else base
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(retry_after_s, max_delay_s))
    return max(0.0, delay)


# --- events -----------------------------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def build_event(
    job: Mapping[str, Any],
    *,
    event_type: str,
    base_url: str | None,
    max_text_chars: int = 4096,
    now: float | None = None,
) -> dict[str, Any]:
    """The event for a job that ended: ``{"type", "timestamp", "data"}``, ``data`` a summary of the API job object
    (the result text only up to ``max_text_chars``; beyond, ``"text_truncated": true`` and the client fetches it)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    job_id = str(job["id"])
    result = job.get("result")
    result = result if isinstance(result, Mapping) else {}
    job_links = job.get("links")
    job_links = job_links if isinstance(job_links, Mapping) else {}

    data: dict[str, Any] = {
        "id": job_id,
        "task": job.get("task"),
        "status": job.get("status"),
        "src_lang": job.get("src_lang"),
        "detected_src_lang": job.get("detected_src_lang"),
        "detected_src_lang_confidence": job.get("detected_src_lang_confidence"),
        "tgt_lang": job.get("tgt_lang"),
        "error": job.get("error"),
    }
    text = result.get("text")
    if isinstance(text, str):
        if len(text) <= max_text_chars:
            data["text"] = text
        else:
            data["text_truncated"] = True

    links: dict[str, str] = {}
    self_link = job_links.get("self") or (base_url.rstrip("/") + job_path(job_id) if base_url else None)
    if self_link:
        links["self"] = str(self_link)
    audio = result.get("audio")
    audio_link = job_links.get("audio") or (audio.get("url") if isinstance(audio, Mapping) else None)
    if audio_link:
        links["audio"] = str(audio_link)
    data["links"] = links

    return {"type": event_type, "timestamp": _iso(time.time() if now is None else now), "data": data}


def event_body(event: Mapping[str, Any]) -> bytes:
    """The bytes that are signed and sent: compact UTF-8 JSON."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
