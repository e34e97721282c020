"""The job store: one Redis hash per job, state changes made atomic with Lua, an event stream per job.

Keys (all under ``m4t:``):

- ``job:{id}`` hash: the job record (see ``JobRecord``); expires ``result_ttl_s`` after creation.
- ``job:{id}:lease`` string: the token of the worker running the job; renewed while it works. A job runs only
  under a lease, so two workers never run it at the same time, whatever the broker redelivers.
- ``job:{id}:events`` stream: every status and progress change, for waiters and live progress.
- ``job:{id}:webhooks`` list: ids of the webhook events of the job (see ``shared/webhook_events.py``).
- ``jobs:running`` set: ids of running jobs, scanned by the reaper for lapsed leases.
- ``jobs:index`` sorted set: every job by creation time (listing).
- ``jobs:queued`` sorted set: queued jobs in the order they were (re)queued (queue positions).
- ``jobs:expiry`` sorted set: every job by expiry time, for the sweeper of stored files.
- ``gone:{id}``: kept ``gone_ttl_s`` past a job's expiry, so its id answers 410 Gone rather than 404.

Every change of status goes through ``on_terminal`` in Lua when it ends a job: one webhook event per terminal
state is created there, atomically with the state change, so a redelivered message can never make a second one.

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
from shared.priority import Priority
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


def owner_index_key(owner: str) -> str:
    return f"{PREFIX}owner:{owner}:jobs"


def gone_key(job_id: str) -> str:
    return f"{PREFIX}gone:{job_id}"


def job_webhooks_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:webhooks"


RUNNING_SET = f"{PREFIX}jobs:running"
INDEX_ZSET = f"{PREFIX}jobs:index"
QUEUED_ZSET = f"{PREFIX}jobs:queued"
QUEUE_SEQ = f"{PREFIX}jobs:seq"
EXPIRY_ZSET = f"{PREFIX}jobs:expiry"
WEBHOOKS_DUE_ZSET = f"{PREFIX}webhooks:due"
QUEUE_RANK_SPAN = 10**13  # queued-set score: priority rank * span + sequence number (exact in a double)
MIN_RUNNING_TTL_S = 3600  # a running job's record outlives its own expiry by at least this much


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
    """As the client gave it: ``auto`` when the gateway detected the text's language."""
    detected_src_lang: str | None = None
    """The code detected for ``src_lang: "auto"``: what the worker translates from."""
    detected_src_lang_confidence: float | None = None
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
    webhook_url: str | None = None
    expires_at: float = 0.0
    owner: str = ""
    """Id of the API key that made the job ("" when auth is off)."""
    priority: Priority = Priority.NORMAL
    speed: float = 1.0
    """Speech output: how many times as fast to speak (1.0 in records made before there was a speed)."""

    def to_message(self) -> JobMessage:
        return JobMessage(
            job_id=self.id,
            task=self.task,
            tgt_lang=self.tgt_lang,
            src_lang=self.detected_src_lang or self.src_lang,
            input_key=self.input_key,
            speaker_id=self.speaker_id,
            output_format=self.output_format,
            priority=self.priority,
            speed=self.speed,
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
            detected_src_lang=data.get("detected_src_lang") or None,
            detected_src_lang_confidence=opt_float("detected_src_lang_confidence"),
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
            webhook_url=data.get("webhook_url") or None,
            expires_at=float(data.get("expires_at") or 0),
            owner=data.get("owner", ""),
            priority=Priority(data.get("priority") or Priority.NORMAL),
            speed=float(data.get("speed") or 1.0),
        )

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id,
            "task": self.task.value,
            "status": self.status.value,
            "tgt_lang": self.tgt_lang,
            "src_lang": self.src_lang or "",
            "detected_src_lang": self.detected_src_lang or "",
            "detected_src_lang_confidence": ""
            if self.detected_src_lang_confidence is None
            else repr(self.detected_src_lang_confidence),
            "speaker_id": "" if self.speaker_id is None else str(self.speaker_id),
            "output_format": self.output_format,
            "input_key": self.input_key,
            "input_meta": json.dumps(self.input_meta),
            "created_at": repr(self.created_at),
            "progress_done": str(self.progress_done),
            "progress_total": str(self.progress_total),
            "attempts": str(self.attempts),
            "webhook_url": self.webhook_url or "",
            "expires_at": repr(self.expires_at),
            "owner": self.owner,
            "priority": self.priority.value,
            "speed": repr(self.speed),
        }


