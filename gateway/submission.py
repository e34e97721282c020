"""Submitting a job: validate, store the input, record the job, enqueue it. Nothing half-done is left behind:
the input is stored before the job exists, and a failure to enqueue removes both."""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from starlette.concurrency import run_in_threadpool

from gateway.auth import Caller
from gateway.idempotency import Idempotency, check_key
from gateway.language_detection import Detection
from gateway.schemas import JobOptions
from gateway.services import Services
from gateway.waiting import fetch_job
from shared.api_keys import ApiKeyStore
from shared.audio import AudioInfo, probe_audio
from shared.errors import (
    AudioTooLong,
    InvalidAudio,
    InvalidRequest,
    LanguageNotDetected,
    PayloadTooLarge,
    PriorityNotAllowed,
    QueueFull,
)
from shared.jobs import JobRecord, new_job_id
from shared.languages import AUTO
from shared.messages import input_key, job_prefix
from shared.priority import Priority
from shared.tasks import Task
from shared.webhooks import check_webhook_url

log = logging.getLogger(__name__)

MIN_AUDIO_S = 0.1
"""Shorter audio is refused (422 ``invalid_audio``): a 1-sample file is valid audio, but nothing that short holds
speech (the worker's VAD drops anything under 0.25 s), so it could only ever come back as an empty translation."""


class EmptyText(InvalidRequest):
    code = "empty_text"


class WebhooksNotConfigured(InvalidRequest):
    code = "webhooks_not_configured"


@dataclass(frozen=True)
class JobSpec:
    """What a submission asks for, whichever endpoint it came through."""

    task: Task
    tgt_lang: str
    src_lang: str | None
    speaker_id: int | None = None
    output_format: str = "wav"
    webhook_url: str | None = None
    priority: Priority = Priority.NORMAL
    speed: float = 1.0
    """Speech output: how many times as fast to speak (OpenAI's ``speed``; not offered by /api/v1)."""

    @classmethod
    def of(cls, task: Task, body: JobOptions, *, src_lang: str | None, tgt_lang: str) -> JobSpec:
        return cls(task, tgt_lang, src_lang, body.speaker_id, body.output_format, body.webhook_url, body.priority)

    def fingerprint(self, content_digest: str) -> str:
        """Identifies the request for idempotency keys: same options and same content, same fingerprint."""
        fields = [self.task.value, self.tgt_lang, self.src_lang or "", str(self.speaker_id), self.output_format]
        fields += [self.webhook_url or "", self.priority.value, content_digest]
        if self.speed != 1.0:  # only then: fingerprints stored before there was a speed still match
            fields.append(repr(self.speed))
        return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def check_text(text: str, *, max_chars: int) -> str:
    if len(text) > max_chars:
        raise PayloadTooLarge(f"text is {len(text)} characters; the limit is {max_chars}", details={"limit": max_chars})
    if not any(unicodedata.category(ch)[0] in "LNPS" for ch in text):
        raise EmptyText("text is empty (only whitespace or control characters)", details={"field": "text"})
    return text


