"""Runs one job end to end: take a slot, claim it, read its input from storage, translate it through the batch
scheduler, write the outputs, record the outcome. Plain Python; the Celery task only decodes the message and calls
``run``. Many jobs run at once, each in its own thread (the worker holds ``M4T_WORKER_JOBS`` of them, plus slots
kept for ``high`` jobs); only the scheduler's thread calls the model.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from shared.api_keys import ApiKeyStore
from shared.errors import InferenceFailed, M4TError, StorageUnavailable
from shared.jobs import ClaimOutcome, JobStore
from shared.messages import JobMessage, output_key
from shared.priority import Priority
from shared.storage import Storage
from worker.pipeline import JobContext, TranslationPipeline

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Cancellation was requested while the job ran; raised at a batch boundary."""


class LeaseLost(Exception):
    """Another worker took the job over (our lease lapsed): stop without writing anything."""


class HandBack(Exception):
    """The worker is shutting down: the job goes back to the queue now, to start again elsewhere."""


class NoFreeSlot(Exception):
    """The worker holds as many jobs as it may (or is shutting down): the message goes back to the broker."""


class JobSlots:
    """How many jobs this worker holds at once: ``normal`` slots for any job, and ``high`` slots that only ``high``
    jobs may take, so a high job starts at once even when every other slot holds a long job."""

    def __init__(self, normal: int, high: int) -> None:
        self.normal, self.high = normal, high
        self._used_normal = self._used_high = 0
        self._cond = threading.Condition()

    def acquire(self, priority: Priority, *, timeout: float) -> str | None:
        """The slot kind taken (``normal`` or ``high``), or None if none freed within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._used_normal < self.normal:
                    self._used_normal += 1
                    return "normal"
                if priority is Priority.HIGH and self._used_high < self.high:
                    self._used_high += 1
                    return "high"
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def release(self, kind: str) -> None:
        with self._cond:
            if kind == "high":
                self._used_high -= 1
            else:
                self._used_normal -= 1
            self._cond.notify_all()

    @property
    def in_use(self) -> int:
        with self._cond:
            return self._used_normal + self._used_high


@dataclass
class WorkerStats:
    jobs_done: int = 0
    jobs_failed: int = 0
    current_jobs: list[str] = field(default_factory=list)
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class LeaseKeeper:
    """Renews a job's lease in the background while the job runs."""

    def __init__(self, store: JobStore, job_id: str, token: str, lease_s: float) -> None:
        self._store, self._job_id, self._token, self._lease_s = store, job_id, token, lease_s
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                if not self._store.renew_lease(self._job_id, token=self._token, lease_s=self._lease_s):
                    log.warning("job %s: lease lost", self._job_id)
                    self.lost.set()
                    return
            except Exception:
                log.warning("job %s: could not renew the lease", self._job_id, exc_info=True)