# Shared Lua: every script can emit events and end jobs the same way. __P__ is the key prefix, __MAXLEN__ the
# events stream length.
_PRELUDE = """
local P, MAXLEN, QUEUE_RANK_SPAN = '__P__', '__MAXLEN__', __SPAN__
local function emit(id, name, payload)
  redis.call('XADD', P .. 'job:' .. id .. ':events', 'MAXLEN', '~', MAXLEN, '*', 'event', name, 'data', payload)
end
local function on_terminal(id, status, now)
  local job = P .. 'job:' .. id
  local owner = redis.call('HGET', job, 'owner')
  if owner and owner ~= '' then redis.call('SREM', P .. 'active:' .. owner, id) end
  redis.call('SREM', P .. 'jobs:running', id)
  redis.call('ZREM', P .. 'jobs:queued', id)
  local expires = tonumber(redis.call('HGET', job, 'expires_at'))
  if expires then
    local at = math.floor(math.max(expires, tonumber(now) + 10))
    redis.call('EXPIREAT', job, at)
    redis.call('EXPIREAT', job .. ':events', at)
    local gone = P .. 'gone:' .. id
    local held = redis.call('GET', gone) or '0|'
    local keep = tonumber(string.match(held, '^(%d+)')) or 0
    redis.call('SET', gone, held, 'EXAT', at + keep + 1)
  end
  local url = redis.call('HGET', job, 'webhook_url')
  if url and url ~= '' then
    local event_id = 'msg_' .. id .. '_' .. status
    local key = P .. 'webhook:' .. event_id
    if redis.call('EXISTS', key) == 0 then
      redis.call('HSET', key, 'id', event_id, 'job_id', id, 'type', 'job.' .. status, 'url', url,
        'status', 'pending', 'created_at', now, 'attempts', '0')
      local keep = math.floor(math.max(expires or 0, tonumber(now)) + 2 * 86400)
      redis.call('EXPIREAT', key, keep)
      redis.call('RPUSH', job .. ':webhooks', event_id)
      redis.call('EXPIREAT', job .. ':webhooks', keep)
      redis.call('ZADD', P .. 'webhooks:due', now, event_id)
    end
  end
  emit(id, 'status', cjson.encode({status=status}))
end
-- A queued job's place: priority first (high, normal, low), then the order it was (re)queued in.
local RANKS = {high=0, normal=1, low=2}
local function enqueue(job, id)
  local rank = RANKS[redis.call('HGET', job, 'priority') or 'normal'] or 1
  redis.call('ZADD', P .. 'jobs:queued', rank * QUEUE_RANK_SPAN + redis.call('INCR', P .. 'jobs:seq'), id)
end
"""


def _lua(body: str) -> str:
    return (
        (_PRELUDE + body)
        .replace("__P__", PREFIX)
        .replace("__MAXLEN__", str(EVENTS_MAXLEN))
        .replace("__SPAN__", str(QUEUE_RANK_SPAN))
    )


_CLAIM_LUA = _lua("""
local job, lease = KEYS[1], KEYS[2]
local token, lease_ms, now, worker = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_attempts, min_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local status = redis.call('HGET', job, 'status')
if not status then return 'missing' end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 'finished' end
if redis.call('EXISTS', lease) == 1 then return 'busy' end
local id = redis.call('HGET', job, 'id')
if redis.call('HGET', job, 'cancel_requested') == '1' then
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', now)
  on_terminal(id, 'cancelled', now)
  return 'cancelled'
end
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
if attempts > max_attempts then
  local last = redis.call('HGET', job, 'last_error_code')
  local err
  if last and last ~= '' then
    err = cjson.encode({code=last, message=redis.call('HGET', job, 'last_error_message') ..
      ' (after ' .. (attempts - 1) .. ' attempts)'})
  else
    err = cjson.encode({code='too_many_attempts',
      message='the job was started ' .. (attempts - 1) .. ' times and never finished; giving up'})
  end
  redis.call('HSET', job, 'status', 'failed', 'finished_at', now, 'error', err)
  on_terminal(id, 'failed', now)
  return 'exhausted'
end
redis.call('SET', lease, token, 'PX', lease_ms)
redis.call('HSET', job, 'status', 'running', 'started_at', now, 'worker', worker)
redis.call('SADD', P .. 'jobs:running', id)
redis.call('ZREM', P .. 'jobs:queued', id)
local ttl = redis.call('TTL', job)
if ttl >= 0 and ttl < min_ttl then
  redis.call('EXPIRE', job, min_ttl)
  redis.call('EXPIRE', job .. ':events', min_ttl)
end
emit(id, 'status', cjson.encode({status='running', attempt=attempts}))
return 'claimed'
""")

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_PROGRESS_LUA = _lua("""
local job, lease = KEYS[1], KEYS[2]
if redis.call('GET', lease) ~= ARGV[1] then return 0 end
redis.call('HSET', job, 'progress_done', ARGV[2], 'progress_total', ARGV[3])
emit(redis.call('HGET', job, 'id'), 'progress', cjson.encode({done=tonumber(ARGV[2]), total=tonumber(ARGV[3])}))
return 1
""")

