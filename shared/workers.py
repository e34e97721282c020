"""Worker heartbeats and what the loaded model supports, published in Redis for the gateway's health and
languages endpoints."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from pydantic import BaseModel

from shared.languages import LanguageSupport

PREFIX = "m4t:worker:"
LANGUAGES_KEY = "m4t:model:languages"


class GpuMemory(BaseModel):
    total: float
    free: float
    used: float
    """GiB."""


class Heartbeat(BaseModel):
    """What a worker says about itself every few seconds."""

    name: str
    role: str = "inference"
    device: str
    model: str
    dtype: str
    model_loaded: bool
    gpu_available: bool
    gpu_memory: GpuMemory | None = None
    queues: list[str]
    pid: int
    started_at: float
    seen_at: float
    jobs_done: int = 0
    jobs_failed: int = 0
    current_job: str | None = None
    jobs_in_flight: int = 0
    """Jobs this worker holds now (their units share generate calls)."""
    job_slots: int = 1
    """Most jobs it may hold (`M4T_WORKER_JOBS` + `M4T_WORKER_HIGH_SLOTS`)."""
    units_waiting: int = 0
    """Units (text chunks, speech segments) queued for the model."""
    mean_batch_items: float | None = None
    """Mean items per generate call over the last minute (None: no call in that minute)."""
    last_error: str | None = None
    tasks: list[str] = []


class WorkerRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def publish(self, beat: Heartbeat, *, ttl_s: float) -> None:
        self._redis.set(PREFIX + beat.name, beat.model_dump_json(), px=int(ttl_s * 1000))

    def remove(self, name: str) -> None:
        self._redis.delete(PREFIX + name)

    def alive(self) -> list[Heartbeat]:
        names = sorted(self._redis.scan_iter(match=PREFIX + "*", count=100))
        beats: list[Heartbeat] = []
        for raw in self._redis.mget(names) if names else []:
            if raw:
                beats.append(Heartbeat.model_validate_json(raw))
        return beats

    def publish_languages(self, support: LanguageSupport, *, model: str) -> None:
        payload: dict[str, Any] = {"model": model, "published_at": time.time(), **support.to_json()}
        self._redis.set(LANGUAGES_KEY, json.dumps(payload))

    def languages(self) -> LanguageSupport | None:
        raw = self._redis.get(LANGUAGES_KEY)
        if not raw:
            return None
        return LanguageSupport.from_json(json.loads(raw))
