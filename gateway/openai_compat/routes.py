"""The routes of the OpenAI-compatible API: ``POST /v1/audio/transcriptions``, ``POST /v1/audio/translations``,
``POST /v1/audio/speech``, ``GET /v1/models``, ``GET /v1/models/{id}``.

Each call submits a job and waits for it up to ``M4T_OPENAI_WAIT_S``; the job's id is in ``x-m4t-job-id``. An
identical call from the same caller while the first one's job is queued or running waits for that job instead of
making another (the SDK retries a call that timed out by itself, uploading the file again)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.auth import Caller, CallerDep
from gateway.body import read_form, read_json, require_json, validate_model
from gateway.deps import ServicesDep
from gateway.errors import render_openai
from gateway.language_detection import Detection
from gateway.openai_compat.languages import speech_language, text_language
from gateway.openai_compat.models import model_ids, model_object
from gateway.openai_compat.outcomes import job_failure
from gateway.openai_compat.params import (
    SPEECH_ENCODINGS,
    SpeechParams,
    TranscriptionParams,
    TranslationParams,
    form_params,
    multipart_schema,
)
from gateway.openai_compat.transcripts import AudioTask, transcript_events, transcript_response
from gateway.openai_compat.voices import speaker_for
from gateway.routes.jobs import body_schema
from gateway.schemas import OpenAIErrorBody
from gateway.services import Services
from gateway.submission import JobSpec, JobSubmitter, Submitted, file_digest, submit_once, text_digest
from gateway.waiting import wait_for_end
from shared.audio_encode import CONTENT_TYPES
from shared.errors import InvalidRequest, LanguageNotDetected, M4TError
from shared.jobs import JobRecord, JobStatus
from shared.languages import AUTO
from shared.tasks import Task

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

JOB_ID_HEADER = "x-m4t-job-id"
ENGLISH = "eng"


class ModelNotFound(M4TError):
    code = "model_not_found"
    status_code = 404


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


async def _speech_to_text(request: Request, services: Services, caller: Caller, task: AudioTask) -> Response:
    form = await read_form(request)
    try:
        fields, upload = form_params(form)
        params: TranscriptionParams | TranslationParams
        support, _ = await run_in_threadpool(services.languages)
        if task == "transcribe":
            params = validate_model(TranscriptionParams, fields)
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
            spoken = params.language or services.settings.default_transcribe_lang
            if not spoken:
                raise InvalidRequest(
                    "language is required: the spoken language, as ISO 639-1 (e.g. 'fr') or a SeamlessM4T code "
                    "('fra'); this server sets no M4T_DEFAULT_TRANSCRIBE_LANG",
                    details={"field": "language"},
                )
            field = "language" if params.language else "M4T_DEFAULT_TRANSCRIBE_LANG"
            target = text_language(spoken, support, field=field)
            source: str | None = target
        else:
            params = validate_model(TranslationParams, fields)
            source = None
            target = text_language(params.target_language or ENGLISH, support, field="target_language")
        spec = JobSpec(Task.S2TT, tgt_lang=target, src_lang=source)
        submitter = JobSubmitter(services, caller)
        submitted = await submit_once(
            services,
            caller,
            request.headers.get("idempotency-key"),
            spec,
            digest=lambda: file_digest(upload.file),
            submit=lambda: submitter.submit_audio(spec, upload.file, filename=upload.filename, size=upload.size or 0),
            attach_running=True,
        )
    finally:
        await form.close()
    headers = {JOB_ID_HEADER: submitted.record.id}
    if isinstance(params, TranscriptionParams) and params.stream:
        return StreamingResponse(
            transcript_events(services.aredis, submitted.record.id, text_lang=target),
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


@router.post(
    "/audio/transcriptions",
    summary="Transcribe speech (OpenAI-compatible)",
    description="Speech to text in the spoken language (`language`). Multipart form, as OpenAI's.",
    responses=_TEXT_RESPONSES,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": multipart_schema(TranscriptionParams)}},
        }
    },
)
async def create_transcription(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    return await _speech_to_text(request, services, caller, "transcribe")


@router.post(
    "/audio/translations",
    summary="Translate speech to English text (OpenAI-compatible)",
    description="Speech in any of the model's languages to English text, or to `target_language` (extension).",
    responses=_TEXT_RESPONSES,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": multipart_schema(TranslationParams)}},
        }
    },
)
async def create_translation(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    return await _speech_to_text(request, services, caller, "translate")


# --- speech -----------------------------------------------------------------------------------------------------


def _detect_for_speech(submitter: JobSubmitter, text: str) -> Detection:
    try:
        return submitter.detect(text)
    except LanguageNotDetected as exc:
        raise LanguageNotDetected(
            f"{exc.message.split(';')[0]}; name the language to speak in 'language' (and the text's own in "
            "'source_language' if it differs)",
            details={"field": "language"},
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
    submitter = JobSubmitter(services, caller)
    text = params.input
    source = text_language(params.source_language, support, field="source_language") if params.source_language else AUTO
    detected: Detection | None = None
    if params.language:
        target = speech_language(params.language, support, field="language")
    elif source != AUTO:
        target = speech_language(source, support, field="source_language")
    else:
        detected = await run_in_threadpool(_detect_for_speech, submitter, text)
        target = speech_language(detected.code, support, field="language")
    encoding = SPEECH_ENCODINGS[params.response_format]
    spec = JobSpec(
        Task.T2ST, tgt_lang=target, src_lang=source, speaker_id=speaker, output_format=encoding, speed=params.speed
    )
    submitted = await submit_once(
        services,
        caller,
        request.headers.get("idempotency-key"),
        spec,
        digest=lambda: text_digest(text),
        submit=lambda: submitter.submit_text(spec, text, detected=detected),
        attach_running=True,
    )
    finished = await _finished(services, submitted)
    if isinstance(finished, JSONResponse):
        return finished
    audio = (finished.result or {}).get("audio") or {}
    data = await run_in_threadpool(services.storage.get_bytes, audio["key"])
    return Response(data, media_type=CONTENT_TYPES[encoding], headers={JOB_ID_HEADER: finished.id})


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
