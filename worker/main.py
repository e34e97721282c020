"""``m4t worker``: load the model, then serve inference jobs from the queue.

One model per worker process, one worker per GPU. The model is loaded BEFORE the worker takes any task. Celery's
threads pool then runs up to ``M4T_WORKER_JOBS`` jobs at once (plus ``M4T_WORKER_HIGH_SLOTS`` kept for ``high``
jobs) in this process, each in its own thread; they hand their units to the batch scheduler, whose one thread
owns the model (no fork, so CUDA is never initialised in a parent that forks). Alongside, a thread publishes
heartbeats and runs the reaper.

Why Celery's threads pool rather than a consumer of our own: it keeps everything the solo pool gave (acks_late,
prefetch bounded by the pool size, reject-on-worker-lost, task events for Flower) and a job thread blocks only on
I/O and on the scheduler, never on the model. With ``worker_prefetch_multiplier`` 1 Celery reserves no more
messages than it has threads.

SIGTERM (docker stop, a Kubernetes scale-down): no new job starts; every job in flight is handed back to the broker
at once (not counted as an attempt; it starts again from its beginning on another worker); the call on the device
finishes; the process exits within ``M4T_SHUTDOWN_GRACE_S``.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import Celery
from celery.signals import worker_shutting_down

from shared.celery_app import make_celery
from shared.jobs import JobStore
from shared.messages import RUN_JOB_TASK, JobMessage
from shared.priority import broker_priority
from shared.reaper import requeue_orphaned_jobs
from shared.redis_client import sync_redis
from shared.settings import WorkerSettings
from shared.storage import storage_from_settings
from shared.tasks import Task
from shared.workers import GpuMemory, Heartbeat, WorkerRegistry
from worker.engine import TranslationEngine, dtype_name
from worker.pipeline import PipelineOptions, TranslationPipeline
from worker.runner import JobRunner, JobSlots, WorkerStats
from worker.scheduler import BatchScheduler, SchedulerOptions
from worker.scratch import ScratchSpace
from worker.segmentation import SpeechSegmenter
from worker.tasks import register_inference_tasks

log = logging.getLogger(__name__)


def run_inference_worker(settings: WorkerSettings, *, queues: list[str] | None = None) -> None:
    redis_client = sync_redis(settings.redis_url)
    store = JobStore(redis_client, result_ttl_s=settings.result_ttl_s)
    registry = WorkerRegistry(redis_client)
    storage = storage_from_settings(settings)

    engine = TranslationEngine.from_settings(settings)
    registry.publish_languages(engine.languages, model=settings.model)

    app = make_celery(settings, name="m4t-worker")
    stats = WorkerStats()
    jobs_since_cleanup = 0

    def after_job() -> None:
        nonlocal jobs_since_cleanup
        jobs_since_cleanup += 1
        if settings.gpu_cleanup_interval and jobs_since_cleanup >= settings.gpu_cleanup_interval:
            engine.release_cached_memory()
            jobs_since_cleanup = 0

    scheduler = BatchScheduler(engine, scheduler_options(settings)).start()
    scratch = ScratchSpace.for_worker(settings.data_dir / "scratch")
    pipeline = TranslationPipeline(
        engine,
        scheduler,
        storage,
        [SpeechSegmenter(max_segment_s=settings.segment_max_s) for _ in range(settings.prep_concurrency)],
        PipelineOptions(
            text_chunk_tokens=settings.text_chunk_tokens,
            max_output_pause_s=settings.max_output_pause_s,
            scratch_dir=scratch.path,
            max_audio_s=settings.max_audio_s,
        ),
    )

    def send(message: JobMessage, delay: float = 0.0) -> None:
        app.send_task(
            RUN_JOB_TASK,
            args=[message.to_celery()],
            queue=settings.inference_queue,
            priority=broker_priority(message.priority),
            countdown=delay or None,
        )

    runner = JobRunner(
        pipeline,
        store,
        storage,
        worker_name=settings.worker_name,
        lease_s=settings.job_lease_s,
        max_attempts=settings.max_attempts,
        stats=stats,
        after_job=after_job,
        requeue=send,
        retry_delay_s=settings.retry_delay_s,
        slots=JobSlots(settings.worker_jobs, settings.worker_high_slots),
    )
    register_inference_tasks(app, runner)
    queue_names = queues or [settings.inference_queue]
    on_shutdown(app, runner, scheduler, grace_s=settings.shutdown_grace_s)

    started_at = time.time()

    def beat() -> None:
        gpu = engine.gpu_memory_gib()
        load = scheduler.stats()
        with stats.lock:
            heartbeat = Heartbeat(
                name=settings.worker_name,
                device=str(engine.device),
                model=settings.model,
                dtype=dtype_name(engine.dtype),
                model_loaded=True,
                gpu_available=engine.device.type == "cuda",
                gpu_memory=GpuMemory(total=gpu[0], free=gpu[1], used=gpu[2]) if gpu else None,
                queues=queue_names,
                pid=os.getpid(),
                started_at=started_at,
                seen_at=time.time(),
                jobs_done=stats.jobs_done,
                jobs_failed=stats.jobs_failed,
                current_job=stats.current_jobs[0] if stats.current_jobs else None,
                jobs_in_flight=len(stats.current_jobs),
                job_slots=settings.worker_jobs + settings.worker_high_slots,
                units_waiting=load.units_waiting,
                mean_batch_items=load.mean_batch_items,
                last_error=stats.last_error,
                tasks=[t.value for t in Task],
            )
        registry.publish(heartbeat, ttl_s=settings.heartbeat_interval_s * 3)

    stop = threading.Event()

    def background() -> None:
        while not stop.is_set():
            try:
                beat()
                requeue_orphaned_jobs(store, send)
            except Exception:
                log.warning("heartbeat/reaper round failed", exc_info=True)
            stop.wait(settings.heartbeat_interval_s)

    thread = threading.Thread(target=background, name="heartbeat", daemon=True)
    thread.start()
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={settings.worker_jobs + settings.worker_high_slots}",
                f"--queues={','.join(queue_names)}",
                f"--hostname={settings.worker_name}",
                "--loglevel=INFO",
                "--without-mingle",
            ]
        )
    finally:
        stop.set()
        scheduler.stop(timeout=settings.shutdown_grace_s)
        scratch.remove()
        thread.join(timeout=5)
        try:
            registry.remove(settings.worker_name)
        except Exception:
            log.debug("could not remove heartbeat", exc_info=True)


def scheduler_options(settings: WorkerSettings) -> SchedulerOptions:
    return SchedulerOptions(
        batch_size=settings.batch_size,
        max_tokens=settings.batch_max_tokens,
        max_audio_s=settings.batch_max_audio_s,
        wait_s=settings.batch_wait_ms / 1000,
        wait_fraction=settings.batch_wait_fraction,
        job_share=settings.job_batch_share,
        ageing_s=settings.ageing_s,
    )


def on_shutdown(app: Celery, runner: JobRunner, scheduler: BatchScheduler, *, grace_s: float) -> None:
    """At SIGTERM (Celery's warm shutdown): hand every job back at once, and exit within ``grace_s`` whatever
    happens (a call on the device that outlasts it, a stuck thread)."""

    def shutting_down(**_: object) -> None:
        if runner.draining.is_set():
            return
        log.warning("shutting down: handing %d job(s) back to the queue", runner.slots.in_use)
        runner.draining.set()

        def deadline() -> None:
            time.sleep(grace_s)
            log.error("still running %.0f s after SIGTERM: exiting now", grace_s)
            os._exit(1)

        threading.Thread(target=deadline, name="shutdown-deadline", daemon=True).start()

    worker_shutting_down.connect(shutting_down, weak=False)
