"""The job store: one Redis hash per job, state changes made atomic with Lua, an event stream per job.

Keys (all under ``m4t:``):

- ``job:{id}`` hash: the job record (see ``JobRecord``); expires ``result_ttl_s`` after creation.
- ``job:{id}:lease`` string: the token of the worker running the job; renewed while it works. A job runs only
  under a lease, so two workers never run it at the same time, whatever the broker redelivers.
- ``job:{id}:events`` stream: every status and progress change, for waiters and live progress.
- ``jobs:running`` set: ids of running jobs, scanned by the reaper for lapsed leases.
- ``jobs:index`` sorted set: every job by creation time.

Celery's own result backend is not used: a job is what this store says it is, and an unknown id is unknown.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from shared.errors import M4TError
from shared.messages import JobMessage
from shared.tasks import Task

PREFIX = "m4t:"
EVENTS_MAXLEN = 2000


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class CancelOutcome(StrEnum):
    MISSING = "missing"
    CANCELLED = "cancelled"  # it was queued: cancelled now, it will never run
    CANCELLING = "cancelling"  # it is running: it stops at its next batch boundary
    FINISHED = "finished"  # already succeeded, failed or cancelled


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    MISSING = "missing"  # no such job (expired, or never existed)
    FINISHED = "finished"  # already in a terminal state: a redelivery, nothing to do
    BUSY = "busy"  # another worker holds the lease
    CANCELLED = "cancelled"  # cancellation was requested before it started: now cancelled
    EXHAUSTED = "exhausted"  # started too many times: now failed


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def lease_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:lease"


def events_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:events"


RUNNING_SET = f"{PREFIX}jobs:running"
INDEX_ZSET = f"{PREFIX}jobs:index"


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobError(BaseModel):
    code: str
    message: str


class JobRecord(BaseModel):
    """One job as stored."""

    model_config = ConfigDict(frozen=True)

    id: str
    task: Task
    status: JobStatus
    tgt_lang: str
    src_lang: str | None = None
    speaker_id: int | None = None
    output_format: str = "wav"
    input_key: str
    input_meta: dict[str, Any] = {}
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress_done: int = 0
    progress_total: int = 0
    result: dict[str, Any] | None = None
    error: JobError | None = None
    attempts: int = 0
    worker: str | None = None
    cancel_requested: bool = False

    def to_message(self) -> JobMessage:
        return JobMessage(
            job_id=self.id,
            task=self.task,
            tgt_lang=self.tgt_lang,
            src_lang=self.src_lang,
            input_key=self.input_key,
            speaker_id=self.speaker_id,
            output_format=self.output_format,
        )

    @classmethod
    def from_hash(cls, data: Mapping[str, str]) -> JobRecord:
        def opt_float(name: str) -> float | None:
            value = data.get(name)
            return float(value) if value else None

        error = json.loads(data["error"]) if data.get("error") else None
        speaker = data.get("speaker_id")
        return cls(
            id=data["id"],
            task=Task(data["task"]),
            status=JobStatus(data["status"]),
            tgt_lang=data["tgt_lang"],
            src_lang=data.get("src_lang") or None,
            speaker_id=int(speaker) if speaker else None,
            output_format=data.get("output_format", "wav"),
            input_key=data["input_key"],
            input_meta=json.loads(data.get("input_meta") or "{}"),
            created_at=float(data["created_at"]),
            started_at=opt_float("started_at"),
            finished_at=opt_float("finished_at"),
            progress_done=int(data.get("progress_done") or 0),
            progress_total=int(data.get("progress_total") or 0),
            result=json.loads(data["result"]) if data.get("result") else None,
            error=JobError.model_validate(error) if error else None,
            attempts=int(data.get("attempts") or 0),
            worker=data.get("worker") or None,
            cancel_requested=data.get("cancel_requested") == "1",
        )

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id,
            "task": self.task.value,
            "status": self.status.value,
            "tgt_lang": self.tgt_lang,
            "src_lang": self.src_lang or "",
            "speaker_id": "" if self.speaker_id is None else str(self.speaker_id),
            "output_format": self.output_format,
            "input_key": self.input_key,
            "input_meta": json.dumps(self.input_meta),
            "created_at": repr(self.created_at),
            "progress_done": str(self.progress_done),
            "progress_total": str(self.progress_total),
            "attempts": str(self.attempts),
        }


# Every script appends an event to the job's stream: {"event": name, "data": json}.
_EVENT_LUA = """
local function emit(events, name, payload, maxlen)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'event', name, 'data', payload)
end
"""

_CLAIM_LUA = (
    _EVENT_LUA
    + """
