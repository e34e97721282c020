"""The seed API's endpoints, on top of the job queue: ``POST /api/v1/{s2st,s2tt,t2st,t2tt}``.

They take the seed's exact request shapes, submit a job and wait for it up to ``M4T_SYNC_WAIT_S``: 200 with the
finished job, or 202 with the job and ``Location`` if it is still running. ``Prefer: respond-async`` answers 202
at once; ``Prefer: wait=N`` waits at most N seconds.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from gateway.auth import Caller, CallerDep
from gateway.body import require_json
from gateway.deps import ServicesDep
from gateway.errors import error_response
from gateway.intake import speech_submission, text_submission
from gateway.prefer import parse_prefer
from gateway.routes.jobs import ERROR_RESPONSES, IdempotencyKeyHeader, accepted, body_schema, multipart_schema
from gateway.schemas import ErrorEnvelope, JobOut, SeedSpeechForm, SeedTextRequest
from gateway.services import Services
from gateway.submission import Submitted
from gateway.waiting import wait_for_end
from shared.job_view import job_to_api
from shared.jobs import JobStatus
from shared.tasks import Task

router = APIRouter(prefix="/api/v1", tags=["seed-compatible"])

PreferHeader = Annotated[
    str | None,
    Header(
        alias="Prefer",
        description="`respond-async` answers 202 at once; `wait=N` waits at most N seconds (RFC 7240)",
        max_length=200,
    ),
]

# A failed job's error code -> the status the synchronous endpoints answer with.
_CLIENT_ERROR_CODES = {
    "invalid_audio",
    "unsupported_media_type",
    "audio_too_long",  # the worker decoded past M4T_MAX_AUDIO_S: the file's header understated its length
    "unsupported_language",
    "invalid_request",
    "empty_text",
}

RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    202: {"model": JobOut, "description": "Still running (or `Prefer: respond-async`): poll `Location`"},
    500: {"model": ErrorEnvelope, "description": "The job failed on the worker"},
}


async def _finish(submitted: Submitted, request: Request, services: Services) -> JSONResponse:
    record = submitted.record
    prefer = parse_prefer(request.headers.get("prefer"))
    if prefer.respond_async:
        return accepted(record, request, replayed=submitted.replayed, **{"Preference-Applied": "respond-async"})
    wait_s = services.settings.sync_wait_s
    if prefer.wait_s is not None:
        wait_s = min(wait_s, prefer.wait_s)
    final = await wait_for_end(services.aredis, record.id, wait_s) or record
    if not final.status.terminal:
        return accepted(final, request, replayed=submitted.replayed)
    if final.status is JobStatus.SUCCEEDED:
        return JSONResponse(job_to_api(final, str(request.base_url)), status_code=200)
    code = final.error.code if final.error else final.status.value
    message = final.error.message if final.error else f"the job was {final.status.value}"
    status = 422 if code in _CLIENT_ERROR_CODES else (409 if final.status is JobStatus.CANCELLED else 500)
    return error_response(status, code, message, job_id=final.id)


async def _speech(task: Task, request: Request, services: Services, caller: Caller) -> JSONResponse:
    return await _finish(await speech_submission(request, services, caller, SeedSpeechForm, task), request, services)


async def _text(task: Task, request: Request, services: Services, caller: Caller) -> JSONResponse:
    require_json(request)
    return await _finish(await text_submission(request, services, caller, SeedTextRequest, task), request, services)


_SPEECH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": multipart_schema(SeedSpeechForm)}},
    }
}
_TEXT_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema(SeedTextRequest)}}}
}


@router.post(
    "/s2st", response_model=JobOut, responses=RESPONSES, openapi_extra=_SPEECH_BODY, summary="Speech to speech"
)
async def s2st(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
    prefer: PreferHeader = None,
) -> JSONResponse:
    return await _speech(Task.S2ST, request, services, caller)


@router.post("/s2tt", response_model=JobOut, responses=RESPONSES, openapi_extra=_SPEECH_BODY, summary="Speech to text")
async def s2tt(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
    prefer: PreferHeader = None,
) -> JSONResponse:
    return await _speech(Task.S2TT, request, services, caller)


@router.post("/t2st", response_model=JobOut, responses=RESPONSES, openapi_extra=_TEXT_BODY, summary="Text to speech")
async def t2st(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
    prefer: PreferHeader = None,
) -> JSONResponse:
    return await _text(Task.T2ST, request, services, caller)


@router.post("/t2tt", response_model=JobOut, responses=RESPONSES, openapi_extra=_TEXT_BODY, summary="Text to text")
async def t2tt(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
    prefer: PreferHeader = None,
) -> JSONResponse:
    return await _text(Task.T2TT, request, services, caller)