# Finishing needs the lease, or a lapsed lease nobody else took: a slow worker may still finish its job.
_FINISH_LUA = _lua("""
local job, lease = KEYS[1], KEYS[2]
local token, status, now, result, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HGET', job, 'status') ~= 'running' then return 0 end
local holder = redis.call('GET', lease)
if holder and holder ~= token then return 0 end
redis.call('HSET', job, 'status', status, 'finished_at', now)
if result ~= '' then redis.call('HSET', job, 'result', result) end
if err ~= '' then redis.call('HSET', job, 'error', err) end
redis.call('DEL', lease)
on_terminal(redis.call('HGET', job, 'id'), status, now)
return 1
""")

# A running job whose lease lapsed (its worker died) goes back to queued; the caller re-sends its message.
_REQUEUE_LUA = _lua("""
local job, lease = KEYS[1], KEYS[2]
local id = ARGV[1]
local status = redis.call('HGET', job, 'status')
if status ~= 'running' then redis.call('SREM', P .. 'jobs:running', id) return 0 end
if redis.call('EXISTS', lease) == 1 then return 0 end
redis.call('HSET', job, 'status', 'queued', 'worker', '')
redis.call('SREM', P .. 'jobs:running', id)
enqueue(job, id)
emit(id, 'status', cjson.encode({status='queued', requeued=true}))
return 1
""")

# A transient failure (storage unreachable): give the job back to the queue, remembering why.
_RELEASE_LUA = _lua("""
local job, lease = KEYS[1], KEYS[2]
local token, code, message = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', job, 'status') ~= 'running' then return 0 end
if redis.call('GET', lease) ~= token then return 0 end
local id = redis.call('HGET', job, 'id')
redis.call('DEL', lease)
redis.call('HSET', job, 'status', 'queued', 'worker', '', 'last_error_code', code, 'last_error_message', message)
redis.call('SREM', P .. 'jobs:running', id)
enqueue(job, id)
emit(id, 'status', cjson.encode({status='queued', retry=true, reason=code}))
return 1
""")

# Shutdown (SIGTERM): the worker gives a running job back to the queue at once; the attempt does not count.
_HAND_BACK_LUA = _lua("""
local job, lease = KEYS[1], KEYS[2]
local token = ARGV[1]
if redis.call('HGET', job, 'status') ~= 'running' then return 0 end
if redis.call('GET', lease) ~= token then return 0 end
local id = redis.call('HGET', job, 'id')
redis.call('DEL', lease)
redis.call('HINCRBY', job, 'attempts', -1)
redis.call('HSET', job, 'status', 'queued', 'worker', '', 'progress_done', '0')
redis.call('SREM', P .. 'jobs:running', id)
enqueue(job, id)
emit(id, 'status', cjson.encode({status='queued', handed_back=true}))
return 1
""")

# One unit's result, released in source order while the job runs (the job's live output).
_SEGMENT_LUA = _lua("""
local job, lease = KEYS[1], KEYS[2]
if redis.call('GET', lease) ~= ARGV[1] then return 0 end
emit(redis.call('HGET', job, 'id'), 'segment', ARGV[2])
return 1
""")

_CANCEL_LUA = _lua("""
local job = KEYS[1]
local now = ARGV[1]
local status = redis.call('HGET', job, 'status')
if not status then return 'missing' end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 'finished' end
local id = redis.call('HGET', job, 'id')
if status == 'queued' then
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', now, 'cancel_requested', '1')
  on_terminal(id, 'cancelled', now)
  return 'cancelled'
end
if redis.call('HGET', job, 'cancel_requested') ~= '1' then
  redis.call('HSET', job, 'cancel_requested', '1')
  emit(id, 'cancel_requested', cjson.encode({status=status}))
end
return 'cancelling'
""")


