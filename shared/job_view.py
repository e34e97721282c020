"""How a stored job is shown to clients."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.jobs import JobRecord, JobStatus

API_PREFIX = "/api/v1"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def job_path(job_id: str, *parts: str) -> str:
    return "/".join([f"{API_PREFIX}/jobs/{job_id}", *parts])


def job_to_api(record: JobRecord, base_url: str) -> dict[str, Any]:
    base = base_url.rstrip("/")
    links = {"self": base + job_path(record.id), "events": base + job_path(record.id, "events")}
    if record.webhook_url:
        links["webhooks"] = base + job_path(record.id, "webhooks")
    result: dict[str, Any] | None = None
    if record.status is JobStatus.SUCCEEDED and record.result is not None:
        result = {"text": record.result.get("text", ""), "audio": None}
        if "segments" in record.result:
            result["segments"] = record.result["segments"]
            links["subtitles"] = base + job_path(record.id, "subtitles") + "?format=srt"
        audio = record.result.get("audio")
        if audio:
            links["audio"] = base + job_path(record.id, "audio")
            result["audio"] = {
                "url": links["audio"],
                "format": audio["format"],
                "sample_rate": audio["sample_rate"],
                "duration_s": audio["duration_s"],
            }
    total = record.progress_total
    done = record.progress_done
    fraction = 1.0 if record.status is JobStatus.SUCCEEDED else (done / total if total else 0.0)
    options: dict[str, Any] = {"output_format": record.output_format, "priority": record.priority.value}
    if record.speaker_id is not None:
        options["speaker_id"] = record.speaker_id
    timings: dict[str, float] = {}
    if record.started_at is not None:
        timings["queued_s"] = round(record.started_at - record.created_at, 4)
    if record.finished_at is not None and record.started_at is not None:
        timings["run_s"] = round(record.finished_at - record.started_at, 4)
    if record.result and "engine_s" in record.result:
        timings["engine_s"] = record.result["engine_s"]
    return {
        "id": record.id,
        "task": record.task.value,
        "status": record.status.value,
        "src_lang": record.src_lang,
        "detected_src_lang": record.detected_src_lang,
        "detected_src_lang_confidence": record.detected_src_lang_confidence,
        "tgt_lang": record.tgt_lang,
        "options": options,
        "input": record.input_meta,
        "created_at": iso(record.created_at),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "progress": {"done": done, "total": total, "fraction": round(fraction, 4)},
        "result": result,
        "error": record.error.model_dump() if record.error else None,
        "priority": record.priority.value,
        "queue_position": None,
        "cancel_requested": record.cancel_requested,
        "webhook_url": record.webhook_url,
        "expires_at": iso(record.expires_at),
        "timings": timings,
        "links": links,
    }
