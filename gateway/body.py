"""Reading request bodies within limits: uploads are refused with 413 while they stream (never buffered whole
in memory: Starlette spools file parts to disk past 1 MiB), JSON is bounded, forms have few fields."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ErrorReply, envelope, is_openai_path, openai_body
from shared.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

T = TypeVar("T", bound=BaseModel)

MAX_FORM_FIELDS = 16
AUDIO_FIELD = "audio_file"


class InvalidJson(InvalidRequest):
    code = "invalid_json"


class BodyLimitMiddleware:
    """Refuse request bodies over the limit: at once from Content-Length, else as soon as the count passes it."""

    def __init__(self, app: ASGIApp, *, max_upload_bytes: int, max_other_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_other_bytes = max_other_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        multipart = headers.get("content-type", "").lower().startswith("multipart/form-data")
        limit = self.max_upload_bytes if multipart else self.max_other_bytes
        what = "upload" if multipart else "request body"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _send_413(send, scope["path"], f"{what} is {int(declared)} bytes; the limit is {limit}", limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"{what} is over the limit of {limit} bytes", details={"limit": limit})
            return message

        await self.app(scope, limited_receive, send)


async def _send_413(send: Send, path: str, message: str, limit: int) -> None:
    """Answered here, before the app sees the request: in the error body of the path's API surface."""
    payload = envelope("payload_too_large", message, limit=limit)
    extra: list[tuple[bytes, bytes]] = []
    if is_openai_path(path):
        _, payload, headers = openai_body(ErrorReply(413, "payload_too_large", message, details={"limit": limit}))
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def validate_model(model: type[T], data: dict[str, Any]) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from exc


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise InvalidJson("the body names a field more than once")
    return data


def _has_lone_surrogate(data: Any) -> bool:
    """True when a string anywhere in the parsed body holds a lone surrogate (a ``\\ud800`` escape): it is not
    text, cannot be stored as UTF-8, and would break any response that echoes it. Iterative: no recursion."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def read_json(request: Request, model: type[T]) -> T:
    raw = await request.body()
    try:
        data = json.loads(raw, object_pairs_hook=_unique_keys)
    except ValueError as exc:  # includes UnicodeDecodeError: the body is not UTF-8
        raise InvalidJson("the body is not valid JSON (UTF-8)") from exc
    except RecursionError as exc:
        raise InvalidJson("the body is nested too deeply") from exc
    if not isinstance(data, dict):
        raise InvalidJson("the body must be a JSON object")
    if _has_lone_surrogate(data):
        raise InvalidJson("a string in the body holds a lone surrogate escape (\\ud800-\\udfff): not valid Unicode")
    return validate_model(model, data)


async def read_form(request: Request, *, file_field: str = AUDIO_FIELD) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType(f"send speech as multipart/form-data with the file in '{file_field}'")
    try:
        return await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    except StarletteHTTPException as exc:
        # Starlette answers 400 for a form it cannot parse or that has too many fields or files; the API answers
        # every malformed request body with 422 (as for invalid JSON), with Starlette's own message.
        if exc.status_code != 400:
            raise
        raise InvalidRequest(f"the multipart form is invalid: {exc.detail}") from exc


def form_parts(form: FormData, *, file_field: str, list_fields: bool = False) -> tuple[dict[str, Any], UploadFile]:
    """The form's plain fields (each given once; empty ones left out) and its one file. ``list_fields``: fields
    named ``name[]`` may repeat and are gathered into a list under ``name`` (how the OpenAI SDK sends lists)."""
    upload = form.get(file_field)
    if not isinstance(upload, UploadFile):
        raise InvalidRequest(f"'{file_field}' is required (a file part)", details={"field": file_field})
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name == file_field:
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"'{name}' must be a plain field, not a file", details={"field": name})
        key, repeatable = (name[:-2], True) if list_fields and name.endswith("[]") else (name, False)
        if key in fields and not (repeatable and isinstance(fields[key], list)):
            raise InvalidRequest(f"'{key}' is given more than once", details={"field": name})
        if repeatable:
            fields.setdefault(key, []).append(value)
        elif value != "":
            fields[key] = value
    return fields, upload


def form_fields(form: FormData, model: type[T]) -> tuple[T, UploadFile]:
    fields, upload = form_parts(form, file_field=AUDIO_FIELD)
    return validate_model(model, fields), upload


def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("application/json"):
        raise UnsupportedMediaType("send text jobs as application/json")
