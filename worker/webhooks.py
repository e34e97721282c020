"""``m4t worker --role webhooks``: delivers webhook events, and deletes the stored files of expired jobs.

A light process (no torch, no model): a Celery worker on its own queue (``M4T_WEBHOOK_QUEUE``), never on an
inference worker, with a thread pool so a slow receiver does not hold up the others. A scheduler thread takes
the events whose time has come from Redis (``webhooks:due``) and sends one Celery task per attempt; retries are
scheduled there too, not with Celery countdowns (which the Redis broker would redeliver after its visibility
timeout).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
from celery import Celery

from shared.celery_app import make_celery
from shared.errors import StorageUnavailable
from shared.job_view import job_to_api
from shared.jobs import JobStore
from shared.messages import DELIVER_WEBHOOK_TASK, job_prefix
from shared.redis_client import sync_redis
from shared.settings import CommonSettings
from shared.storage import S3Storage, Storage, storage_from_settings
from shared.webhook_events import Outcome, WebhookAttemptRecord, WebhookEvent, WebhookEventStore
from shared.webhooks import (
    AllowList,
    AttemptResult,
    WebhookUrlRefused,
    build_event,
    check_webhook_url,
    event_body,
    parse_secrets,
    post_event,
    retry_delay_s,
    signature_headers,
)
from shared.workers import Heartbeat, WorkerRegistry

log = logging.getLogger(__name__)

ATTEMPT_SLACK_S = 30.0  # an attempt holds its event for the timeout plus this, then it may be tried again
SCHEDULER_INTERVAL_S = 0.25


class WebhookDeliverer:
    """One attempt at one event: sign, check the URL again (after DNS), POST, record, schedule the next."""

    def __init__(
        self,
        store: JobStore,
        events: WebhookEventStore,
        *,
        keys: Sequence[bytes],
        allow: AllowList,
        schedule: Sequence[float],
        timeout_s: float,
        public_url: str,
        http: httpx.Client,
    ) -> None:
        self.store, self.events = store, events
        self.keys, self.allow, self.schedule = list(keys), allow, tuple(schedule)
        self.timeout_s, self.public_url, self.http = timeout_s, public_url, http

    def deliver(self, event_id: str) -> str:
        now = time.time()
        event = self.events.get(event_id)
        if event is None or event.status != "pending":
            return "nothing to do"
        if not self.events.begin_attempt(event_id, now=now, lease_until=now + self.timeout_s + ATTEMPT_SLACK_S):
            return "already being attempted"
        body = self.events.body(event_id, lambda: event_body(self._event(event)))
        result = self._attempt(event, body)
        outcome: Outcome
        next_at = 0.0
        if result.delivered:
            outcome = "delivered"
        elif result.stop:
            outcome = "stopped"
        else:
            delay = retry_delay_s(event.attempts + 1, self.schedule, retry_after_s=result.retry_after_s)
            outcome = "retry" if delay is not None else "failed"
            next_at = time.time() + (delay or 0.0)
        record = WebhookAttemptRecord(
            at=result.at, duration_ms=result.duration_ms, status_code=result.status_code, error=result.error
        )
        self.events.record_attempt(event_id, record, outcome, now=time.time(), next_at=next_at)
        log.info(
            "webhook %s attempt %d: %s -> %s", event_id, event.attempts + 1, result.status_code or result.error, outcome
        )
        return outcome

    def _attempt(self, event: WebhookEvent, body: bytes) -> AttemptResult:
        started = time.time()
        try:
            check_webhook_url(event.url, self.allow)
        except WebhookUrlRefused as exc:
            return AttemptResult(
                at=started, duration_ms=0.0, status_code=None, error=f"refused: {exc.message}", retry_after_s=None
            )
        headers = signature_headers(self.keys, event.id, int(time.time()), body)
        return post_event(self.http, event.url, body, headers, timeout_s=self.timeout_s)

    def _event(self, event: WebhookEvent) -> dict[str, Any]:
        record = self.store.get(event.job_id)
        if record is not None:
            view = job_to_api(record, self.public_url)
        else:  # the job expired before its first attempt: say what we still know
            status = event.type.removeprefix("job.")
            view = {"id": event.job_id, "status": status, "links": {}}
        return build_event(view, event_type=event.type, base_url=self.public_url)


def register_webhook_tasks(app: Celery, deliverer: WebhookDeliverer) -> None:
    @app.task(name=DELIVER_WEBHOOK_TASK, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def deliver_webhook(event_id: str) -> str:
        return deliverer.deliver(event_id)


def sweep_expired_files(store: JobStore, storage: Storage, *, now: float) -> int:
    """Delete the stored files of jobs whose record has expired. Running jobs are never touched (their record
    lives while they run)."""
    swept = 0
    for job_id in store.expired_job_ids(now=now):
        storage.delete_prefix(job_prefix(job_id))
        store.forget_expired(job_id)
        swept += 1
    if swept:
        log.info("swept the files of %d expired jobs", swept)
    return swept


def expiry_rule_days(settings: CommonSettings) -> int:
    """Days after which the bucket's lifecycle rule deletes a job's files, counted from their upload: a backstop
    behind the sweeper, so it waits for the result TTL plus the visibility timeout (a generous bound on a run,
    which takes hours at most even when its lease is renewed) plus a day, lifecycle rules counting whole days."""
    return math.ceil((settings.result_ttl_s + settings.visibility_timeout_s) / 86400) + 1


def set_bucket_expiry(storage: Storage, settings: CommonSettings) -> None:
    """On S3, add a lifecycle rule for ``jobs/`` where the server supports it; the sweeper does the exact work."""
    if not isinstance(storage, S3Storage):
        return
    days = expiry_rule_days(settings)
    try:
        outcome = storage.set_expiry_rule("jobs/", days)
    except StorageUnavailable as exc:
        log.warning("could not set the bucket's expiry rule (the sweeper still deletes expired files): %s", exc)
        return
    if outcome == "set":
        log.info("bucket lifecycle rule: objects under jobs/ expire after %d days (backstop of the sweeper)", days)
    elif outcome == "bucket_has_rules":
        log.warning(
            "the bucket has lifecycle rules of its own, left untouched: the sweeper alone deletes expired files "
            "(add an expiry of %d days for the prefix jobs/ yourself for a backstop)",
            days,
        )
    else:
        log.info("the S3 server does not support lifecycle rules: the sweeper alone deletes expired files")


def run_webhook_worker(settings: CommonSettings, *, name: str, concurrency: int = 8) -> None:
    keys = parse_secrets(settings.webhook_secrets) if settings.webhook_secrets else []
    if not keys:
        log.warning("M4T_WEBHOOK_SECRETS is empty: events cannot be signed, so jobs with a webhook_url are refused")
    redis_client = sync_redis(settings.redis_url)
    store = JobStore(redis_client, result_ttl_s=settings.result_ttl_s, gone_ttl_s=settings.gone_ttl_s)
    events = WebhookEventStore(redis_client)
    registry = WorkerRegistry(redis_client)
    storage = storage_from_settings(settings)
    set_bucket_expiry(storage, settings)
    # trust_env=False: a proxy from the environment would make the connection, and the SSRF check would no longer
    # describe where the request goes.
    http = httpx.Client(follow_redirects=False, timeout=settings.webhook_timeout_s, trust_env=False)
    deliverer = WebhookDeliverer(
        store,
        events,
        keys=keys,
        allow=AllowList.parse(settings.webhook_allow_hosts),
        schedule=settings.retry_schedule,
        timeout_s=settings.webhook_timeout_s,
        public_url=settings.resolved_public_url,
        http=http,
    )
    app = make_celery(settings, name="m4t-webhooks")
    register_webhook_tasks(app, deliverer)
    stop = threading.Event()
    started_at = time.time()

    def background() -> None:
        last_sweep = 0.0
        last_beat = 0.0
        while not stop.is_set():
            now = time.time()
            try:
                for event_id in events.take_due(now=now, window_s=settings.webhook_timeout_s + 60):
                    app.send_task(DELIVER_WEBHOOK_TASK, args=[event_id], queue=settings.webhook_queue)
                if now - last_beat >= 2.0:
                    registry.publish(_heartbeat(name, settings, started_at), ttl_s=10.0)
                    last_beat = now
                if now - last_sweep >= settings.sweep_interval_s:
                    sweep_expired_files(store, storage, now=now)
                    last_sweep = now
            except Exception:
                log.warning("webhook scheduler round failed", exc_info=True)
            stop.wait(SCHEDULER_INTERVAL_S)

    thread = threading.Thread(target=background, name="webhook-scheduler", daemon=True)
    thread.start()
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={settings.webhook_queue}",
                f"--hostname={name}",
                "--loglevel=INFO",
                "--without-mingle",
            ]
        )
    finally:
        stop.set()
        thread.join(timeout=5)
        http.close()
        try:
            registry.remove(name)
        except Exception:
            log.debug("could not remove heartbeat", exc_info=True)


def _heartbeat(name: str, settings: CommonSettings, started_at: float) -> Heartbeat:
    return Heartbeat(
        name=name,
        role="webhooks",
        device="-",
        model="-",
        dtype="-",
        model_loaded=False,
        gpu_available=False,
        queues=[settings.webhook_queue],
        pid=os.getpid(),
        started_at=started_at,
        seen_at=time.time(),
    )