local job, lease, events, running = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, lease_ms, now, worker = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_attempts, maxlen = tonumber(ARGV[5]), ARGV[6]
local status = redis.call('HGET', job, 'status')
if not status then return 'missing' end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 'finished' end
if redis.call('EXISTS', lease) == 1 then return 'busy' end
local id = redis.call('HGET', job, 'id')
if redis.call('HGET', job, 'cancel_requested') == '1' then
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', now)
  redis.call('SREM', running, id)
  emit(events, 'status', cjson.encode({status='cancelled'}), maxlen)
  return 'cancelled'
end
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
if attempts > max_attempts then
  local err = cjson.encode({code='too_many_attempts',
    message='the job was started ' .. (attempts - 1) .. ' times and never finished; giving up'})
  redis.call('HSET', job, 'status', 'failed', 'finished_at', now, 'error', err)
  redis.call('SREM', running, id)
  emit(events, 'status', cjson.encode({status='failed'}), maxlen)
  return 'exhausted'
end
redis.call('SET', lease, token, 'PX', lease_ms)
redis.call('HSET', job, 'status', 'running', 'started_at', now, 'worker', worker)
redis.call('SADD', running, id)
emit(events, 'status', cjson.encode({status='running', attempt=attempts}), maxlen)
return 'claimed'
"""
)

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_PROGRESS_LUA = (
    _EVENT_LUA
    + """
local job, lease, events = KEYS[1], KEYS[2], KEYS[3]
if redis.call('GET', lease) ~= ARGV[1] then return 0 end
redis.call('HSET', job, 'progress_done', ARGV[2], 'progress_total', ARGV[3])
emit(events, 'progress', cjson.encode({done=tonumber(ARGV[2]), total=tonumber(ARGV[3])}), ARGV[4])
return 1
"""
)

# Finishing needs the lease, or a lapsed lease nobody else took: a slow worker may still finish its job.
_FINISH_LUA = (
    _EVENT_LUA
    + """
local job, lease, events, running = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, status, now, result, err, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local current = redis.call('HGET', job, 'status')
if current ~= 'running' then return 0 end
local holder = redis.call('GET', lease)
if holder and holder ~= token then return 0 end
redis.call('HSET', job, 'status', status, 'finished_at', now)
if result ~= '' then redis.call('HSET', job, 'result', result) end
if err ~= '' then redis.call('HSET', job, 'error', err) end
redis.call('DEL', lease)
redis.call('SREM', running, redis.call('HGET', job, 'id'))
emit(events, 'status', cjson.encode({status=status}), maxlen)
return 1
"""
)

# A running job whose lease lapsed (its worker died) goes back to queued; the caller re-sends its message.
_REQUEUE_LUA = (
    _EVENT_LUA
    + """
local job, lease, events, running = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, maxlen = ARGV[1], ARGV[2]
local status = redis.call('HGET', job, 'status')
if not status then redis.call('SREM', running, id) return 0 end
if status ~= 'running' then redis.call('SREM', running, id) return 0 end
if redis.call('EXISTS', lease) == 1 then return 0 end
redis.call('HSET', job, 'status', 'queued', 'worker', '')
redis.call('SREM', running, id)
emit(events, 'status', cjson.encode({status='queued', requeued=true}), maxlen)
return 1
"""
)


_CANCEL_LUA = (
    _EVENT_LUA
    + """
local job, events, running = KEYS[1], KEYS[2], KEYS[3]
local now, maxlen = ARGV[1], ARGV[2]
local status = redis.call('HGET', job, 'status')
if not status then return 'missing' end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 'finished' end
if status == 'queued' then
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', now, 'cancel_requested', '1')
  redis.call('SREM', running, redis.call('HGET', job, 'id'))
  emit(events, 'status', cjson.encode({status='cancelled'}), maxlen)
  return 'cancelled'
end
if redis.call('HGET', job, 'cancel_requested') ~= '1' then
  redis.call('HSET', job, 'cancel_requested', '1')
  emit(events, 'cancel_requested', cjson.encode({status=status}), maxlen)
