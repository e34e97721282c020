"""The Celery tasks of an inference worker: thin wrappers that decode the message and call the runner."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.exceptions import Reject

from shared.messages import RUN_JOB_TASK, JobMessage
from worker.runner import HandBack, JobRunner, NoFreeSlot


def register_inference_tasks(app: Celery, runner: JobRunner) -> None:
    @app.task(name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_job(payload: dict[str, Any]) -> str:
        try:
            return runner.run(JobMessage.from_celery(payload))
        except (NoFreeSlot, HandBack) as exc:
            # Back to the head of its priority list in the broker: another worker (or this one, once a slot
            # frees) takes it. Nothing was claimed, or the claim was handed back without counting an attempt.
            raise Reject(type(exc).__name__, requeue=True) from exc
