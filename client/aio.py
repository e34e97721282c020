"""``AsyncClient``: the asyncio twin of ``client.sync.Client`` (same methods, same semantics, awaited)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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

EventCallback = Callable[[Event], Awaitable[None] | None]


class _Deadline(Exception):
    pass


def _job_id(job: str | Job) -> str:
    return job.id if isinstance(job, Job) else job


async def _notify(callback: EventCallback | None, event: Event) -> None:
    if callback is not None:
        outcome = callback(event)
        if outcome is not None:
            await outcome


class AsyncClient:
    """The job API from asyncio. Same arguments, methods and errors as ``Client`` (see its documentation);
    ``events`` and ``list_jobs`` are async iterators; ``on_event`` callbacks may be plain or async functions."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60,
        retries: int = 3,
        max_retry_wait: float = 60.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.timeout = float(timeout)
        self.retry = RetryPolicy(retries=max(0, retries), max_wait=max_retry_wait)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=default_headers(api_key, headers),
            timeout=self.timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"

    async def _send(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        headers: dict[str, str] | None = None,
        request_timeout: httpx.Timeout | float | None = None,
        accept: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request(
                method,
                path,
                headers=headers,
                timeout=self.timeout if request_timeout is None else request_timeout,
                **kwargs,
            )
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.transport_delay(exc, attempt, replayable=replayable(method, headers))
                if delay is None:
                    raise connection_failed(exc, method, path) from exc
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if response.is_success or response.status_code in accept:
                return response
            delay = self.retry.status_delay(response, attempt)
            try:
                if delay is None:
                    await response.aread()
                    raise api_error(response)
            finally:
                await response.aclose()
            await asyncio.sleep(delay)
            attempt += 1

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise APIError(f"{method} {path}: the answer is not JSON", code="invalid_response") from exc

    # --- jobs -----------------------------------------------------------------------------------------------------

    async def submit(
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
            response = await self._send("POST", f"{API}/jobs", headers=submission.headers, **submission.kwargs)
        finally:
            submission.close()
        return Job.from_api(response.json(), replayed=response.headers.get("idempotent-replayed") == "true")

    async def get(self, job_id: str | Job) -> Job:
        return Job.from_api(await self._json("GET", job_path(_job_id(job_id))))

    async def cancel(self, job_id: str | Job) -> Job:
        return Job.from_api(await self._json("DELETE", job_path(_job_id(job_id))))

    async def list_jobs(
        self, status: str | None = None, limit: int = 20, *, max_items: int | None = None
    ) -> AsyncIterator[Job]:
        cursor: str | None = None
        count = 0
        while True:
            params: dict[str, Any] = {"limit": limit}
            if status is not None:
                params["status"] = status
            if cursor is not None:
                params["cursor"] = cursor
            page = await self._json("GET", f"{API}/jobs", params=params)
            jobs = page.get("jobs") or []
            for item in jobs:
                if max_items is not None and count >= max_items:
                    return
                count += 1
                yield Job.from_api(item)
            cursor = page.get("next_cursor")
            if not cursor or not jobs:
                return

    async def webhooks(self, job_id: str | Job) -> list[WebhookEvent]:
        body = await self._json("GET", job_path(_job_id(job_id), "webhooks"))
        return [WebhookEvent.from_api(item) for item in body.get("events") or []]

    # --- results --------------------------------------------------------------------------------------------------

    @overload
    async def download_audio(self, job_id: str | Job, path: None = None) -> bytes: ...

    @overload
    async def download_audio(self, job_id: str | Job, path: str | os.PathLike[str]) -> Path: ...

    async def download_audio(self, job_id: str | Job, path: str | os.PathLike[str] | None = None) -> bytes | Path:
        route = job_path(_job_id(job_id), "audio")
        if path is None:
            return (await self._send("GET", route, headers={"Accept": "*/*"})).content
        target = Path(path)
        attempt = 0
        while True:
            response = await self._send("GET", route, stream=True, headers={"Accept": "*/*"})
            try:
                out = AtomicFile(target)
                try:
                    async for chunk in response.aiter_bytes(1 << 16):
                        out.write(chunk)
                except BaseException:
                    out.abort()
                    raise
                out.commit()
                return target
            except httpx.TransportError as exc:
                if attempt >= self.retry.retries:
                    raise connection_failed(exc, "GET", route) from exc
                await asyncio.sleep(self.retry.backoff_delay(attempt))
                attempt += 1
            finally:
                await response.aclose()

    async def subtitles(self, job_id: str | Job, format: Literal["srt", "vtt"] = "srt") -> str:
        return (await self._send("GET", job_path(_job_id(job_id), "subtitles"), params={"format": format})).text

    # --- waiting and live events -------------------------------------------------------------------------------------

    def events(self, job_id: str | Job, last_event_id: str | None = None) -> AsyncIterator[Event]:
        return self._events(_job_id(job_id), last_event_id, None)

    async def _events(self, job_id: str, last_event_id: str | None, deadline: float | None) -> AsyncIterator[Event]:
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
                response = await self._send(
                    "GET", route, stream=True, headers=headers, request_timeout=sse_timeout(self.timeout, remaining)
                )
            except APIError as exc:
                if sse_endpoint_missing(exc):
                    raise SSEUnavailable(str(exc)) from exc
                raise
            try:
                check_event_stream(response)
                async for line in response.aiter_lines():
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
                await asyncio.sleep(parser.retry_s or self.retry.backoff_delay(failures - 1))
                continue
            finally:
                await response.aclose()
            if (await self.get(job_id)).terminal:
                return
            failures += 1
            if failures > self.retry.retries:
                raise ConnectionFailed(f"GET {route}: the event stream keeps ending early", code="connection_error")
            await asyncio.sleep(parser.retry_s or self.retry.backoff_delay(failures - 1))

    async def wait(
        self,
        job_id: str | Job,
        timeout: float | None = None,  # noqa: ASYNC109 - the same signature as Client.wait
        poll_s: float = 1.0,
        *,
        raise_on_failure: bool = True,
        on_event: EventCallback | None = None,
    ) -> Job:
        ident = _job_id(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        final = job_id if isinstance(job_id, Job) and job_id.terminal else None  # ended already: nothing to wait for
        if final is None:
            try:
                async for event in self._events(ident, None, deadline):
                    await _notify(on_event, event)
                    if event.terminal:
                        final = event.job
                if final is None or not final.terminal:
                    final = await self.get(ident)
            except _Deadline:
                raise WaitTimeout(ident, timeout or 0.0) from None
            except (SSEUnavailable, ServiceUnavailable):
                final = None  # poll instead; a service that is really down fails there too
        if final is None or not final.terminal:
            final = await self._poll(ident, deadline, timeout, poll_s, on_event)
        if raise_on_failure and not final.succeeded:
            raise JobFailed(final)
        return final

    async def _poll(
        self, job_id: str, deadline: float | None, limit: float | None, poll_s: float, on_event: EventCallback | None
    ) -> Job:
        previous: Job | None = None
        while True:
            job = await self.get(job_id)
            for event in poll_events(previous, job):
                await _notify(on_event, event)
            previous = job
            if job.terminal:
                return job
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(job_id, limit or 0.0, job)
                await asyncio.sleep(min(poll_s, remaining))
            else:
                await asyncio.sleep(poll_s)

    # --- conveniences ---------------------------------------------------------------------------------------------

    async def translate_text(
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
        timeout: float | None = None,  # noqa: ASYNC109 - the same signature as Client's
        on_event: EventCallback | None = None,
    ) -> Job:
        job = await self.submit(
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
        return await self.wait(job, timeout, on_event=on_event)

    async def translate_speech(
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
        timeout: float | None = None,  # noqa: ASYNC109 - the same signature as Client's
        on_event: EventCallback | None = None,
    ) -> Job:
        job = await self.submit(
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
        return await self.wait(job, timeout, on_event=on_event)

    # --- the service ----------------------------------------------------------------------------------------------

    async def health(self) -> Health:
        response = await self._send("GET", f"{API}/health", accept=frozenset({503}))
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            raise api_error(response)
        return Health.from_api(body)

    async def languages(self) -> Languages:
        return Languages.from_api(await self._json("GET", f"{API}/languages"))
