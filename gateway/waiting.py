"""Waiting for a job without blocking the event loop: block on the job's Redis event stream."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from shared.jobs import JobRecord, JobStatus, events_key, job_key

_BLOCK_SLICE_S = 5.0  # below the Redis client's socket timeout
KEEPALIVE_S = 15.0
_TERMINAL = frozenset(s.value for s in JobStatus if s.terminal)


async def fetch_job(aredis: redis.asyncio.Redis, job_id: str) -> JobRecord | None:
    data: dict[str, str] = await aredis.hgetall(job_key(job_id))  # type: ignore[assignment]
    return JobRecord.from_hash(data) if data else None


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event stream: ``status`` (``data["status"]``), ``progress`` or ``segment``."""

    id: str
    event: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.event == "status" and self.data.get("status") in _TERMINAL


def _event(entry_id: str, fields: dict[str, str]) -> JobEvent:
    try:
        data = json.loads(fields.get("data", "{}"))
    except ValueError:
        data = {}
    return JobEvent(entry_id, fields.get("event", "message"), data if isinstance(data, dict) else {})


async def follow_events(
    aredis: redis.asyncio.Redis, job_id: str, last_id: str = "0-0", *, until: float | None = None
) -> AsyncIterator[JobEvent | None]:
    """The job's events after ``last_id`` as they come, up to and including its terminal status event (or until the
    job is found finished or gone while nothing comes, or ``time.monotonic()`` passes ``until``). ``None`` after
    ``KEEPALIVE_S`` of silence: the moment for a keep-alive on a long-lived response."""
    silent_s = 0.0
    block: int | None = None  # the first read does not wait: a finished job's stream ends at once
    while True:
        reply: list[tuple[str, list[tuple[str, dict[str, str]]]]] = await aredis.xread(  # type: ignore[assignment]
            {events_key(job_id): last_id}, block=block, count=100
        )
        if reply:
            silent_s = 0.0
            for _stream, entries in reply:
                for entry_id, fields in entries:
                    last_id = entry_id
                    event = _event(entry_id, fields)
                    yield event
                    if event.terminal:
                        return
        else:
            record = await fetch_job(aredis, job_id)
            if record is None or record.status.terminal:
                return
            silent_s += (block or 0) / 1000
            if silent_s >= KEEPALIVE_S:
                silent_s = 0.0
                yield None
        slice_s = _BLOCK_SLICE_S if until is None else min(_BLOCK_SLICE_S, until - time.monotonic())
        if slice_s <= 0:
            return
        block = max(1, int(slice_s * 1000))


async def wait_for_end(aredis: redis.asyncio.Redis, job_id: str, timeout_s: float) -> JobRecord | None:
    """The job once it is finished, or as it is when ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    last_id = "0-0"
    while True:
        record = await fetch_job(aredis, job_id)
        remaining = deadline - time.monotonic()
        if record is None or record.status.terminal or remaining <= 0:
            return record
        ended = False
        while not ended and remaining > 0:
            block_ms = max(1, int(min(remaining, _BLOCK_SLICE_S) * 1000))
            reply: list[tuple[str, list[tuple[str, dict[str, str]]]]] = await aredis.xread(  # type: ignore[assignment]
                {events_key(job_id): last_id}, block=block_ms, count=100
            )
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    ended = ended or _event(entry_id, fields).terminal
            remaining = deadline - time.monotonic()