class JobSubmitter:
    def __init__(self, services: Services, caller: Caller) -> None:
        self._services = services
        self._caller = caller

    @contextmanager
    def _admitted(self, job_id: str, *, audio_seconds: float = 0.0) -> Iterator[None]:
        """Refuse when the queue is full or the caller is over a limit; give the reservation back on failure."""
        depth = self._services.store.queued_count()
        if depth >= self._services.settings.max_queue:
            raise QueueFull(f"{depth} jobs are waiting; submit again later", retry_after_s=30)
        key = self._caller.key
        if key is None:
            yield
            return
        keys = ApiKeyStore(self._services.redis)
        keys.admit_job(key, job_id, audio_seconds=audio_seconds)
        try:
            yield
        except BaseException:
            keys.release_job(key, job_id, audio_seconds=audio_seconds)
            raise

    def _validated(self, spec: JobSpec) -> JobSpec:
        support, _ = self._services.languages()
        src: str | None
        if (spec.src_lang or "").strip() == AUTO:
            # Text: detected in submit_text. Speech needs no source language: "auto" is taken as none.
            src, tgt = (None if spec.task.speech_input else AUTO), support.validate_target(spec.task, spec.tgt_lang)
        else:
            src, tgt = support.validate(spec.task, spec.src_lang, spec.tgt_lang)
        key = self._caller.key
        if key is not None and not spec.priority.allowed_under(key.priority_ceiling):
            raise PriorityNotAllowed(
                f"this API key may submit at priority {key.priority_ceiling.value} at most",
                details={
                    "field": "priority",
                    "max_priority": key.priority_ceiling.value,
                    "valid": [p.value for p in Priority if p.allowed_under(key.priority_ceiling)],
                },
            )
        if spec.webhook_url:
            if not self._services.settings.webhook_secrets:
                raise WebhooksNotConfigured(
                    "webhooks are not configured on this server (M4T_WEBHOOK_SECRETS is empty)",
                    details={"field": "webhook_url"},
                )
            check_webhook_url(spec.webhook_url, self._services.webhook_allow)
        return replace(spec, src_lang=src, tgt_lang=tgt)

    def submit_text(self, spec: JobSpec, text: str, *, detected: Detection | None = None) -> JobRecord:
        """``detected``: the language of ``text`` when the caller has detected it already (for ``src_lang`` auto)."""
        settings = self._services.settings
        spec = self._validated(spec)
        text = check_text(text, max_chars=settings.max_text_chars)
        detected = (detected or self.detect(text)) if spec.src_lang == AUTO else None
        job_id = new_job_id()
        with self._admitted(job_id):
            key = input_key(job_id, "text.txt")
            self._services.storage.put_bytes(key, text.encode("utf-8"), content_type="text/plain; charset=utf-8")
            return self._record_and_enqueue(job_id, spec, key, {"chars": len(text)}, detected)

    def detect(self, text: str) -> Detection:
        """The language of ``text`` among those the model reads, or ``LanguageNotDetected``."""
        text = check_text(text, max_chars=self._services.settings.max_text_chars)
        detector = self._services.detector
        if detector is None:
            raise LanguageNotDetected(
                "language detection is off on this server (M4T_DETECT_ACCURACY=off); pass src_lang with the text's "
                "language code instead of 'auto'",
                details={"field": "src_lang"},
            )
        support, _ = self._services.languages()
        return detector.detect(text, support.text)

    def submit_audio(self, spec: JobSpec, fileobj: BinaryIO, *, filename: str | None, size: int) -> JobRecord:
        settings = self._services.settings
        spec = self._validated(spec)
        info = probe_uploaded_audio(fileobj)
        if info.duration_s < MIN_AUDIO_S:
            raise InvalidAudio(
                f"audio is {info.duration_s * 1000:.1f} ms long ({info.frames} samples at {info.sample_rate} Hz); "
                f"at least {MIN_AUDIO_S * 1000:g} ms is needed to translate speech",
                details={"field": "audio_file", "limit": MIN_AUDIO_S},
            )
        if info.duration_s > settings.max_audio_s:
            raise AudioTooLong(
                f"audio is {info.duration_s:.1f} s long; the limit is {settings.max_audio_s:g} s",
                details={"limit": settings.max_audio_s},
            )
        job_id = new_job_id()
        with self._admitted(job_id, audio_seconds=info.duration_s):
            key = input_key(job_id, f"audio.{info.format}")
            fileobj.seek(0)
            self._services.storage.put_file(key, fileobj, size, content_type=f"audio/{info.format}")
            meta = {
                "filename": filename,
                "format": info.format,
                "duration_s": round(info.duration_s, 3),
                "sample_rate": info.sample_rate,
                "channels": info.channels,
                "bytes": size,
            }
            return self._record_and_enqueue(job_id, spec, key, meta)

    def _record_and_enqueue(
        self, job_id: str, spec: JobSpec, key: str, meta: dict[str, Any], detected: Detection | None = None
    ) -> JobRecord:
        record = self._services.store.new_record(
            id=job_id,
            task=spec.task,
            tgt_lang=spec.tgt_lang,
            src_lang=spec.src_lang,
            detected_src_lang=detected.code if detected else None,
            detected_src_lang_confidence=detected.confidence if detected else None,
            speaker_id=spec.speaker_id,
            output_format=spec.output_format,
            input_key=key,
            input_meta=meta,
            webhook_url=spec.webhook_url,
            owner=self._caller.owner,
            priority=spec.priority,
            speed=spec.speed,
        )
        try:
            self._services.store.create(record)
            self._services.enqueue(record.to_message())
        except Exception:
            self._undo(job_id)
            raise
        return record

    def _undo(self, job_id: str) -> None:
        try:
            self._services.store.delete(job_id)
        except Exception:  # noqa: BLE001 - Redis is likely what failed; the record expires on its own
            log.warning("job %s: could not remove the record of a failed submission", job_id)
        try:
            self._services.storage.delete_prefix(job_prefix(job_id))
        except Exception:  # noqa: BLE001 - storage may be down too; the input is swept with expired jobs
            log.warning("job %s: could not remove the input of a failed submission", job_id)


