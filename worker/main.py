"""``m4t worker``: load the model, then serve inference jobs from the queue.

One model per worker process, one worker per GPU. The model is loaded BEFORE the worker takes any task; the
Celery solo pool then runs jobs one at a time in this process (no fork, so CUDA is never initialised in a
parent that forks). Alongside, a thread publishes heartbeats and runs the reaper.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from shared.celery_app import make_celery
from shared.jobs import JobStore
from shared.messages import RUN_JOB_TASK, JobMessage
from shared.reaper import requeue_orphaned_jobs
from shared.redis_client import sync_redis
from shared.settings import WorkerSettings
from shared.storage import storage_from_settings
from shared.tasks import Task
from shared.workers import GpuMemory, Heartbeat, WorkerRegistry
from worker.engine import TranslationEngine, dtype_name
from worker.pipeline import PipelineOptions, TranslationPipeline
from worker.runner import JobRunner, WorkerStats
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

    pipeline = TranslationPipeline(
        engine,
        storage,
        SpeechSegmenter(max_segment_s=settings.segment_max_s),
        PipelineOptions(
            batch_size=settings.batch_size,
            text_chunk_tokens=settings.text_chunk_tokens,
            max_output_pause_s=settings.max_output_pause_s,
        ),
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
        requeue=lambda message, delay: app.send_task(
            RUN_JOB_TASK, args=[message.to_celery()], queue=settings.inference_queue, countdown=delay
        ),
        retry_delay_s=settings.retry_delay_s,
    )
    register_inference_tasks(app, runner)
    queue_names = queues or [settings.inference_queue]

    def send(message: JobMessage) -> None:
        app.send_task(RUN_JOB_TASK, args=[message.to_celery()], queue=settings.inference_queue)

    started_at = time.time()

    def beat() -> None:
        gpu = engine.gpu_memory_gib()
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
                current_job=stats.current_job,
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
                "--pool=solo",
                "--concurrency=1",
                f"--queues={','.join(queue_names)}",
                f"--hostname={settings.worker_name}",
                "--loglevel=INFO",
                "--without-mingle",
            ]
        )
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            registry.remove(settings.worker_name)
        except Exception:
            log.debug("could not remove heartbeat", exc_info=True)
