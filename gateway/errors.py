"""The one place that maps exceptions to error responses, with one renderer per API surface.

Every error becomes an ``ErrorReply`` first (status, code, message, headers, details), the same whichever endpoint
raised it. A renderer writes it the way its surface's clients expect:

- ``/api/v1`` (and everything else): our envelope, ``{"error": {"code": ..., "message": ..., "field": ...}}``, with
  the error's own status;
- ``/v1`` (the OpenAI-compatible API): OpenAI's body, ``{"error": {"message", "type", "param", "code"}}``, with the
  status and ``type`` of ``OPENAI_ERRORS``, so the official SDK raises its own typed errors (``BadRequestError``,
  ``AuthenticationError``, ``RateLimitError`` ...). That SDK retries 408, 409, 429 and 5xx by itself, uploading
  the file again each time: failures a retry cannot fix carry ``x-should-retry: false``, which it obeys.

Clients never see a traceback or the text of an internal exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as KombuOperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import M4TError

log = logging.getLogger(__name__)

OPENAI_PREFIX = "/v1"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}

_ENVELOPE_DETAILS = ("field", "valid", "job_id", "limit")


@dataclass(frozen=True)
class ErrorReply:
    """An error as every surface sees it, before it is rendered."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    """Of ``_ENVELOPE_DETAILS``: ``field`` (the parameter at fault), ``valid``, ``job_id``, ``limit``."""

    @classmethod
    def of(cls, exc: M4TError) -> ErrorReply:
        headers: dict[str, str] = dict(getattr(exc, "headers", None) or {})
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        details = {k: v for k, v in exc.details.items() if k in _ENVELOPE_DETAILS}
        return cls(exc.status_code, exc.code, exc.message, headers, details)

    def with_headers(self, headers: dict[str, str]) -> ErrorReply:
        return replace(self, headers={**self.headers, **headers})


# --- the OpenAI surface's mapping ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenAIError:
    status: int
    type: str
    retry: bool | None = None
    """False: ``x-should-retry: false`` (a retry gets the same answer). None: the SDK's own rule."""


_BAD_REQUEST = OpenAIError(400, "invalid_request_error")
_SERVER = "server_error"

OPENAI_ERRORS: dict[str, OpenAIError] = {
    # A bad parameter or bad input: 400, as OpenAI answers (it has no 415 or 422).
    **dict.fromkeys(
        (
            "bad_request",
            "invalid_request",
            "invalid_json",
            "empty_text",
            "unsupported_task",
            "unsupported_language",
            "language_not_detected",
            "invalid_audio",
            "unsupported_media_type",
            "not_acceptable",
            "priority_not_allowed",
            "webhooks_not_configured",
            "webhook_url_refused",
            "invalid_idempotency_key",
            "idempotency_key_reused",
        ),
        _BAD_REQUEST,
    ),
    "unauthorized": OpenAIError(401, "invalid_request_error"),
    "forbidden": OpenAIError(403, "invalid_request_error"),
    **dict.fromkeys(
        ("not_found", "job_not_found", "model_not_found", "job_expired", "gone", "no_audio", "no_subtitles"),
        OpenAIError(404, "invalid_request_error"),
    ),
    "method_not_allowed": OpenAIError(405, "invalid_request_error"),
    # 409s: the SDK would retry them, and only the first can change by waiting.
    "idempotency_key_in_progress": OpenAIError(409, "invalid_request_error"),
    **dict.fromkeys(
        ("conflict", "job_finished", "job_cancelled", "result_not_ready"),
        OpenAIError(409, "invalid_request_error", retry=False),
    ),
    "payload_too_large": OpenAIError(413, "invalid_request_error"),
    "audio_too_long": OpenAIError(413, "invalid_request_error"),
    # 429s: the SDK waits `Retry-After` (up to 60 s) and retries, except for the day's quota.
    **dict.fromkeys(("rate_limited", "too_many_active_jobs", "too_many_requests"), OpenAIError(429, "requests")),
    "quota_exceeded": OpenAIError(429, "insufficient_quota", retry=False),
    # The model failed on this input: the same input fails again.
    **dict.fromkeys(("out_of_memory", "inference_failed", "too_many_attempts"), OpenAIError(500, _SERVER, retry=False)),
    "internal_error": OpenAIError(500, _SERVER),
    # Backing services down or the queue full: worth a retry after `Retry-After`.
    **dict.fromkeys(
        ("service_unavailable", "redis_unavailable", "storage_unavailable", "queue_full"), OpenAIError(503, _SERVER)
    ),
    "model_load_failed": OpenAIError(503, _SERVER, retry=False),
    "wait_timeout": OpenAIError(504, "timeout", retry=False),
}
"""Every error code of ours (raised, or stored on a failed job) -> OpenAI's status and ``type``
(tests/test_openai_errors.py checks that no code is missing)."""


