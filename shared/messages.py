"""What goes over the broker: task names, queue names and the job message schema.

The gateway sends by task name (``send_task``) and never imports the worker. Messages carry ids and object
keys, never audio bytes or long text.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.priority import Priority
from shared.tasks import Task

RUN_JOB_TASK = "m4t.run_job"
"""The inference task: runs one job end to end."""

DELIVER_WEBHOOK_TASK = "m4t.deliver_webhook"
"""One attempt at delivering one webhook event (its id is the only argument)."""


class JobMessage(BaseModel):
    """The body of one inference task message."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str
    task: Task
    tgt_lang: str
    src_lang: str | None = None
    input_key: str = Field(description="Storage key of the input: audio for speech input, UTF-8 text otherwise")
    speaker_id: int | None = None
    output_format: str = "wav"
    priority: Priority = Priority.NORMAL
    speed: float = 1.0
    """Speech output: how many times as fast to speak (OpenAI's ``speed``; the worker applies it, pitch kept)."""

    def to_celery(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_celery(cls, payload: dict[str, Any]) -> JobMessage:
        return cls.model_validate(payload)


def input_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/input/{name}"


def output_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/output/{name}"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"
