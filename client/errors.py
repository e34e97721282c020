"""Typed errors of the client. Every one is an ``APIError`` carrying the error envelope's ``code`` and ``message``
and the HTTP ``status`` (None when no HTTP answer is involved: a connection error, a failed job, a timeout)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.models import Job


class APIError(Exception):
    """Base of every error the client raises.

    ``code`` is the envelope's stable machine-readable code (``job_not_found``, ``invalid_audio`` ...), ``message``
    its human text, ``status`` the HTTP status, ``body`` the envelope's ``error`` object (``field``, ``valid``,
    ``job_id``, ``limit`` when the server gave them), ``retry_after`` the server's ``Retry-After`` in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: int | None = None,
        body: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.body: dict[str, Any] = dict(body or {})
        self.retry_after = retry_after

    @property
    def field(self) -> str | None:
        value = self.body.get("field")
        return str(value) if value is not None else None

    @property
    def valid(self) -> list[str] | None:
        value = self.body.get("valid")
        return [str(v) for v in value] if isinstance(value, list) else None

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        return f"{prefix}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class Unauthorized(APIError):
    """401 (missing, invalid or revoked API key) or 403."""


class NotFound(APIError):
    """404: ``job_not_found``, ``not_found``, ``no_audio``, ``no_subtitles``."""


class Conflict(APIError):
    """409: ``result_not_ready``, ``job_finished``, ``idempotency_key_in_progress``."""


class Gone(APIError):
    """410 ``job_expired``: the job's results were deleted."""


class PayloadTooLarge(APIError):
    """413: ``payload_too_large``, ``audio_too_long``."""


class UnsupportedMediaType(APIError):
    """415: not audio the service can read, or a wrong body type."""


class InvalidRequest(APIError):
    """422: ``invalid_request``, ``unsupported_language``, ``invalid_audio``, ``empty_text`` ..."""


class RateLimited(APIError):
    """429: ``rate_limited``, ``too_many_active_jobs``, ``quota_exceeded``; see ``retry_after``."""


class ServerError(APIError):
    """A 5xx other than 503 (``internal_error`` ...)."""


class ServiceUnavailable(APIError):
    """503 (``redis_unavailable``, ``storage_unavailable``, ``queue_full``), after the client's own retries."""


class ConnectionFailed(ServiceUnavailable):
    """The service could not be reached (refused, reset, timed out), after the client's own retries."""


class JobFailed(APIError):
    """``wait`` on a job that ended ``failed`` (``code`` is the job's ``error.code``: ``invalid_audio``,
    ``inference_failed`` ...) or ``cancelled`` (``code`` is ``cancelled``). The final job is in ``job``."""

    def __init__(self, job: Job) -> None:
        if job.error is not None:
            code, message = job.error.code, job.error.message
        else:
            code, message = job.status, f"the job was {job.status}"
        super().__init__(message, code=code, body={"job_id": job.id})
        self.job = job


class WaitTimeout(APIError, TimeoutError):
    """``wait`` gave up before the job ended (the job goes on; ``job`` is its last known state, if any)."""

    def __init__(self, job_id: str, timeout: float, job: Job | None = None) -> None:
        super().__init__(f"job {job_id} did not end within {timeout:g} s", code="timeout", body={"job_id": job_id})
        self.job = job


_BY_STATUS: dict[int, type[APIError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_class(status: int) -> type[APIError]:
    """The error type of an HTTP status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else APIError
