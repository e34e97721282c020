"""Webhook events in Redis: one per terminal state of a job that named a ``webhook_url`` (created atomically with
the state change, in ``shared/jobs.py``), each attempt recorded, retries scheduled in a sorted set.

Keys (under ``m4t:``): ``webhook:{event_id}`` hash, ``webhook:{event_id}:attempts`` list (JSON),
``webhooks:due`` sorted set (event id by the time of its next attempt), ``job:{id}:webhooks`` list (event ids).

The ``webhook-id`` header is the event id, stable across retries; the body is built once and stored, so every
retry sends the same bytes.
"""

from __future__ import annotations

from typing import Any, Literal

import redis
from pydantic import BaseModel

from shared.job_view import iso
from shared.jobs import PREFIX, WEBHOOKS_DUE_ZSET, job_webhooks_key

EventStatus = Literal["pending", "delivered", "failed", "stopped"]
Outcome = Literal["delivered", "stopped", "failed", "retry"]


def event_key(event_id: str) -> str:
    return f"{PREFIX}webhook:{event_id}"


def attempts_key(event_id: str) -> str:
    return f"{PREFIX}webhook:{event_id}:attempts"


class WebhookAttemptRecord(BaseModel):
    at: float
    duration_ms: float
    status_code: int | None
    error: str | None


class WebhookEvent(BaseModel):
    id: str
    job_id: str
    type: str
    url: str
    status: EventStatus
    created_at: float
    attempts: int
    next_attempt_at: float | None = None
    delivered_at: float | None = None


# Take events whose time has come, pushing each one's time forward by the claim window: a dispatcher that dies
# before the attempt is recorded leaves the event to be taken again once the window has passed.
_TAKE_DUE_LUA = """
local due, now, window, limit = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  redis.call('ZADD', due, tonumber(now) + tonumber(window), id)
end
return ids
"""

# One attempt at a time per event: the attempt holds the event until ``lease_until``.
_BEGIN_LUA = """
local key, due, event_id, now, lease_until = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('HGET', key, 'status') ~= 'pending' then return 0 end
local held = tonumber(redis.call('HGET', key, 'lease_until') or '0')
if held and held > now then return 0 end
redis.call('HSET', key, 'lease_until', lease_until)
redis.call('ZADD', due, lease_until, event_id)
return 1
"""

_RECORD_LUA = """
local key, attempts, due = KEYS[1], KEYS[2], KEYS[3]
local event_id, attempt, outcome, now, next_at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HGET', key, 'status') ~= 'pending' then return 0 end
redis.call('RPUSH', attempts, attempt)
local ttl = redis.call('TTL', key)
if ttl > 0 then redis.call('EXPIRE', attempts, ttl) end
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HDEL', key, 'lease_until')
if outcome == 'retry' then
  redis.call('HSET', key, 'next_attempt_at', next_at)
  redis.call('ZADD', due, next_at, event_id)
  return 1
end
redis.call('ZREM', due, event_id)
redis.call('HDEL', key, 'next_attempt_at')
redis.call('HSET', key, 'status', outcome)
if outcome == 'delivered' then redis.call('HSET', key, 'delivered_at', now) end
return 1
"""


class WebhookEventStore:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._take_due = client.register_script(_TAKE_DUE_LUA)
        self._begin = client.register_script(_BEGIN_LUA)
        self._record = client.register_script(_RECORD_LUA)

    def take_due(self, *, now: float, window_s: float, limit: int = 100) -> list[str]:
        ids = self._take_due(keys=[WEBHOOKS_DUE_ZSET], args=[repr(now), window_s, limit])
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def get(self, event_id: str) -> WebhookEvent | None:
        data: dict[str, str] = self._redis.hgetall(event_key(event_id))  # type: ignore[assignment]
        if not data:
            return None
        return WebhookEvent(
            id=data["id"],
            job_id=data["job_id"],
            type=data["type"],
            url=data["url"],
            status=data["status"],
            created_at=float(data["created_at"]),
            attempts=int(data.get("attempts") or 0),
            next_attempt_at=float(data["next_attempt_at"]) if data.get("next_attempt_at") else None,
            delivered_at=float(data["delivered_at"]) if data.get("delivered_at") else None,
        )

    def begin_attempt(self, event_id: str, *, now: float, lease_until: float) -> bool:
        return bool(
            self._begin(keys=[event_key(event_id), WEBHOOKS_DUE_ZSET], args=[event_id, repr(now), repr(lease_until)])
        )

    def body(self, event_id: str, build: Any) -> bytes:
        """The event's body: built on the first attempt by ``build()`` and kept, so retries send the same bytes."""
        key = event_key(event_id)
        stored = self._redis.hget(key, "payload")
        if stored is None:
            self._redis.hsetnx(key, "payload", build().decode())
            stored = self._redis.hget(key, "payload")
        return str(stored).encode()

    def record_attempt(
        self, event_id: str, attempt: WebhookAttemptRecord, outcome: Outcome, *, now: float, next_at: float = 0.0
    ) -> bool:
        return bool(
            self._record(
                keys=[event_key(event_id), attempts_key(event_id), WEBHOOKS_DUE_ZSET],
                args=[event_id, attempt.model_dump_json(), outcome, repr(now), repr(next_at)],
            )
        )

    def attempts(self, event_id: str) -> list[WebhookAttemptRecord]:
        raw: list[str] = self._redis.lrange(attempts_key(event_id), 0, -1)  # type: ignore[assignment]
        return [WebhookAttemptRecord.model_validate_json(item) for item in raw]

    def for_job(self, job_id: str) -> list[tuple[WebhookEvent, list[WebhookAttemptRecord]]]:
        ids: list[str] = self._redis.lrange(job_webhooks_key(job_id), 0, -1)  # type: ignore[assignment]
        found = []
        for event_id in ids:
            event = self.get(event_id)
            if event is not None:
                found.append((event, self.attempts(event_id)))
        return found


def attempt_to_api(attempt: WebhookAttemptRecord) -> dict[str, Any]:
    return {
        "at": iso(attempt.at),
        "status_code": attempt.status_code,
        "error": attempt.error,
        "duration_ms": round(attempt.duration_ms, 1),
    }


def event_to_api(event: WebhookEvent, attempts: list[WebhookAttemptRecord]) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "url": event.url,
        "status": event.status,
        "created_at": iso(event.created_at),
        "delivered_at": iso(event.delivered_at),
        "next_attempt_at": iso(event.next_attempt_at),
        "attempts": [attempt_to_api(a) for a in attempts],
    }
