"""The routes of the OpenAI-compatible API: ``POST /v1/audio/transcriptions``, ``POST /v1/audio/translations``,
``POST /v1/audio/speech``, ``GET /v1/models``, ``GET /v1/models/{id}``.

Each call submits a job and waits for it up to ``M4T_OPENAI_WAIT_S``; the job's id is in ``x-m4t-job-id``. An
identical call from the same caller while the first one's job is queued or running waits for that job instead of
making another (the SDK retries a call that timed out by itself, uploading the file again)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.auth import Caller, CallerDep
from gateway.body import form_parts, read_form, read_json, require_json, validate_model
from gateway.deps import ServicesDep
from gateway.errors import render_openai
from gateway.intake import submit_text, submit_upload
from gateway.language_detection import Detection
from gateway.openai_compat.languages import speech_language, spoken_language, text_language
from gateway.openai_compat.models import ModelNotFound, model_ids, model_object
from gateway.openai_compat.outcomes import job_failure
from gateway.openai_compat.params import (
    FILE_FIELD,
    SPEECH_ENCODINGS,
    AudioTextParams,
    SpeechParams,
    TranscriptionParams,
    TranslationParams,
    multipart_schema,
)
from gateway.openai_compat.transcripts import AudioTask, transcript_events, transcript_response
from gateway.openai_compat.voices import speaker_for
from gateway.routes.jobs import body_schema
from gateway.schemas import OpenAIErrorBody
from gateway.services import Services
from gateway.submission import JobSpec, JobSubmitter, Submitted
from gateway.waiting import wait_for_end
from shared.audio_encode import CONTENT_TYPES
from shared.errors import InvalidRequest, LanguageNotDetected, ObjectNotFound
from shared.jobs import JobRecord, JobStatus
from shared.languages import AUTO
from shared.tasks import Task

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

JOB_ID_HEADER = "x-m4t-job-id"
MODEL_HEADER = "x-m4t-model"
"""The ``model`` the call named, echoed (the loaded model serves every call, whatever its name)."""
ENGLISH = "eng"

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorBody, "description": text}
    for status, text in {
        400: "A bad parameter or unreadable audio (`param` names the parameter)",
        401: "Missing, invalid or revoked API key (auth on)",
        404: "Unknown model or route",
        409: "The job was cancelled",
        413: "Upload, audio or text over the limit",
        429: "Over this API key's rate, concurrency or daily audio limit (`Retry-After`)",
        500: "The model failed on this input (`x-should-retry: false`)",
        503: "Queue full or a backing service down (`Retry-After`)",
        504: "Still running after `M4T_OPENAI_WAIT_S`: fetch the job (`job_id`) from `/api/v1/jobs/{id}`",
    }.items()
}


async def _finished(services: Services, submitted: Submitted) -> JobRecord | JSONResponse:
    """The succeeded job, or the error response that says why there is none."""
    wait_s = services.settings.openai_wait_s
    record = await wait_for_end(services.aredis, submitted.record.id, wait_s)
    if record is not None and record.status is JobStatus.SUCCEEDED:
        return record
    reply = job_failure(record, submitted.record.id, waited_s=wait_s)
    return render_openai(reply.with_headers({JOB_ID_HEADER: submitted.record.id}))


# --- transcriptions and translations ----------------------------------------------------------------------------


def _spoken(params: TranscriptionParams, default: str | None) -> tuple[str, str]:
    """The spoken language of a transcription, and the parameter it came from."""
    if params.language:
        return params.language, "language"
    if len(params.languages) == 1:
        return params.languages[0], "languages[]"
    if len(params.languages) > 1:
        raise InvalidRequest(
            "name one spoken language in 'language': SeamlessM4T transcribes in the language it is told",
            details={"field": "languages[]"},
        )
    if default:
        return default, "M4T_DEFAULT_TRANSCRIBE_LANG"
    raise InvalidRequest(
        "language is required: the spoken language, as ISO 639-1 (e.g. 'fr') or a SeamlessM4T code ('fra'); "
        "this server sets no M4T_DEFAULT_TRANSCRIBE_LANG",
        details={"field": "language"},
    )


def _check_transcription(params: TranscriptionParams) -> None:
    if "word" in params.timestamp_granularities:
        raise InvalidRequest(
            "word timestamps are not available: SeamlessM4T gives no word alignment; use 'segment'",
            details={"field": "timestamp_granularities[]"},
        )
    if params.stream and params.response_format not in ("json", "text"):
        raise InvalidRequest(
            f"stream=true goes with response_format json or text, not {params.response_format}",
            details={"field": "stream"},
        )


async def _speech_to_text(request: Request, services: Services, caller: Caller, task: AudioTask) -> Response:
    form = await read_form(request, file_field=FILE_FIELD)
    try:
        fields, upload = form_parts(form, file_field=FILE_FIELD, list_fields=True)
        support, _ = await run_in_threadpool(services.languages)
        params: AudioTextParams
        if task == "transcribe":
            params = validate_model(TranscriptionParams, fields)
            _check_transcription(params)
            spoken, field = _spoken(params, services.settings.default_transcribe_lang)
            target = spoken_language(spoken, support, field=field)
            source: str | None = target
        else:
            params = validate_model(TranslationParams, fields)
            source = None
            target = text_language(params.target_language or ENGLISH, support, field="target_language")
        spec = JobSpec(Task.S2TT, tgt_lang=target, src_lang=source)
        submitted = await submit_upload(request, services, caller, spec, upload, attach_running=True)
    finally:
        await form.close()
    headers = {JOB_ID_HEADER: submitted.record.id, MODEL_HEADER: params.model}
    if isinstance(params, TranscriptionParams) and params.stream:
        events = transcript_events(
            services.aredis, submitted.record.id, text_lang=target, wait_s=services.settings.openai_wait_s
        )
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    finished = await _finished(services, submitted)
    if isinstance(finished, JSONResponse):
        return finished
    return transcript_response(finished, params.response_format, task=task, headers=headers)


_TEXT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    200: {
        "description": "`json` and `verbose_json`: JSON; `text`, `srt`, `vtt`: text; `stream=true`: Server-Sent "
        "Events (`transcript.text.delta` per segment, then `transcript.text.done`)",
        "content": {"application/json": {}, "text/plain": {}, "text/event-stream": {}},
    },
}


def _text_route(
    path: str, params: type[AudioTextParams], summary: str, description: str
) -> Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]]:
    return router.post(
        path,
        summary=summary,
        description=description,
        responses=_TEXT_RESPONSES,
        response_class=Response,
        openapi_extra={
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": multipart_schema(params)}}}
        },
    )


@_text_route(
    "/audio/transcriptions",
    TranscriptionParams,
    "Transcribe speech (OpenAI-compatible)",
    "Speech to text in the spoken language (`language`). Multipart form, as OpenAI's.",
)
async def create_transcription(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    return await _speech_to_text(request, services, caller, "transcribe")


@_text_route(
    "/audio/translations",
    TranslationParams,
    "Translate speech to English text (OpenAI-compatible)",
    "Speech in any of the model's languages to English text, or to `target_language` (extension).",
)
async def create_translation(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    return await _speech_to_text(request, services, caller, "translate")


# --- speech -----------------------------------------------------------------------------------------------------


def _detect_for_speech(submitter: JobSubmitter, text: str) -> Detection:
    try:
        return submitter.detect(text)
    except LanguageNotDetected as exc:
        raise LanguageNotDetected(
            f"{exc.message.split(';')[0]}; name the language of 'input' in 'source_language' (and the language to "
            "speak in 'language' if it differs)",
            details={"field": "source_language"},
        ) from exc


@router.post(
    "/audio/speech",
    summary="Speak text (OpenAI-compatible)",
    description="Text to speech in one of the 36 languages the model speaks: `language` (default: the text's "
    "detected language). The text may be in another language (`source_language`, default detected): it is "
    "translated as it is spoken.",
    responses={
        **_ERRORS,
        200: {"description": "The audio", "content": {CONTENT_TYPES[enc]: {} for enc in SPEECH_ENCODINGS.values()}},
    },
    response_class=Response,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema(SpeechParams)}}}
    },
)
async def create_speech(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    require_json(request)
    params = await read_json(request, SpeechParams)
    if params.stream_format != "audio":
        raise InvalidRequest("stream_format 'sse' is not supported: use 'audio'", details={"field": "stream_format"})
    speaker = speaker_for(params.voice)
    support, _ = await run_in_threadpool(services.languages)
    text = params.input
    detected: Detection | None = None
    if params.source_language:
        source = text_language(params.source_language, support, field="source_language")
    else:
        detected = await run_in_threadpool(_detect_for_speech, JobSubmitter(services, caller), text)
        source = AUTO
    spoken = params.language or params.source_language or (detected.code if detected else ENGLISH)
    target = speech_language(spoken, support, field="language" if params.language or detected else "source_language")
    encoding = SPEECH_ENCODINGS[params.response_format]
    spec = JobSpec(
        Task.T2ST, tgt_lang=target, src_lang=source, speaker_id=speaker, output_format=encoding, speed=params.speed
    )
    submitted = await submit_text(request, services, caller, spec, text, detected=detected, attach_running=True)
    finished = await _finished(services, submitted)
    if isinstance(finished, JSONResponse):
        return finished
    return await _audio_of(services, finished, encoding, model=params.model)


async def _audio_of(services: Services, record: JobRecord, encoding: str, *, model: str) -> Response:
    """The job's audio as the response body, streamed from storage. Audio gone (the job expired, its files swept)
    answers like an expired job, never with a storage key."""
    headers = {JOB_ID_HEADER: record.id, MODEL_HEADER: model}
    key = ((record.result or {}).get("audio") or {}).get("key")
    try:
        if not key:
            raise ObjectNotFound("no audio")
        size = await run_in_threadpool(services.storage.size, key)
        stream = await run_in_threadpool(services.storage.open_stream, key)
    except ObjectNotFound:
        return render_openai(job_failure(None, record.id).with_headers(headers))
    return StreamingResponse(
        stream, media_type=CONTENT_TYPES[encoding], headers={**headers, "Content-Length": str(size)}
    )


# --- models -----------------------------------------------------------------------------------------------------


def _loaded_models(services: Services) -> list[str]:
    return sorted({beat.model for beat in services.registry.alive() if beat.role == "inference" and beat.model})


@router.get("/models", summary="List models (OpenAI-compatible)", responses=_ERRORS)
async def list_models(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    loaded = await run_in_threadpool(_loaded_models, services)
    return {"object": "list", "data": [model_object(model) for model in model_ids(loaded)]}


@router.get("/models/{model_id:path}", summary="Get a model (OpenAI-compatible)", responses=_ERRORS)
async def get_model(model_id: str, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    known = model_ids(await run_in_threadpool(_loaded_models, services))
    if model_id not in known:
        raise ModelNotFound(
            f"the model '{model_id}' does not exist; models: {', '.join(known)}", details={"field": "model"}
        )
    return model_object(model_id)
