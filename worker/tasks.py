"""The Celery tasks of an inference worker: thin wrappers that decode the message and call the runner."""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.messages import RUN_JOB_TASK, JobMessage
from worker.runner import JobRunner


def register_inference_tasks(app: Celery, runner: JobRunner) -> None:
    @app.task(name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_job(payload: dict[str, Any]) -> str:
        return runner.run(JobMessage.from_celery(payload))
