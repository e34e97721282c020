"""What the sync and the async client share: requests built the same way, answers read the same way, the retry
policy, and the Server-Sent Events parser. No I/O here."""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeAlias

import httpx

from client.errors import APIError, ConnectionFailed, error_class
from client.models import Event

API = "/api/v1"
DEFAULT_URL = "http://localhost:8000"
TASKS = ("s2st", "s2tt", "t2st", "t2tt")
SPEECH_TASKS = ("s2st", "s2tt")
OUTPUT_FORMATS = ("wav", "flac", "ogg", "mp3", "opus", "aac", "pcm")
# The file name extension of each output format where it is not the format's name (the server's download names).
_EXTENSIONS = {"aac": "m4a"}
RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
SSE_MIN_READ_TIMEOUT_S = 30.0  # the server sends a keep-alive comment after 15 s of silence

AudioInput: TypeAlias = str | os.PathLike[str] | bytes | IO[bytes]
Task: TypeAlias = Literal["s2st", "s2tt", "t2st", "t2tt"]

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "service_unavailable",
}


def audio_extension(output_format: str) -> str:
    """The file name extension (no dot) of speech output in ``output_format``: ``aac`` is ``m4a``."""
    return _EXTENSIONS.get(output_format, output_format)


def format_for_suffix(suffix: str) -> str | None:
    """The output format a file name suffix (``.m4a``, ``.MP3``) asks for; None for one we do not write."""
    wanted = suffix.lower().lstrip(".")
    return next((fmt for fmt in OUTPUT_FORMATS if audio_extension(fmt) == wanted), None)


def user_agent() -> str:
    return "m4t-client/0.1 (+httpx)"


def normalize_base_url(base_url: str) -> str:
    """``http://host:8000``; a trailing ``/api/v1`` (or ``/``) is dropped: paths are added by the client."""
    url = base_url.strip().rstrip("/")
    if url.endswith(API):
        url = url[: -len(API)]
    if "://" not in url:
        url = "http://" + url
    return url


