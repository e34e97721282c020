"""The clients the gateway holds for its lifetime: Redis (sync for the job store, async for waiting), storage,
the Celery producer and the language detector. Created in the app's lifespan (before the app serves: the
detector's models load then), reached through ``gateway.deps``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis
from celery import Celery
from redis.asyncio import Redis as AsyncRedis

from gateway.language_detection import TextLanguageDetector
from shared.celery_app import make_celery
from shared.errors import BrokerUnavailable
from shared.jobs import JobStore
from shared.languages import LanguageSupport
from shared.messages import RUN_JOB_TASK, JobMessage
from shared.priority import broker_priority
from shared.redis_client import async_redis, sync_redis
from shared.settings import GatewaySettings
from shared.storage import Storage, storage_from_settings
from shared.webhook_urls import AllowList
from shared.workers import WorkerRegistry

log = logging.getLogger(__name__)

_LANGUAGES_CACHE_S = 10.0


@dataclass
class Services:
    settings: GatewaySettings
    redis: redis.Redis
    aredis: AsyncRedis
    store: JobStore
    registry: WorkerRegistry
    storage: Storage
    celery: Celery
    webhook_allow: AllowList
    detector: TextLanguageDetector | None
    """Detects text's language for ``src_lang: "auto"``; None when ``M4T_DETECT_ACCURACY`` is off."""
    _languages: tuple[float, LanguageSupport, bool] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Services:
        client = sync_redis(settings.redis_url)
        storage = storage_from_settings(settings)
        return cls(
            settings=settings,
            redis=client,
            aredis=async_redis(settings.redis_url),
            store=JobStore(client, result_ttl_s=settings.result_ttl_s, gone_ttl_s=settings.gone_ttl_s),
            registry=WorkerRegistry(client),
            storage=storage,
            celery=make_celery(settings, name="m4t-gateway"),
            webhook_allow=AllowList.parse(settings.webhook_allow_hosts),
            detector=build_detector(settings),
        )

    async def close(self) -> None:
        await self.aredis.aclose()
        self.redis.close()
        self.storage.close()
        self.celery.close()

    def enqueue(self, message: JobMessage) -> None:
        try:
            self.celery.send_task(
                RUN_JOB_TASK,
                args=[message.to_celery()],
                queue=self.settings.inference_queue,
                priority=broker_priority(message.priority),
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5},
            )
        except Exception as exc:
            raise BrokerUnavailable("the job queue is unreachable; retry shortly") from exc

    def languages(self) -> tuple[LanguageSupport, bool]:
        """What the workers' model supports (cached a few seconds); the published checkpoint's lists until a
        worker has reported. The flag says whether the lists come from a loaded model."""
        now = time.monotonic()
        if self._languages and now - self._languages[0] < _LANGUAGES_CACHE_S:
            return self._languages[1], self._languages[2]
        try:
            published = self.registry.languages()
        except redis.RedisError:
            published = None
        support, from_model = (published, True) if published else (LanguageSupport.published_checkpoint(), False)
        self._languages = (now, support, from_model)
        return support, from_model


def build_detector(settings: GatewaySettings) -> TextLanguageDetector | None:
    if settings.detect_accuracy == "off":
        return None
    started = time.monotonic()
    detector = TextLanguageDetector(min_confidence=settings.detect_min_confidence, accuracy=settings.detect_accuracy)
    log.info("language detector ready (%s accuracy) in %.1f s", settings.detect_accuracy, time.monotonic() - started)
    return detector
