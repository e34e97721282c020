"""``Client``: the blocking client of the seamlessm4t-api HTTP API (httpx underneath)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, overload

import httpx

from client._base import (
    API,
    DEFAULT_URL,
    AtomicFile,
    AudioInput,
    RetryPolicy,
    SSEParser,
    SSEUnavailable,
    api_error,
    build_submission,
    check_event_stream,
    connection_failed,
    default_headers,
    job_path,
    normalize_base_url,
    poll_events,
    replayable,
    sse_endpoint_missing,
    sse_timeout,
)
from client.errors import APIError, ConnectionFailed, JobFailed, ServiceUnavailable, WaitTimeout
from client.models import Event, Health, Job, Languages, WebhookEvent

EventCallback = Callable[[Event], None]


class _Deadline(Exception):
    """``wait``'s deadline passed while reading the event stream."""


def _job_id(job: str | Job) -> str:
    return job.id if isinstance(job, Job) else job


class Client:
    """A client of the job API.

    ``base_url`` is where the API listens (a trailing ``/api/v1`` is accepted); ``api_key`` is sent as
    ``Authorization: Bearer <key>`` (needed when the server runs with ``M4T_AUTH``); ``timeout`` applies to each
    HTTP request (seconds; the events stream reads for at least 30 s, the server's keep-alive period).

    Retries: an answer 429 or 503 is retried up to ``retries`` times after its ``Retry-After`` (or an exponential
    backoff without one), unless that wait is over ``max_retry_wait`` (a daily quota, say): then the ``RateLimited``
    or ``ServiceUnavailable`` error is raised at once, ``retry_after`` set. Connection errors are retried the same
    way when the request cannot have done anything yet (refused connection) or is safe to repeat (GET, DELETE, and
    every submission: ``submit`` always sends an ``Idempotency-Key``, a random one when none is given, so a retried
    submission gives back the same job).

    Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60,
        retries: int = 3,
        max_retry_wait: float = 60.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.timeout = float(timeout)
        self.retry = RetryPolicy(retries=max(0, retries), max_wait=max_retry_wait)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=default_headers(api_key, headers),
            timeout=self.timeout,
            transport=transport,
        )

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    # --- plumbing -------------------------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
        accept: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """One request, retried per ``self.retry``; a 2xx (or a status in ``accept``) is returned, anything else
        raised as its typed error."""
        attempt = 0
        while True:
            request = self._http.build_request(
                method, path, headers=headers, timeout=self.timeout if timeout is None else timeout, **kwargs
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.transport_delay(exc, attempt, replayable=replayable(method, headers))
                if delay is None:
                    raise connection_failed(exc, method, path) from exc
                time.sleep(delay)
                attempt += 1
                continue
            if response.is_success or response.status_code in accept:
                return response
            delay = self.retry.status_delay(response, attempt)
            try:
                if delay is None:
                    response.read()
                    raise api_error(response)
            finally:
                response.close()
            time.sleep(delay)
            attempt += 1

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise APIError(f"{method} {path}: the answer is not JSON", code="invalid_response") from exc

    # --- jobs -----------------------------------------------------------------------------------------------------

    def submit(
        self,
        task: str,
        *,
        audio: AudioInput | None = None,
        text: str | None = None,
        src_lang: str | None = None,
        tgt_lang: str,
        speaker_id: int | None = None,
        output_format: str | None = None,
        webhook_url: str | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a job (``POST /api/v1/jobs``) and return it, queued. ``audio`` (for ``s2st``/``s2tt``): a path
        (streamed from disk), bytes, or a binary file (read from its start); ``text`` for ``t2st``/``t2tt`` (which
        need ``src_lang``: a code, or ``"auto"`` to have the server detect it, see ``job.detected_src_lang``). With
        the ``idempotency_key`` of an earlier identical submission, the earlier job is returned (``job.replayed``).
        Raises ``ValueError`` for a task without its input."""
        submission = build_submission(
            task,
            audio=audio,
            text=text,
            src_lang=src_lang,
            tgt_lang=tgt_lang,
            speaker_id=speaker_id,
            output_format=output_format,
            webhook_url=webhook_url,
            priority=priority,
            idempotency_key=idempotency_key,
        )
        try:
            response = self._send("POST", f"{API}/jobs", headers=submission.headers, **submission.kwargs)
        finally:
            submission.close()
        return Job.from_api(response.json(), replayed=response.headers.get("idempotent-replayed") == "true")

    def get(self, job_id: str | Job) -> Job:
        """The job now (``GET /api/v1/jobs/{id}``)."""
        return Job.from_api(self._json("GET", job_path(_job_id(job_id))))

    def cancel(self, job_id: str | Job) -> Job:
        """Cancel a job: a queued one ends ``cancelled`` at once; a running one gets ``cancel_requested`` and stops
        at its next batch (``wait`` for it). A finished job raises ``Conflict`` (``job_finished``)."""
        return Job.from_api(self._json("DELETE", job_path(_job_id(job_id))))

    def list_jobs(self, status: str | None = None, limit: int = 20, *, max_items: int | None = None) -> Iterator[Job]:
        """Jobs newest first, following ``next_cursor`` page after page (``limit`` jobs per request, 1 to 100) until
        the last page or ``max_items`` jobs. Lazy: requests are made as you iterate."""
        cursor: str | None = None
        count = 0
        while True:
            params: dict[str, Any] = {"limit": limit}
            if status is not None:
                params["status"] = status
            if cursor is not None:
                params["cursor"] = cursor
            page = self._json("GET", f"{API}/jobs", params=params)
            jobs = page.get("jobs") or []
            for item in jobs:
                if max_items is not None and count >= max_items:
                    return
                count += 1
                yield Job.from_api(item)
            cursor = page.get("next_cursor")
            if not cursor or not jobs:
                return

    def webhooks(self, job_id: str | Job) -> list[WebhookEvent]:
        """The job's webhook events and every delivery attempt."""
        body = self._json("GET", job_path(_job_id(job_id), "webhooks"))
        return [WebhookEvent.from_api(item) for item in body.get("events") or []]

    # --- results --------------------------------------------------------------------------------------------------

    @overload
    def download_audio(self, job_id: str | Job, path: None = None) -> bytes: ...

    @overload
    def download_audio(self, job_id: str | Job, path: str | os.PathLike[str]) -> Path: ...

    def download_audio(self, job_id: str | Job, path: str | os.PathLike[str] | None = None) -> bytes | Path:
        """The speech output of a succeeded job: its bytes, or, with ``path``, streamed into that file (written
        whole or not at all: a temporary file renamed at the end) and the path returned. ``NotFound`` (``no_audio``)
        for a text-output job, ``Conflict`` (``result_not_ready``) before it has succeeded."""
        route = job_path(_job_id(job_id), "audio")
        if path is None:
            return self._send("GET", route, headers={"Accept": "*/*"}).content
        target = Path(path)
        attempt = 0
        while True:
            response = self._send("GET", route, stream=True, headers={"Accept": "*/*"})
            try:
                out = AtomicFile(target)
                try:
                    for chunk in response.iter_bytes(1 << 16):
                        out.write(chunk)
                except BaseException:
                    out.abort()
                    raise
                out.commit()
                return target
            except httpx.TransportError as exc:  # dropped mid-download: download it again
                if attempt >= self.retry.retries:
                    raise connection_failed(exc, "GET", route) from exc
                time.sleep(self.retry.backoff_delay(attempt))
                attempt += 1
            finally:
                response.close()

    def subtitles(self, job_id: str | Job, format: Literal["srt", "vtt"] = "srt") -> str:
        """The translation of a succeeded speech-input job as SRT or WebVTT subtitles."""
        return self._send("GET", job_path(_job_id(job_id), "subtitles"), params={"format": format}).text

    # --- waiting and live events -------------------------------------------------------------------------------------

    def events(self, job_id: str | Job, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's Server-Sent Events: ``status`` (with the whole job) and ``progress`` (``done``, ``total``),
        from its creation (or after ``last_event_id``) to its terminal status event, then the iterator ends. A
        dropped connection is reopened with ``Last-Event-ID`` (nothing is missed or repeated), up to ``retries``
        times in a row."""
        return self._events(_job_id(job_id), last_event_id, None)

    def _events(self, job_id: str, last_event_id: str | None, deadline: float | None) -> Iterator[Event]:
        parser = SSEParser(last_id=last_event_id)
        failures = 0
        route = job_path(job_id, "events")
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise _Deadline
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if parser.last_id:
                headers["Last-Event-ID"] = parser.last_id
            try:
                response = self._send(
                    "GET", route, stream=True, headers=headers, timeout=sse_timeout(self.timeout, remaining)
                )
            except APIError as exc:
                if sse_endpoint_missing(exc):
                    raise SSEUnavailable(str(exc)) from exc
                raise
            try:
                check_event_stream(response)
                for line in response.iter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        failures = 0
                        yield event
                        if event.terminal:
                            return
                    if deadline is not None and time.monotonic() >= deadline:
                        raise _Deadline
            except httpx.TransportError as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    raise _Deadline from exc
                failures += 1
                if failures > self.retry.retries:
                    raise connection_failed(exc, "GET", route) from exc
                time.sleep(parser.retry_s or self.retry.backoff_delay(failures - 1))
                continue
            finally:
                response.close()
            # The stream ended without a terminal event: over if the job has ended (or expired), else reconnect.
            if self.get(job_id).terminal:
                return
            failures += 1
            if failures > self.retry.retries:
                raise ConnectionFailed(f"GET {route}: the event stream keeps ending early", code="connection_error")
            time.sleep(parser.retry_s or self.retry.backoff_delay(failures - 1))

    def wait(
        self,
        job_id: str | Job,
        timeout: float | None = None,
        poll_s: float = 1.0,
        *,
        raise_on_failure: bool = True,
        on_event: EventCallback | None = None,
    ) -> Job:
        """Wait until the job ends and return it, succeeded.

        A job that ends ``failed`` or ``cancelled`` raises ``JobFailed`` (its ``code`` is the job's ``error.code``,
        or ``cancelled``; the job is in ``.job``), so a caller cannot mistake it for a result; pass
        ``raise_on_failure=False`` to get the ended job back whatever its status. ``timeout`` (seconds, None = no
        limit) raises ``WaitTimeout``; the job goes on. It follows the events stream (``on_event`` sees every
        event), and polls every ``poll_s`` seconds where the stream cannot be used (then ``on_event`` sees status
        and progress events made up from the polled states)."""
        ident = _job_id(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        final = job_id if isinstance(job_id, Job) and job_id.terminal else None  # ended already: nothing to wait for
        if final is None:
            try:
                for event in self._events(ident, None, deadline):
                    if on_event is not None:
                        on_event(event)
                    if event.terminal:
                        final = event.job
                if final is None or not final.terminal:
                    final = self.get(ident)
            except _Deadline:
                raise WaitTimeout(ident, timeout or 0.0) from None
            except (SSEUnavailable, ServiceUnavailable):
                final = None  # poll instead; a service that is really down fails there too
        if final is None or not final.terminal:
            final = self._poll(ident, deadline, timeout, poll_s, on_event)
        if raise_on_failure and not final.succeeded:
            raise JobFailed(final)
        return final

    def _poll(
        self, job_id: str, deadline: float | None, timeout: float | None, poll_s: float, on_event: EventCallback | None
    ) -> Job:
        previous: Job | None = None
        while True:
            job = self.get(job_id)
            if on_event is not None:
                for event in poll_events(previous, job):
                    on_event(event)
            previous = job
            if job.terminal:
                return job
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(job_id, timeout or 0.0, job)
                time.sleep(min(poll_s, remaining))
            else:
                time.sleep(poll_s)

    # --- conveniences ---------------------------------------------------------------------------------------------

    def translate_text(
        self,
        text: str,
        *,
        src_lang: str,
        tgt_lang: str,
        speech: bool = False,
        output_format: str | None = None,
        speaker_id: int | None = None,
        webhook_url: str | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> Job:
        """Translate text (``t2tt``; ``t2st`` with ``speech=True``; ``src_lang="auto"`` detects the source language)
        and wait: the succeeded job (``job.text``; the audio with ``download_audio``). Raises ``JobFailed`` as
        ``wait`` does."""
        job = self.submit(
            "t2st" if speech else "t2tt",
            text=text,
            src_lang=src_lang,
            tgt_lang=tgt_lang,
            speaker_id=speaker_id,
            output_format=output_format,
            webhook_url=webhook_url,
            priority=priority,
            idempotency_key=idempotency_key,
        )
        return self.wait(job, timeout, on_event=on_event)

    def translate_speech(
        self,
        audio: AudioInput,
        *,
        tgt_lang: str,
        src_lang: str | None = None,
        speech: bool = False,
        output_format: str | None = None,
        speaker_id: int | None = None,
        webhook_url: str | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> Job:
        """Translate speech (``s2tt``; ``s2st`` with ``speech=True``) and wait: the succeeded job (``job.text``,
        ``job.result.segments``; ``subtitles``, ``download_audio``). Raises ``JobFailed`` as ``wait`` does."""
        job = self.submit(
            "s2st" if speech else "s2tt",
            audio=audio,
            src_lang=src_lang,
            tgt_lang=tgt_lang,
            speaker_id=speaker_id,
            output_format=output_format,
            webhook_url=webhook_url,
            priority=priority,
            idempotency_key=idempotency_key,
        )
        return self.wait(job, timeout, on_event=on_event)

    # --- the service ----------------------------------------------------------------------------------------------

    def health(self) -> Health:
        """The service's health. An ``unhealthy`` service (the server answers 503 with the health body) is returned,
        not raised; ``ServiceUnavailable``/``ConnectionFailed`` only when no health body could be had."""
        response = self._send("GET", f"{API}/health", accept=frozenset({503}))
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            raise api_error(response)
        return Health.from_api(body)

    def languages(self) -> Languages:
        """The languages per modality and per task."""
        return Languages.from_api(self._json("GET", f"{API}/languages"))
