"""Webhooks: the pure, testable core of delivery (no Redis, no Celery; see ``shared/webhook_events.py`` for storage
and ``worker/webhooks.py`` for the worker that schedules attempts).

- Secrets and signatures follow the Standard Webhooks spec (https://www.standardwebhooks.com/): secrets are
  ``whsec_<base64>``; the signed content is ``{webhook-id}.{webhook-timestamp}.{body}`` (timestamp in integer
  seconds), HMAC-SHA256, sent as ``webhook-signature: v1,<base64>`` with one entry per key while keys are rotated.
- ``check_webhook_url`` is the SSRF guard, run at submission and again before every attempt (after DNS).
- ``post_event`` makes one attempt and reports it as an ``AttemptResult``; it never raises for network errors.
- ``retry_delay_s`` spaces the attempts; ``build_event`` and ``event_body`` make the JSON that is signed and sent.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import json
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from shared.errors import InvalidRequest
from shared.job_view import job_path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # the spec: secrets are 24 to 64 bytes
SECRET_BYTES = 32
MAX_URL_CHARS = 2048
DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000)
MAX_RETRY_DELAY_S = 24 * 3600.0
EVENT_TYPES = ("job.succeeded", "job.failed", "job.cancelled")


class WebhookUrlRefused(InvalidRequest):
    """A ``webhook_url`` we will not send to (bad scheme, credentials, or a non-public address)."""

    code = "webhook_url_refused"
    status_code = 422


class WebhookVerificationError(ValueError):
    """A webhook whose signature or timestamp does not check out."""


# --- secrets and signatures ------------------------------------------------------------------------------------


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


# --- the SSRF guard ---------------------------------------------------------------------------------------------

_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


@dataclass(frozen=True)
class AllowList:
    """Hosts and networks that may receive webhooks even though they are private or loopback."""

    hosts: frozenset[str] = field(default_factory=frozenset)
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, value: str) -> AllowList:
        """``"localhost,receiver.internal,10.0.0.0/8,127.0.0.1"`` (comma or whitespace separated; a bare address is
        a /32 or /128). Raises ``ValueError`` naming an entry that is neither a host name nor an address/CIDR."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in (part for part in re.split(r"[,\s]+", value) if part):
            candidate = item[1:-1] if item.startswith("[") and item.endswith("]") else item
            try:
                networks.append(ipaddress.ip_network(candidate, strict=False))
                continue
            except ValueError:
                pass
            name = item.lower().rstrip(".")
            if not _HOST_NAME.match(name) or _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
                raise ValueError(f"webhook allow-list entry {item!r} is neither a host name nor an IP address/CIDR")
            hosts.add(name)
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def covers(self, address: IPAddress) -> bool:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return any(address in net or (mapped is not None and mapped in net) for net in self.networks)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), the way the connection will resolve it; none when the
    name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog"})
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped, NAT64 (RFC 6052) or 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def non_public_kind(address: IPAddress) -> str | None:
    """Why an address may not receive webhooks ("loopback", "private", ...), or None for a public address."""
    if address in _METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return non_public_kind(embedded)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared (CGNAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What ``inet_aton`` makes of ``host`` (``2130706433``, ``0x7f.1``, ``0177.0.0.1``...), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        try:
            if part.startswith("0x"):
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part, 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 0xFF for n in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    value = last
    for index, number in enumerate(head):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _refuse(message: str, **details: Any) -> WebhookUrlRefused:
    return WebhookUrlRefused(f"webhook_url {message}", details={"field": "webhook_url", **details})


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def check_webhook_url(url: str, allow: AllowList, *, resolve: Resolver = resolve_host) -> list[str]:
    """Refuse (``WebhookUrlRefused``) a URL we must not POST to; return the addresses its host resolves to.

    Refused: schemes other than http(s), credentials in the URL, no host, over 2048 characters, IP addresses in
    non-standard forms (``2130706433``, ``0x7f.1``), names that do not resolve, and hosts with ANY address that is
    loopback, private, link-local, multicast, unspecified, reserved, CGNAT or cloud metadata (IPv4-mapped, NAT64 and
    6to4 IPv6 addresses are judged by their IPv4 address) -- unless the host is in ``allow.hosts`` or the address is
    in ``allow.networks``. The URL is parsed by httpx, as it will be when the event is sent.

    The error's ``details["reason"]`` says why in one word or two ("scheme", "credentials", "numeric_form",
    "unresolvable", "loopback", "private", ...). For a host name, messages say what kind of address it resolves to
    but not the address (which would map the server's internal DNS for whoever asks).
    """
    if len(url) > MAX_URL_CHARS:
        raise _refuse(f"is longer than {MAX_URL_CHARS} characters", reason="too_long")
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in url):
        raise _refuse("contains whitespace, control characters or backslashes", reason="invalid")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
        raw_host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError, TypeError):
        raise _refuse("is not a valid URL", reason="invalid") from None
    if parsed.scheme not in ("http", "https"):
        raise _refuse(f"must use http or https, not {parsed.scheme[:20] or 'no scheme'!r}", reason="scheme")
    if parsed.userinfo:
        raise _refuse("must not contain a user name or password", reason="credentials")
    if not raw_host:
        raise _refuse("has no host", reason="invalid")
    if port is not None and not 1 <= port <= 65535:
        raise _refuse("has an invalid port", reason="invalid")
    port = port or (443 if parsed.scheme == "https" else 80)
    host = raw_host.lower()
    name = host.rstrip(".")

    literal: IPAddress | None = None
    if ":" in host:  # an IPv6 literal (httpx gives it without brackets)
        literal = _parse_address(host) if "%" not in host else None
        if literal is None:
            raise _refuse("has an invalid IPv6 address", reason="invalid")
    elif not _HOST_NAME.match(name):
        raise _refuse("has an invalid host name", reason="invalid")
    elif _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):  # ends in a number: an IPv4 address, or nothing valid
        try:
            literal = ipaddress.IPv4Address(name)
        except ValueError:
            legacy = _legacy_ipv4(name)
            if legacy is None:
                raise _refuse("has an invalid IPv4 address", reason="invalid") from None
            raise _refuse(
                f"writes an IP address in a non-standard form ({legacy}); use dotted decimal", reason="numeric_form"
            ) from None

    if literal is not None:
        addresses = [str(literal)]
    else:
        if name in allow.hosts:
            resolved = resolve(raw_host, port)
            if not resolved:
                raise _refuse(f"host {name} does not resolve", reason="unresolvable")
            return resolved
        if name in _METADATA_HOSTS:
            raise _refuse(f"host {name} is a cloud metadata service", reason="cloud metadata")
        addresses = resolve(raw_host, port)
        if not addresses:
            raise _refuse(f"host {name} does not resolve", reason="unresolvable")

    for text in addresses:
        address = _parse_address(text)
        if address is None:
            raise _refuse(f"host {name} resolves to something that is not an IP address", reason="invalid")
        if allow.covers(address):
            continue
        kind = non_public_kind(address)
        if kind is None:
            continue
        article = "an" if kind[0] in "aeiou" else "a"
        if literal is not None:
            embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
            shown = f"{address}, which is {embedded}" if embedded is not None else str(address)
            raise _refuse(f"points to {article} {kind} address ({shown})", reason=kind)
        raise _refuse(f"host {name} resolves to {article} {kind} address", reason=kind)
    return addresses


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
