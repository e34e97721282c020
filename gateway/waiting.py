"""Waiting for a job to end without blocking the event loop: block on the job's Redis event stream."""

from __future__ import annotations

import json
import time

import redis.asyncio

from shared.jobs import JobRecord, JobStatus, events_key, job_key

_BLOCK_SLICE_S = 5.0  # below the Redis client's socket timeout


async def fetch_job(aredis: redis.asyncio.Redis, job_id: str) -> JobRecord | None:
    data: dict[str, str] = await aredis.hgetall(job_key(job_id))  # type: ignore[assignment]
    return JobRecord.from_hash(data) if data else None


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
                    ended = ended or _is_terminal_event(fields)
            remaining = deadline - time.monotonic()


def _is_terminal_event(fields: dict[str, str]) -> bool:
    if fields.get("event") != "status":
        return False
    try:
        status = json.loads(fields.get("data", "{}")).get("status")
    except ValueError:
        return False
    return status in {s.value for s in JobStatus if s.terminal}