end
return 'cancelling'
"""
)


class JobStore:
    """Synchronous access to the job store (workers, the reaper, the CLI and the gateway's thread pool)."""

    def __init__(self, client: redis.Redis, *, result_ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = result_ttl_s
        self._claim = client.register_script(_CLAIM_LUA)
        self._renew = client.register_script(_RENEW_LUA)
        self._progress = client.register_script(_PROGRESS_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._requeue = client.register_script(_REQUEUE_LUA)
        self._cancel = client.register_script(_CANCEL_LUA)

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    def create(self, record: JobRecord) -> None:
        key = job_key(record.id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=dict(record.to_hash()))  # type: ignore[arg-type]
        pipe.expire(key, self._ttl_s)
        pipe.xadd(
            events_key(record.id),
            {"event": "status", "data": json.dumps({"status": record.status.value})},
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )
        pipe.expire(events_key(record.id), self._ttl_s)
        pipe.zadd(INDEX_ZSET, {record.id: record.created_at})
        pipe.execute()

    def delete(self, job_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(job_key(job_id), lease_key(job_id), events_key(job_id))
        pipe.zrem(INDEX_ZSET, job_id)
        pipe.srem(RUNNING_SET, job_id)
        pipe.execute()

    def get(self, job_id: str) -> JobRecord | None:
        data: dict[str, str] = self._redis.hgetall(job_key(job_id))  # type: ignore[assignment]
        if not data:
            return None
        return JobRecord.from_hash(data)

    def claim(self, job_id: str, *, token: str, worker: str, lease_s: float, max_attempts: int) -> ClaimOutcome:
        outcome = self._claim(
            keys=[job_key(job_id), lease_key(job_id), events_key(job_id), RUNNING_SET],
            args=[token, int(lease_s * 1000), repr(time.time()), worker, max_attempts, EVENTS_MAXLEN],
        )
        return ClaimOutcome(_text(outcome))

    def renew_lease(self, job_id: str, *, token: str, lease_s: float) -> bool:
        return bool(self._renew(keys=[lease_key(job_id)], args=[token, int(lease_s * 1000)]))

    def set_progress(self, job_id: str, *, token: str, done: int, total: int) -> bool:
        return bool(
            self._progress(
                keys=[job_key(job_id), lease_key(job_id), events_key(job_id)],
                args=[token, done, total, EVENTS_MAXLEN],
            )
        )

    def succeed(self, job_id: str, *, token: str, result: dict[str, Any]) -> bool:
        return self._finish_as(job_id, token, JobStatus.SUCCEEDED, result=result)

    def fail(self, job_id: str, *, token: str, error: M4TError) -> bool:
        return self._finish_as(job_id, token, JobStatus.FAILED, error=JobError(code=error.code, message=error.message))

    def mark_cancelled(self, job_id: str, *, token: str) -> bool:
        return self._finish_as(job_id, token, JobStatus.CANCELLED)

    def _finish_as(
        self,
        job_id: str,
        token: str,
        status: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
    ) -> bool:
        return bool(
            self._finish(
                keys=[job_key(job_id), lease_key(job_id), events_key(job_id), RUNNING_SET],
                args=[
                    token,
                    status.value,
                    repr(time.time()),
                    json.dumps(result) if result is not None else "",
                    error.model_dump_json() if error is not None else "",
                    EVENTS_MAXLEN,
                ],
            )
        )

    def request_cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a queued job at once; ask a running one to stop at its next batch boundary."""
        outcome = self._cancel(
            keys=[job_key(job_id), events_key(job_id), RUNNING_SET], args=[repr(time.time()), EVENTS_MAXLEN]
        )
        return CancelOutcome(_text(outcome))

    def cancel_requested(self, job_id: str) -> bool:
        return self._redis.hget(job_key(job_id), "cancel_requested") in (b"1", "1")

    def running_job_ids(self) -> list[str]:
        return sorted(_text(member) for member in self._redis.smembers(RUNNING_SET))

    def requeue_if_lease_lapsed(self, job_id: str) -> bool:
        """Put a running job whose worker is gone back to queued. True when the caller must re-send it."""
        return bool(
            self._requeue(
                keys=[job_key(job_id), lease_key(job_id), events_key(job_id), RUNNING_SET],
                args=[job_id, EVENTS_MAXLEN],
            )
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