def default_headers(api_key: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = {"User-Agent": user_agent(), "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(extra or {})
    return headers


def job_path(job_id: str, *parts: str) -> str:
    if not job_id or "/" in job_id or "?" in job_id or "#" in job_id:
        raise ValueError(f"not a job id: {job_id!r}")
    return "/".join([f"{API}/jobs/{job_id}", *parts])


# --- errors -------------------------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP-date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def api_error(response: httpx.Response) -> APIError:
    """The typed error of an error answer (its body must have been read)."""
    status = response.status_code
    body: dict[str, Any] = {}
    try:
        payload = response.json()
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        body = payload["error"]
    code = str(body.get("code") or _DEFAULT_CODES.get(status, "server_error" if status >= 500 else "error"))
    message = str(body.get("message") or (response.text[:300].strip() or response.reason_phrase or code))
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return error_class(status)(message, code=code, status=status, body=body, retry_after=retry_after)


def connection_failed(exc: httpx.TransportError, method: str, url: str) -> ConnectionFailed:
    kind = type(exc).__name__
    return ConnectionFailed(f"{method} {url}: {kind}: {exc}".rstrip(": "), code="connection_error")


# --- retries ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``retries`` retries of a request answered 429 or 503 (after ``Retry-After``, or an exponential backoff
    when the server gave none), or that hit a connection error. A wait longer than ``max_wait`` (a daily quota, say)
    is not waited for: the error is raised at once. Connection errors after the request may have reached the server
    are retried only for idempotent requests (GET, DELETE, or a POST with an ``Idempotency-Key``)."""

    retries: int = 3
    max_wait: float = 60.0
    backoff: float = 0.5

    def backoff_delay(self, attempt: int) -> float:
        delay: float = min(self.max_wait, self.backoff * 2.0**attempt)
        return delay * random.uniform(0.8, 1.2)

    def status_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """How long to wait before retrying this answer, or None to give it back (or raise) now."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
            return None
        given = parse_retry_after(response.headers.get("retry-after"))
        delay = given if given is not None else self.backoff_delay(attempt)
        return delay if delay <= self.max_wait else None

    def transport_delay(self, exc: httpx.TransportError, attempt: int, *, replayable: bool) -> float | None:
        if attempt >= self.retries:
            return None
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if never_sent or (replayable and isinstance(exc, httpx.NetworkError | httpx.TimeoutException)):
            return self.backoff_delay(attempt)
        if replayable and isinstance(exc, httpx.RemoteProtocolError):
            return self.backoff_delay(attempt)
        return None


def replayable(method: str, headers: Mapping[str, str] | None) -> bool:
    return method.upper() in IDEMPOTENT_METHODS or any(k.lower() == "idempotency-key" for k in (headers or {}))


class AtomicFile:
    """A file written whole or not at all: a temporary file in the target's folder, renamed by ``commit``."""

    def __init__(self, target: Path) -> None:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        self.target = target
        self._tmp = Path(tmp_name)
        self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def commit(self) -> None:
        self._file.close()
        os.replace(self._tmp, self.target)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


# --- submissions -------------------------------------------------------------------------------------------------


@dataclass
class Submission:
    """The keyword arguments of ``POST /api/v1/jobs`` for httpx, and the file it opened (closed by the caller)."""

    kwargs: dict[str, Any]
    headers: dict[str, str]
    opened: IO[bytes] | None = None

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()


def new_idempotency_key() -> str:
    return "m4t-" + uuid.uuid4().hex


def build_submission(
    task: str,
    *,
    audio: AudioInput | None,
    text: str | None,
    src_lang: str | None,
    tgt_lang: str,
    speaker_id: int | None,
    output_format: str | None,
    webhook_url: str | None,
    idempotency_key: str | None,
    priority: str | None = None,
) -> Submission:
    """JSON for text input, multipart for speech input. Every submission carries an ``Idempotency-Key`` (a random one
    when none is given), so the client can retry it without making a second job."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    options: dict[str, Any] = {"task": task, "tgt_lang": tgt_lang}
    if src_lang is not None:
        options["src_lang"] = src_lang
    if speaker_id is not None:
        options["speaker_id"] = speaker_id
    if output_format is not None:
        options["output_format"] = output_format
    if webhook_url is not None:
        options["webhook_url"] = webhook_url
    if priority is not None:
        options["priority"] = priority
    if task in SPEECH_TASKS:
        if audio is None or text is not None:
            raise ValueError(f"a {task} job takes audio (a path, bytes or a binary file), not text")
        filename, content, opened = _audio_part(audio)
        data = {k: str(v) for k, v in options.items()}
        return Submission({"data": data, "files": {"audio_file": (filename, content)}}, headers, opened)
    if text is None or audio is not None:
        raise ValueError(f"a {task} job takes text, not audio")
    return Submission({"json": {**options, "text": text}}, headers)


def _audio_part(audio: AudioInput) -> tuple[str, bytes | IO[bytes], IO[bytes] | None]:
    if isinstance(audio, bytes | bytearray | memoryview):
        return "audio", bytes(audio), None
    if isinstance(audio, str | os.PathLike):
        path = Path(audio)
        opened = path.open("rb")  # streamed from disk by httpx, never read whole into memory
        return path.name, opened, opened
    name = getattr(audio, "name", None)
    return (Path(name).name if isinstance(name, str) else "audio"), audio, None


# --- Server-Sent Events ------------------------------------------------------------------------------------------


@dataclass
class SSEParser:
    """The text/event-stream format, fed one line at a time (without its line ending); ``feed`` returns an event
    when a blank line completes one. ``last_id`` is the id to send as ``Last-Event-ID`` on reconnection."""

    last_id: str | None = None
    retry_s: float | None = None
    _type: str = ""
    _data: list[str] = field(default_factory=list)
    _has_fields: bool = False

    def feed(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_fields = True
        elif name == "event":
            self._type = value
            self._has_fields = True
        elif name == "id":
            if "\x00" not in value:
                self.last_id = value
            self._has_fields = True
        elif name == "retry" and value.isdigit():
            self.retry_s = int(value) / 1000
        return None

    def _dispatch(self) -> Event | None:
        if not self._has_fields or not self._data:
            self._reset()
            return None
        text = "\n".join(self._data)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = {"data": text}
        data = parsed if isinstance(parsed, dict) else {"data": parsed}
        event = Event(id=self.last_id or "", type=self._type or "message", data=data)
        self._reset()
        return event

    def _reset(self) -> None:
        self._type = ""
        self._data = []
        self._has_fields = False


class SSEUnavailable(Exception):
    """The events stream cannot be used here (not served, or not as text/event-stream): poll instead."""


def check_event_stream(response: httpx.Response) -> None:
    """Raise ``SSEUnavailable`` for an answer that is not an event stream (after reading any error body)."""
    content_type = response.headers.get("content-type", "")
    if response.status_code == 200 and content_type.startswith("text/event-stream"):
        return
    if response.status_code == 200 or response.status_code == 405:
        raise SSEUnavailable(f"events answered {response.status_code} {content_type or 'without a content type'}")


def sse_endpoint_missing(error: APIError) -> bool:
    """A 404 from the router (no such route: an older server), not the ``job_not_found`` of an unknown job."""
    return error.status == 404 and error.code == "not_found"


def sse_timeout(timeout: float, remaining: float | None) -> httpx.Timeout:
    read = max(timeout, SSE_MIN_READ_TIMEOUT_S)
    if remaining is not None:
        read = max(0.05, min(read, remaining))
    return httpx.Timeout(timeout, read=read)


def poll_events(previous: Any, job: Any) -> list[Event]:
    """Events made up from two polled states of a job (for ``wait``'s ``on_event`` when it polls)."""
    events = []
    if previous is None or previous.status != job.status:
        events.append(Event(id="", type="status", data={"job_id": job.id, "status": job.status, "job": job.raw}))
    if previous is None or previous.progress != job.progress:
        done, total = job.progress.done, job.progress.total
        events.append(Event(id="", type="progress", data={"job_id": job.id, "done": done, "total": total}))
    return events