def openai_error_for(reply: ErrorReply) -> OpenAIError:
    known = OPENAI_ERRORS.get(reply.code)
    if known is not None:
        return known
    if reply.status >= 500:
        return OpenAIError(reply.status, _SERVER)
    return OpenAIError(400 if reply.status in (415, 422) else reply.status, "invalid_request_error")


# --- the renderers ---------------------------------------------------------------------------------------------


def _encodable(value: Any) -> Any:
    """Strings as UTF-8 can carry them (a lone surrogate becomes ``?``): an error that echoes a client's value
    must never fail to render, which would drop the connection instead of answering."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    return value


def envelope(code: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": _encodable(message)}
    body.update({k: _encodable(v) for k, v in extra.items() if v is not None})
    return {"error": body}


_OPENAI_PARAMS = {"audio_file": "file", "text": "input"}
"""Fields that checks shared with /api/v1 name as /api/v1 does -> the OpenAI parameter they are on /v1."""


def openai_body(reply: ErrorReply) -> tuple[int, dict[str, Any], dict[str, str]]:
    """OpenAI's status, body and headers for ``reply``."""
    mapped = openai_error_for(reply)
    param = reply.details.get("field")
    error: dict[str, Any] = {
        "message": _encodable(reply.message),
        "type": mapped.type,
        "param": _encodable(_OPENAI_PARAMS.get(param, param) if isinstance(param, str) else param),
        "code": reply.code,
    }
    if reply.details.get("job_id"):
        error["job_id"] = reply.details["job_id"]
    headers = dict(reply.headers)
    if mapped.retry is False:
        headers["x-should-retry"] = "false"
    return mapped.status, {"error": error}, headers


def render_envelope(reply: ErrorReply) -> JSONResponse:
    return JSONResponse(
        envelope(reply.code, reply.message, **reply.details), status_code=reply.status, headers=reply.headers or None
    )


def render_openai(reply: ErrorReply) -> JSONResponse:
    status, body, headers = openai_body(reply)
    return JSONResponse(body, status_code=status, headers=headers or None)


Renderer = Callable[[ErrorReply], JSONResponse]


def is_openai_path(path: str) -> bool:
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def renderer_for(path: str) -> Renderer:
    return render_openai if is_openai_path(path) else render_envelope


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """Our envelope (the ``/api/v1`` surface)."""
    return render_envelope(ErrorReply(status, code, message, dict(headers or {}), extra))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")]
    field_name = ".".join(location) or None
    message = str(first.get("msg", "invalid value"))
    return (f"{field_name}: {message}" if field_name else message), field_name


def install_error_handlers(app: FastAPI) -> None:
    def render(request: Request, reply: ErrorReply) -> JSONResponse:
        return renderer_for(request.url.path)(reply)

    @app.exception_handler(M4TError)
    async def _m4t(request: Request, exc: M4TError) -> JSONResponse:
        return render(request, ErrorReply.of(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field_name = _validation_message(exc)
        details = {"field": field_name} if field_name else {}
        return render(request, ErrorReply(422, "invalid_request", message, details=details))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return render(request, ErrorReply(exc.status_code, code, message, dict(getattr(exc, "headers", None) or {})))

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    @app.exception_handler(KombuOperationalError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unreachable: %s", type(exc).__name__)
        message = "the job queue is unreachable; retry shortly"
        return render(request, ErrorReply(503, "redis_unavailable", message, {"Retry-After": "5"}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(request, ErrorReply(500, "internal_error", "internal error; it has been logged"))