def probe_uploaded_audio(fileobj: BinaryIO) -> AudioInfo:
    fileobj.seek(0)
    try:
        return probe_audio(fileobj)
    finally:
        fileobj.seek(0)


def text_digest(text: str) -> str:
    return "text:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def file_digest(fileobj: BinaryIO) -> str:
    """SHA-256 of an uploaded (spooled) file, read in chunks; the file is rewound."""
    fileobj.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: fileobj.read(1 << 20), b""):
        digest.update(chunk)
    fileobj.seek(0)
    return "audio:" + digest.hexdigest()


RUNNING_DUPLICATE_TTL_S = 6 * 3600
"""How long a request's fingerprint points at its job for ``attach_running`` (a job still running later than this
gets no more duplicates attached)."""


@dataclass(frozen=True)
class Submitted:
    record: JobRecord
    replayed: bool
    """True when an earlier request with the same Idempotency-Key made this job."""


async def submit_once(
    services: Services,
    caller: Caller,
    idempotency_key: str | None,
    spec: JobSpec,
    digest: Callable[[], str],
    submit: Callable[[], JobRecord],
    *,
    attach_running: bool = False,
) -> Submitted:
    """Run ``submit`` in the thread pool, at most once per idempotency key and request.

    ``attach_running``: without an ``Idempotency-Key``, a request identical to one of the same caller whose job is
    still queued or running gets that job instead of a new one. SDKs that time out retry by themselves, uploading the
    same file again: the retry then waits for the job the first attempt started."""
    if idempotency_key is None and not attach_running:
        return Submitted(await run_in_threadpool(submit), replayed=False)
    fingerprint = spec.fingerprint(await run_in_threadpool(digest))
    settings = services.settings
    if idempotency_key is not None:
        key, ttl_s, reuse_finished = check_key(idempotency_key), settings.idempotency_ttl_s, True
    else:
        key, ttl_s, reuse_finished = f"running:{fingerprint}", RUNNING_DUPLICATE_TTL_S, False
    guard = Idempotency(services.aredis, ttl_s=ttl_s)
    while True:
        existing = await guard.claim(key, fingerprint, scope=caller.owner)
        if existing is None:
            break
        record = await fetch_job(services.aredis, existing)
        if record is not None and (reuse_finished or not record.status.terminal):
            return Submitted(record, replayed=True)
        await guard.release(key, scope=caller.owner)  # its job has expired (or ended): this request makes a new one
    try:
        record = await run_in_threadpool(submit)
    except BaseException:
        await guard.release(key, scope=caller.owner)
        raise
    await guard.complete(key, fingerprint, record.id, scope=caller.owner)
    return Submitted(record, replayed=False)
