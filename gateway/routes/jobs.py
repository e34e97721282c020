"""The async job API: submit, poll, download."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gateway.auth import Caller, CallerDep
from gateway.deps import ServicesDep
from gateway.intake import speech_submission, text_submission
from gateway.schemas import ErrorEnvelope, JobOut, SpeechJobForm, TextJobRequest
from gateway.services import Services
from shared.audio_encode import CONTENT_TYPES, EXTENSIONS, OUTPUT_FORMATS
from shared.errors import JobNotFound, M4TError, UnsupportedMediaType
from shared.job_view import job_to_api
from shared.jobs import JobRecord, JobStatus
from shared.subtitles import SUBTITLE_TYPES, to_srt, to_vtt

router = APIRouter(prefix="/api/v1", tags=["jobs"])

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope, "description": text}
    for code, text in {
        401: "Missing, invalid or revoked API key",
        404: "Unknown job",
        410: "The job expired and its results were deleted",
        409: "Not in a state that allows this",
        413: "Upload, audio or text over the limit",
        415: "Not a supported media type",
        429: "Over this API key's rate limit, concurrent-job limit or daily audio quota; retry after `Retry-After`",
        422: "Invalid request (unknown task, missing field, empty text, unsupported language, undecodable audio, "
        "a priority above the API key's maximum: `priority_not_allowed`; `src_lang: \"auto\"` and the text's "
        "language cannot be told: `language_not_detected`)",
        503: "Redis or storage unreachable; retry after `Retry-After` seconds",
    }.items()
}


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Same key + same request = the same job, never a second one (kept 24 h)",
        max_length=255,
    ),
]


class ResultNotReady(M4TError):
    code = "result_not_ready"
    status_code = 409


class NoAudio(M4TError):
    code = "no_audio"
    status_code = 404


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` (the ``Priority`` enum) inlined: a ``#/$defs/...`` reference in a
    request body of the OpenAPI document would point at the document's root, where there is no ``$defs``."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: inline(v) for k, v in node.items() if k != "$ref"}
                return {**inline(defs[ref.removeprefix("#/$defs/")]), **rest}
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def multipart_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = body_schema(model)
    schema["properties"]["audio_file"] = {"type": "string", "format": "binary", "description": "The audio"}
    schema["required"] = [*schema.get("required", []), "audio_file"]
    return schema


JOB_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": body_schema(TextJobRequest)},
            "multipart/form-data": {"schema": multipart_schema(SpeechJobForm)},
        },
    }
}


class JobGone(M4TError):
    code = "job_expired"
    status_code = 410


async def load_job(services: Services, job_id: str, caller: Caller) -> JobRecord:
    """The job, or 404 (unknown, or another key's) / 410 (expired, its results deleted)."""
    if not _JOB_ID.match(job_id):
        raise JobNotFound(f"no job with id '{job_id}'", details={"job_id": job_id})
    record = await run_in_threadpool(services.store.get, job_id)
    if record is not None and not caller.sees(record):
        raise JobNotFound(f"no job with id '{job_id}'", details={"job_id": job_id})
    if record is None:
        owner = await run_in_threadpool(services.store.gone_owner, job_id)
        if owner is not None and (caller.admin or owner == caller.owner):
            raise JobGone(f"job '{job_id}' has expired and its results were deleted", details={"job_id": job_id})
        raise JobNotFound(f"no job with id '{job_id}'", details={"job_id": job_id})
    return record


async def job_view(services: Services, record: JobRecord, request: Request) -> dict[str, Any]:
    """The job as the API shows it, with its queue position when queued."""
    body = job_to_api(record, str(request.base_url))
    if record.status is JobStatus.QUEUED:
        body["queue_position"] = await run_in_threadpool(services.store.queue_position, record.id)
    return body


def accepted(record: JobRecord, request: Request, *, replayed: bool = False, **extra_headers: str) -> JSONResponse:
    body = job_to_api(record, str(request.base_url))
    headers = {"Location": body["links"]["self"], **extra_headers}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    responses=ERROR_RESPONSES,
    openapi_extra=JOB_REQUEST_BODY,
    summary="Submit a job",
    description="JSON body for text input (t2tt, t2st); multipart form with `audio_file` for speech input "
    "(s2st, s2tt). Answers 202 with the job and a `Location` to poll.",
)
async def create_job(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        submitted = await speech_submission(request, services, caller, SpeechJobForm, None)
    elif content_type.startswith("application/json"):
        submitted = await text_submission(request, services, caller, TextJobRequest, None)
    else:
        raise UnsupportedMediaType(
            "send application/json for text jobs, or multipart/form-data with 'audio_file' for speech jobs"
        )
    return accepted(submitted.record, request, replayed=submitted.replayed)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERROR_RESPONSES, summary="Get a job")
async def get_job(job_id: str, request: Request, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    return await job_view(services, await load_job(services, job_id, caller), request)


@router.get(
    "/jobs/{job_id}/audio",
    responses={
        **ERROR_RESPONSES,
        200: {"content": {CONTENT_TYPES[fmt]: {} for fmt in OUTPUT_FORMATS}, "description": "The output audio"},
    },
    response_class=StreamingResponse,
    summary="Download a job's output audio",
)
async def get_job_audio(job_id: str, services: ServicesDep, caller: CallerDep) -> StreamingResponse:
    record = await load_job(services, job_id, caller)
    if not record.task.speech_output:
        raise NoAudio(f"a {record.task.value} job has no audio output", details={"job_id": job_id})
    if record.status is not JobStatus.SUCCEEDED or not record.result or not record.result.get("audio"):
        raise ResultNotReady(
            f"the job is {record.status.value}; its audio is available once it has succeeded",
            details={"job_id": job_id},
        )
    audio = record.result["audio"]
    key: str = audio["key"]
    size = await run_in_threadpool(services.storage.size, key)
    stream = await run_in_threadpool(services.storage.open_stream, key)
    fmt = audio["format"]
    return StreamingResponse(
        stream,
        media_type=CONTENT_TYPES[fmt],
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{job_id}.{EXTENSIONS[fmt]}"',
        },
    )


class NoSubtitles(M4TError):
    code = "no_subtitles"
    status_code = 404


@router.get(
    "/jobs/{job_id}/subtitles",
    responses={
        **ERROR_RESPONSES,
        200: {"content": {mime: {} for mime in SUBTITLE_TYPES.values()}, "description": "SRT or WebVTT"},
    },
    response_class=Response,
    summary="Download a speech job's translation as subtitles",
)
async def get_job_subtitles(
    job_id: str,
    services: ServicesDep,
    caller: CallerDep,
    format: Annotated[Literal["srt", "vtt"], Query()] = "srt",
) -> PlainTextResponse:
    record = await load_job(services, job_id, caller)
    if not record.task.speech_input:
        raise NoSubtitles(f"a {record.task.value} job has no timed segments", details={"job_id": job_id})
    if record.status is not JobStatus.SUCCEEDED or not record.result:
        raise ResultNotReady(
            f"the job is {record.status.value}; subtitles are available once it has succeeded",
            details={"job_id": job_id},
        )
    segments = record.result.get("segments", [])
    body = to_srt(segments) if format == "srt" else to_vtt(segments)
    return PlainTextResponse(
        body,
        media_type=f"{SUBTITLE_TYPES[format]}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.{format}"'},
    )
