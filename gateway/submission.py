"""Submitting a job: validate, store the input, record the job, enqueue it. Nothing half-done is left behind:
the input is stored before the job exists, and a failure to enqueue removes both."""

from __future__ import annotations

import logging
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, BinaryIO

from gateway.services import Services
from shared.audio import AudioInfo, probe_audio
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.jobs import JobRecord, JobStatus, new_job_id
from shared.messages import input_key, job_prefix
from shared.tasks import Task

log = logging.getLogger(__name__)


class EmptyText(InvalidRequest):
    code = "empty_text"


class AudioTooLong(PayloadTooLarge):
    code = "audio_too_long"


@dataclass(frozen=True)
class JobSpec:
    task: Task
    tgt_lang: str
    src_lang: str | None
    speaker_id: int | None
    output_format: str


def check_text(text: str, *, max_chars: int) -> str:
    if len(text) > max_chars:
        raise PayloadTooLarge(f"text is {len(text)} characters; the limit is {max_chars}", details={"limit": max_chars})
    if not any(unicodedata.category(ch)[0] in "LNPS" for ch in text):
        raise EmptyText("text is empty (only whitespace or control characters)", details={"field": "text"})
    return text


class JobSubmitter:
    def __init__(self, services: Services) -> None:
        self._services = services

    def _validated(self, spec: JobSpec) -> JobSpec:
        support, _ = self._services.languages()
        src, tgt = support.validate(spec.task, spec.src_lang, spec.tgt_lang)
        return JobSpec(spec.task, tgt, src, spec.speaker_id, spec.output_format)

    def submit_text(self, spec: JobSpec, text: str) -> JobRecord:
        settings = self._services.settings
        spec = self._validated(spec)
        text = check_text(text, max_chars=settings.max_text_chars)
        job_id = new_job_id()
        key = input_key(job_id, "text.txt")
        self._services.storage.put_bytes(key, text.encode("utf-8"), content_type="text/plain; charset=utf-8")
        return self._record_and_enqueue(job_id, spec, key, {"chars": len(text)})

    def submit_audio(self, spec: JobSpec, fileobj: BinaryIO, *, filename: str | None, size: int) -> JobRecord:
        settings = self._services.settings
        spec = self._validated(spec)
        info = probe_uploaded_audio(fileobj)
        if info.duration_s > settings.max_audio_s:
            raise AudioTooLong(
                f"audio is {info.duration_s:.1f} s long; the limit is {settings.max_audio_s:g} s",
                details={"limit": settings.max_audio_s},
            )
        job_id = new_job_id()
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

    def _record_and_enqueue(self, job_id: str, spec: JobSpec, key: str, meta: dict[str, Any]) -> JobRecord:
        record = JobRecord(
            id=job_id,
            task=spec.task,
            status=JobStatus.QUEUED,
            tgt_lang=spec.tgt_lang,
            src_lang=spec.src_lang,
            speaker_id=spec.speaker_id,
            output_format=spec.output_format,
            input_key=key,
            input_meta=meta,
            created_at=time.time(),
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
