"""Typed errors shared by every process.

Each error carries a stable machine-readable ``code``, the HTTP status the gateway answers with, and a message
that is safe to show a client (never a traceback, never ``str()`` of an internal exception). The gateway maps
them to the one error envelope in ``gateway/errors.py``; workers store ``code`` and ``message`` on failed jobs.
"""

from __future__ import annotations

from typing import Any, ClassVar


class M4TError(Exception):
    """Base of every error a client may see."""

    code: ClassVar[str] = "internal_error"
    status_code: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class Unauthorized(M4TError):
    code = "unauthorized"
    status_code = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="m4t"'}


class InvalidRequest(M4TError):
    code = "invalid_request"
    status_code = 422


class PriorityNotAllowed(InvalidRequest):
    code = "priority_not_allowed"


class UnsupportedTask(M4TError):
    code = "unsupported_task"
    status_code = 422


class UnsupportedLanguage(M4TError):
    code = "unsupported_language"
    status_code = 422


class LanguageNotDetected(M4TError):
    """``src_lang: "auto"``, and the text's language cannot be told with confidence: the client names it."""

    code = "language_not_detected"
    status_code = 422


class InvalidAudio(M4TError):
    """Audio that is empty, corrupt, truncated or cannot be decoded."""

    code = "invalid_audio"
    status_code = 422


class UnsupportedMediaType(M4TError):
    """A file that is not audio in a format we can read."""

    code = "unsupported_media_type"
    status_code = 415


class PayloadTooLarge(M4TError):
    code = "payload_too_large"
    status_code = 413


class AudioTooLong(PayloadTooLarge):
    """Audio longer than ``M4T_MAX_AUDIO_S``: refused by the gateway from the file's length, or found by the worker
    while decoding a file whose header understated its length (the job then fails with this code)."""

    code = "audio_too_long"


class JobNotFound(M4TError):
    code = "job_not_found"
    status_code = 404


class ObjectNotFound(M4TError):
    """A key that is not in storage."""

    code = "not_found"
    status_code = 404


class QueueFull(M4TError):
    """More jobs are waiting than ``M4T_MAX_QUEUE``: try again later rather than pile up."""

    code = "queue_full"
    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int = 30) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(M4TError):
    """A backing service (Redis, storage) cannot be reached right now; the client should retry."""

    code = "service_unavailable"
    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int = 5, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class StorageUnavailable(ServiceUnavailable):
    code = "storage_unavailable"


class BrokerUnavailable(ServiceUnavailable):
    code = "redis_unavailable"


class ModelLoadError(M4TError):
    """The model could not be loaded (missing weights, no network for a hub id, bad folder)."""

    code = "model_load_failed"
    status_code = 503


class EngineOutOfMemory(M4TError):
    code = "out_of_memory"
    status_code = 500


class InferenceFailed(M4TError):
    code = "inference_failed"
    status_code = 500
