"""The one error envelope, ``{"error": {"code": ..., "message": ...}}``, and the one place that maps exceptions
to it. Clients never see a traceback or the text of an internal exception."""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as KombuOperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import M4TError

log = logging.getLogger(__name__)

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


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(envelope(code, message, **extra), status_code=status, headers=headers)


def m4t_error_response(exc: M4TError) -> JSONResponse:
    headers: dict[str, str] = dict(getattr(exc, "headers", None) or {})
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
    extra = {k: v for k, v in exc.details.items() if k in ("field", "valid", "job_id", "limit")}
    return error_response(exc.status_code, exc.code, exc.message, headers=headers, **extra)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")]
    field = ".".join(location) or None
    message = str(first.get("msg", "invalid value"))
    return (f"{field}: {message}" if field else message), field


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(M4TError)
    async def _m4t(request: Request, exc: M4TError) -> JSONResponse:
        return m4t_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = _validation_message(exc)
        return error_response(422, "invalid_request", message, field=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    @app.exception_handler(KombuOperationalError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unreachable: %s", type(exc).__name__)
        return error_response(
            503, "redis_unavailable", "the job queue is unreachable; retry shortly", headers={"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; it has been logged")
