"""``Idempotency-Key`` on submissions: the same key with the same request gives back the same job (no new job,
no new upload); the same key with a different request is refused; concurrent duplicates make exactly one job.

One Redis key per idempotency key (hashed, scoped to the caller), set with NX: the first request owns it and
records its job id when done; the others wait for that id, or fail if the owner's submission failed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

from redis.asyncio import Redis as AsyncRedis

from shared.errors import InvalidRequest, M4TError

MAX_KEY_LENGTH = 255
WAIT_FOR_OWNER_S = 30.0


class IdempotencyKeyReused(InvalidRequest):
    code = "idempotency_key_reused"


class InvalidIdempotencyKey(InvalidRequest):
    code = "invalid_idempotency_key"


class IdempotencyKeyInProgress(M4TError):
    code = "idempotency_key_in_progress"
    status_code = 409


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(33 <= ord(ch) <= 126 for ch in key):
        raise InvalidIdempotencyKey(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces",
            details={"field": "Idempotency-Key"},
        )
    return key


class Idempotency:
    def __init__(self, aredis: AsyncRedis, *, ttl_s: int) -> None:
        self._redis = aredis
        self._ttl_s = ttl_s

    @staticmethod
    def _redis_key(key: str, scope: str) -> str:
        return "m4t:idem:" + hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()

    async def claim(self, key: str, fingerprint: str, *, scope: str = "") -> str | None:
        """None when this request owns the key (it must submit, then ``complete``); otherwise the id of the job an
        earlier identical request made."""
        redis_key = self._redis_key(key, scope)
        deadline = time.monotonic() + WAIT_FOR_OWNER_S
        while True:
            pending = json.dumps({"fp": fingerprint, "job": None})
            if await self._redis.set(redis_key, pending, nx=True, ex=self._ttl_s):
                return None
            raw = await self._redis.get(redis_key)
            if raw is None:  # the owner failed and released it, or it just expired: try to own it
                continue
            held = json.loads(raw)
            if held["fp"] != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with a different request", details={"field": "Idempotency-Key"}
                )
            if held["job"]:
                return str(held["job"])
            if time.monotonic() > deadline:
                raise IdempotencyKeyInProgress("a request with this Idempotency-Key is still being processed")
            await asyncio.sleep(0.05)

    async def complete(self, key: str, fingerprint: str, job_id: str, *, scope: str = "") -> None:
        await self._redis.set(
            self._redis_key(key, scope), json.dumps({"fp": fingerprint, "job": job_id}), ex=self._ttl_s
        )

    async def release(self, key: str, *, scope: str = "") -> None:
        await self._redis.delete(self._redis_key(key, scope))
