"""Why a job behind an OpenAI-style call did not succeed, as an error reply (rendered by ``gateway/errors.py``)."""

from __future__ import annotations

from gateway.errors import ErrorReply
from shared.job_view import job_path
from shared.jobs import JobRecord, JobStatus


def job_failure(record: JobRecord | None, job_id: str, *, waited_s: float | None = None) -> ErrorReply:
    """A failed job answers with its own error code (``invalid_audio``, ``out_of_memory`` ...), a cancelled one
    with ``job_cancelled``, one still running after the wait with ``wait_timeout`` (504) and its id."""
    details = {"job_id": job_id}
    if record is None:
        return ErrorReply(404, "job_expired", f"job '{job_id}' expired before it finished", details=details)
    if record.status is JobStatus.CANCELLED:
        return ErrorReply(409, "job_cancelled", f"job '{job_id}' was cancelled", details=details)
    if record.status is JobStatus.FAILED:
        code = record.error.code if record.error else "inference_failed"
        message = record.error.message if record.error else "the job failed"
        return ErrorReply(500, code, message, details=details)
    waited = f" after {waited_s:g} s" if waited_s is not None else ""
    return ErrorReply(
        504,
        "wait_timeout",
        f"job '{job_id}' is still {record.status.value}{waited}; it goes on: fetch it from {job_path(job_id)}",
        details=details,
    )
