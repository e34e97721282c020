"""Reading a submission off a request (multipart speech or JSON text), for both endpoint families."""

from __future__ import annotations

from typing import Protocol, TypeVar

from fastapi import Request
from starlette.datastructures import UploadFile

from gateway.auth import Caller
from gateway.body import form_fields, read_form, read_json
from gateway.language_detection import Detection
from gateway.schemas import JobOptions
from gateway.services import Services
from gateway.submission import JobSpec, JobSubmitter, Submitted, file_digest, submit_once, text_digest
from shared.tasks import Task


class _SpeechFields(Protocol):
    src_lang: str | None
    tgt_lang: str


class _TextFields(Protocol):
    text: str
    src_lang: str
    tgt_lang: str


S = TypeVar("S", bound=JobOptions)
T = TypeVar("T", bound=JobOptions)


def _task(fixed: Task | None, body: JobOptions) -> Task:
    return fixed if fixed is not None else Task(getattr(body, "task"))  # noqa: B009 - only the job API's models have it


async def submit_upload(
    request: Request,
    services: Services,
    caller: Caller,
    spec: JobSpec,
    upload: UploadFile,
    *,
    attach_running: bool = False,
) -> Submitted:
    """Submit an uploaded file for ``spec``, once per ``Idempotency-Key`` (``attach_running``: see
    ``submit_once``)."""
    submitter = JobSubmitter(services, caller)
    return await submit_once(
        services,
        caller,
        request.headers.get("idempotency-key"),
        spec,
        digest=lambda: file_digest(upload.file),
        submit=lambda: submitter.submit_audio(spec, upload.file, filename=upload.filename, size=upload.size or 0),
        attach_running=attach_running,
    )


async def submit_text(
    request: Request,
    services: Services,
    caller: Caller,
    spec: JobSpec,
    text: str,
    *,
    detected: Detection | None = None,
    attach_running: bool = False,
) -> Submitted:
    """Submit ``text`` for ``spec``, once per ``Idempotency-Key`` (``attach_running``: see ``submit_once``)."""
    submitter = JobSubmitter(services, caller)
    return await submit_once(
        services,
        caller,
        request.headers.get("idempotency-key"),
        spec,
        digest=lambda: text_digest(text),
        submit=lambda: submitter.submit_text(spec, text, detected=detected),
        attach_running=attach_running,
    )


async def speech_submission(
    request: Request, services: Services, caller: Caller, model: type[S], task: Task | None
) -> Submitted:
    form = await read_form(request)
    try:
        fields, upload = form_fields(form, model)
        speech: _SpeechFields = fields  # type: ignore[assignment]
        spec = JobSpec.of(_task(task, fields), fields, src_lang=speech.src_lang, tgt_lang=speech.tgt_lang)
        return await submit_upload(request, services, caller, spec, upload)
    finally:
        await form.close()


async def text_submission(
    request: Request, services: Services, caller: Caller, model: type[T], task: Task | None
) -> Submitted:
    body = await read_json(request, model)
    text: _TextFields = body  # type: ignore[assignment]
    spec = JobSpec.of(_task(task, body), body, src_lang=text.src_lang, tgt_lang=text.tgt_lang)
    return await submit_text(request, services, caller, spec, text.text)