class JobRunner:
    def __init__(
        self,
        pipeline: TranslationPipeline,
        store: JobStore,
        storage: Storage,
        *,
        worker_name: str,
        lease_s: float,
        max_attempts: int,
        stats: WorkerStats | None = None,
        after_job: Callable[[], None] | None = None,
        requeue: Callable[[JobMessage, float], None] | None = None,
        retry_delay_s: float = 10.0,
        slots: JobSlots | None = None,
        admit_wait_s: float = 1.0,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.storage = storage
        self.worker_name = worker_name
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.stats = stats or WorkerStats()
        self._after_job = after_job
        self._requeue = requeue
        self.retry_delay_s = retry_delay_s
        self.slots = slots or JobSlots(1, 0)
        self.admit_wait_s = admit_wait_s
        self.draining = threading.Event()
        """Set at shutdown: no new job starts, and every running job is handed back at its next checkpoint."""

    def run(self, message: JobMessage) -> str:
        """Run the job if nobody else has or does; returns what happened (for logs and tests). Raises
        ``NoFreeSlot`` when the worker is full or shutting down, and ``HandBack`` when the job was given back at
        shutdown: both mean the message goes back to the broker."""
        if self.draining.is_set():
            raise NoFreeSlot()
        slot = self.slots.acquire(message.priority, timeout=self.admit_wait_s)
        if slot is None:
            raise NoFreeSlot()
        try:
            if self.draining.is_set():
                raise NoFreeSlot()
            return self._claim_and_run(message)
        finally:
            self.slots.release(slot)

    def _claim_and_run(self, message: JobMessage) -> str:
        token = uuid.uuid4().hex
        outcome = self.store.claim(
            message.job_id,
            token=token,
            worker=self.worker_name,
            lease_s=self.lease_s,
            max_attempts=self.max_attempts,
        )
        if outcome is not ClaimOutcome.CLAIMED:
            log.info("job %s: %s, nothing to do", message.job_id, outcome.value)
            return outcome.value
        with self.stats.lock:
            self.stats.current_jobs.append(message.job_id)
        try:
            with LeaseKeeper(self.store, message.job_id, token, self.lease_s) as lease:
                return self._run_claimed(message, token, lease)
        finally:
            with self.stats.lock:
                self.stats.current_jobs.remove(message.job_id)
            if self._after_job:
                self._after_job()

    def _run_claimed(self, message: JobMessage, token: str, lease: LeaseKeeper) -> str:
        job_id = message.job_id
        try:
            result = self._execute(message, token, lease)
        except LeaseLost:
            return "lease_lost"
        except HandBack:
            self.storage.delete_prefix(output_key(job_id, ""))
            if self.store.hand_back(job_id, token=token):
                log.info("job %s: handed back to the queue (shutdown)", job_id)
                raise
            return "lease_lost"
        except StorageUnavailable as exc:
            return self._retry_later(message, token, exc)
        except JobCancelled:
            self.storage.delete_prefix(output_key(job_id, ""))
            self.store.mark_cancelled(job_id, token=token)
            log.info("job %s: cancelled", job_id)
            return "cancelled"
        except M4TError as exc:
            self._record_failure(job_id, token, exc)
            return "failed"
        except Exception as exc:
            log.exception("job %s: unexpected failure", job_id)
            self._record_failure(job_id, token, InferenceFailed("the job failed unexpectedly"), cause=exc)
            return "failed"
        if self.store.succeed(job_id, token=token, result=result):
            with self.stats.lock:
                self.stats.jobs_done += 1
            log.info("job %s: succeeded", job_id)
            return "succeeded"
        return "lease_lost"

    def _retry_later(self, message: JobMessage, token: str, error: StorageUnavailable) -> str:
        if not self.store.release_for_retry(message.job_id, token=token, error=error):
            return "lease_lost"
        record = self.store.get(message.job_id)
        attempts = record.attempts if record else 1
        delay = self.retry_delay_s * 2 ** max(0, attempts - 1)
        log.warning("job %s: %s; retrying in %.0f s", message.job_id, error.message, delay)
        if self._requeue is not None:
            self._requeue(message, delay)
        return "retry"

    def _record_failure(self, job_id: str, token: str, error: M4TError, cause: Exception | None = None) -> None:
        self.storage.delete_prefix(output_key(job_id, ""))
        self.store.fail(job_id, token=token, error=error)
        with self.stats.lock:
            self.stats.jobs_failed += 1
            self.stats.last_error = f"{error.code}: {type(cause).__name__ if cause else error.message}"
        log.info("job %s: failed (%s)", job_id, error.code)

    def _execute(self, message: JobMessage, token: str, lease: LeaseKeeper) -> dict[str, Any]:
        def progress(done: int, total: int) -> None:
            self.store.set_progress(message.job_id, token=token, done=done, total=total)

        def checkpoint() -> None:
            if lease.lost.is_set():
                raise LeaseLost()
            if self.draining.is_set():
                raise HandBack()
            if self.store.cancel_requested(message.job_id):
                raise JobCancelled()

        def segment(payload: dict[str, Any]) -> None:
            self.store.publish_segment(message.job_id, token=token, segment=payload)

        def decoded(seconds: float) -> None:
            """The key's audio quota pays for what was decoded, not for what the header said at submission."""
            try:
                ApiKeyStore(self.store.redis).settle_audio(message.job_id, seconds)
            except redis.RedisError:
                log.warning("job %s: could not settle the audio quota to %.1f s", message.job_id, seconds)

        return self.pipeline.run(message, JobContext(progress, checkpoint, segment, decoded))