class JobStore:
    """Synchronous access to the job store (workers, the reaper, the CLI and the gateway's thread pool)."""

    def __init__(self, client: redis.Redis, *, result_ttl_s: int, gone_ttl_s: int = 7 * 24 * 3600) -> None:
        self._redis = client
        self.result_ttl_s = result_ttl_s
        self.gone_ttl_s = gone_ttl_s
        self._claim = client.register_script(_CLAIM_LUA)
        self._renew = client.register_script(_RENEW_LUA)
        self._progress = client.register_script(_PROGRESS_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._requeue = client.register_script(_REQUEUE_LUA)
        self._cancel = client.register_script(_CANCEL_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._hand_back = client.register_script(_HAND_BACK_LUA)
        self._segment = client.register_script(_SEGMENT_LUA)

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    def new_record(self, **fields: Any) -> JobRecord:
        """A queued job created now, expiring ``result_ttl_s`` from now."""
        now = time.time()
        return JobRecord(status=JobStatus.QUEUED, created_at=now, expires_at=now + self.result_ttl_s, **fields)

    def create(self, record: JobRecord) -> None:
        expires_at = record.expires_at or record.created_at + self.result_ttl_s
        record = record.model_copy(update={"expires_at": expires_at})
        at = int(expires_at) + 1
        key = job_key(record.id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=dict(record.to_hash()))  # type: ignore[arg-type]
        pipe.expireat(key, at)
        pipe.xadd(
            events_key(record.id),
            {"event": "status", "data": json.dumps({"status": record.status.value})},
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )
        pipe.expireat(events_key(record.id), at)
        pipe.zadd(INDEX_ZSET, {record.id: record.created_at})
        if record.owner:
            pipe.zadd(owner_index_key(record.owner), {record.id: record.created_at})
        pipe.zadd(EXPIRY_ZSET, {record.id: expires_at})
        # "<seconds>|<owner>": how long the id answers 410 after the record expires (used again when the job
        # ends), and to whom.
        pipe.set(gone_key(record.id), f"{self.gone_ttl_s}|{record.owner}", exat=at + self.gone_ttl_s + 1)
        pipe.execute()
        if record.status is JobStatus.QUEUED:
            score = record.priority.rank * QUEUE_RANK_SPAN + int(self._redis.incr(QUEUE_SEQ))
            self._redis.zadd(QUEUED_ZSET, {record.id: score})

    def delete(self, job_id: str) -> None:
        """Forget a job entirely (a submission that could not be enqueued)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(job_key(job_id), lease_key(job_id), events_key(job_id), gone_key(job_id))
        for zset in (INDEX_ZSET, QUEUED_ZSET, EXPIRY_ZSET):
            pipe.zrem(zset, job_id)
        pipe.srem(RUNNING_SET, job_id)
        pipe.execute()

    def get(self, job_id: str) -> JobRecord | None:
        data: dict[str, str] = self._redis.hgetall(job_key(job_id))  # type: ignore[assignment]
        if not data:
            return None
        return JobRecord.from_hash(data)

    def gone_owner(self, job_id: str) -> str | None:
        """For a job that existed and expired recently (answer 410 rather than 404): the owner it had; else None."""
        held = self._redis.get(gone_key(job_id))
        if held is None or self._redis.exists(job_key(job_id)):
            return None
        return _text(held).partition("|")[2]

    def queued_count(self) -> int:
        return int(self._redis.zcard(QUEUED_ZSET))

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job a worker will take (priority first, then queue order); None when not queued."""
        rank = self._redis.zrank(QUEUED_ZSET, job_id)
        return None if rank is None else int(rank) + 1  # type: ignore[arg-type]

    def claim(self, job_id: str, *, token: str, worker: str, lease_s: float, max_attempts: int) -> ClaimOutcome:
        outcome = self._claim(
            keys=[job_key(job_id), lease_key(job_id)],
            args=[token, int(lease_s * 1000), repr(time.time()), worker, max_attempts, MIN_RUNNING_TTL_S],
        )
        return ClaimOutcome(_text(outcome))

    def renew_lease(self, job_id: str, *, token: str, lease_s: float) -> bool:
        return bool(self._renew(keys=[lease_key(job_id)], args=[token, int(lease_s * 1000)]))

    def set_progress(self, job_id: str, *, token: str, done: int, total: int) -> bool:
        return bool(self._progress(keys=[job_key(job_id), lease_key(job_id)], args=[token, done, total]))

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
                keys=[job_key(job_id), lease_key(job_id)],
                args=[
                    token,
                    status.value,
                    repr(time.time()),
                    json.dumps(result) if result is not None else "",
                    error.model_dump_json() if error is not None else "",
                ],
            )
        )

    def release_for_retry(self, job_id: str, *, token: str, error: M4TError) -> bool:
        """Back to the queue after a transient failure (the caller re-sends it); the error is kept, and becomes
        the job's error if it never gets through within ``max_attempts``."""
        return bool(self._release(keys=[job_key(job_id), lease_key(job_id)], args=[token, error.code, error.message]))

    def hand_back(self, job_id: str, *, token: str) -> bool:
        """Back to the queue at shutdown (the caller re-sends it); the attempt is not counted, and the job will
        start again from its beginning."""
        return bool(self._hand_back(keys=[job_key(job_id), lease_key(job_id)], args=[token]))

    def publish_segment(self, job_id: str, *, token: str, segment: dict[str, Any]) -> bool:
        """A ``segment`` event on the job's stream (SSE), while we hold its lease."""
        return bool(
            self._segment(
                keys=[job_key(job_id), lease_key(job_id)], args=[token, json.dumps(segment, ensure_ascii=False)]
            )
        )

    def request_cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a queued job at once; ask a running one to stop at its next batch boundary."""
        return CancelOutcome(_text(self._cancel(keys=[job_key(job_id)], args=[repr(time.time())])))

    def cancel_requested(self, job_id: str) -> bool:
        return self._redis.hget(job_key(job_id), "cancel_requested") in (b"1", "1")

    def running_job_ids(self) -> list[str]:
        return sorted(_text(member) for member in self._redis.smembers(RUNNING_SET))

    def requeue_if_lease_lapsed(self, job_id: str) -> bool:
        """Put a running job whose worker is gone back to queued. True when the caller must re-send it."""
        return bool(self._requeue(keys=[job_key(job_id), lease_key(job_id)], args=[job_id]))

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 20,
        before: tuple[float, str] | None = None,
        owner: str | None = None,
    ) -> tuple[list[JobRecord], tuple[float, str] | None]:
        """Newest first, all jobs or one owner's. ``before`` is the (created_at, id) of the last job of the previous
        page. Returns the page and the cursor of the next one (None at the end). Ids whose record expired are
        dropped from the index."""
        index = INDEX_ZSET if owner is None else owner_index_key(owner)
        found: list[JobRecord] = []
        cursor = before
        for _ in range(25):  # at most 25 x 200 index entries per page
            top = "+inf" if cursor is None else repr(cursor[0])
            batch: list[tuple[str, float]] = self._redis.zrevrangebyscore(  # type: ignore[assignment]
                index, top, "-inf", start=0, num=200, withscores=True
            )
            fresh = [(score, _text(member)) for member, score in batch if cursor is None or (score, member) < cursor]
            if not fresh:
                return found, None
            for score, job_id in fresh:
                cursor = (float(score), job_id)
                record = self.get(job_id)
                if record is None:
                    self._redis.zrem(index, job_id)
                    continue
                if status is None or record.status is status:
                    found.append(record)
                    if len(found) == limit:
                        return found, cursor
        return found, cursor

    def expired_job_ids(self, *, now: float, limit: int = 500) -> list[str]:
        """Jobs past their expiry time whose record is gone: their stored files can be deleted."""
        due = self._redis.zrangebyscore(EXPIRY_ZSET, "-inf", now, start=0, num=limit)
        expired = []
        for member in due:
            job_id = _text(member)
            ttl = int(self._redis.ttl(job_key(job_id)))
            if ttl == -2:  # the record is gone
                expired.append(job_id)
            else:  # still alive (it ran or finished past its expiry): look again when it is due to go
                self._redis.zadd(EXPIRY_ZSET, {job_id: now + (ttl + 1 if ttl > 0 else 3600)})
        return expired

    def forget_expired(self, job_id: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for zset in (EXPIRY_ZSET, INDEX_ZSET, QUEUED_ZSET):
            pipe.zrem(zset, job_id)
        pipe.execute()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
