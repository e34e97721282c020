"""A finished speech-to-text job as OpenAI's transcription and translation responses: ``json``, ``text``, ``srt``,
``vtt`` and ``verbose_json``, and the Server-Sent Events of ``stream=true``.

``verbose_json`` segments carry every field of the SDK's ``TranscriptionSegment``. Real values where the model
gives them: ``id``, ``start``/``end`` (in the source audio), ``text``, ``tokens`` (the generated token ids) and
``avg_logprob`` (the mean log-probability of the generated tokens, from the generation scores);
``compression_ratio`` is computed from the text as Whisper does (UTF-8 length over zlib-compressed length);
``seek`` is the segment's start in 10 ms frames (Whisper's unit). Neutral values where the model has none:
``no_speech_prob`` 0.0 (the voice-activity detector has already dropped the audio without speech) and
``temperature`` 0.0 (decoding is beam search, never sampling)."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import redis.asyncio
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gateway.errors import openai_body
from gateway.openai_compat.outcomes import job_failure
from gateway.waiting import fetch_job, follow_events
from shared.iso639 import openai_language_name
from shared.jobs import JobRecord, JobStatus
from shared.languages import sentence_separator
from shared.subtitles import to_srt, to_vtt

AudioTask = Literal["transcribe", "translate"]


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def verbose_segments(segments: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The job's segments with text, as ``TranscriptionSegment`` objects numbered from 0."""
    spoken = [s for s in segments if str(s.get("text", "")).strip()]
    return [
        {
            "id": index,
            "seek": round(float(s["start_s"]) * 100),
            "start": float(s["start_s"]),
            "end": float(s["end_s"]),
            "text": str(s["text"]).strip(),
            "tokens": [int(t) for t in s.get("tokens", [])],
            "temperature": 0.0,
            "avg_logprob": float(s.get("avg_logprob") or 0.0),
            "compression_ratio": compression_ratio(str(s["text"]).strip()),
            "no_speech_prob": 0.0,
        }
        for index, s in enumerate(spoken)
    ]


def _duration_s(record: JobRecord) -> float:
    result = record.result or {}
    return float(result.get("source_duration_s") or record.input_meta.get("duration_s") or 0.0)


def transcript_response(
    record: JobRecord, response_format: str, *, task: AudioTask, headers: dict[str, str]
) -> Response:
    """A succeeded s2tt job in the ``response_format`` asked for."""
    result = record.result or {}
    text = str(result.get("text", ""))
    segments = result.get("segments", [])
    duration = _duration_s(record)
    usage = {"type": "duration", "seconds": round(duration, 3)}
    if response_format == "text":
        return PlainTextResponse(text + "\n", headers=headers)
    if response_format in ("srt", "vtt"):
        body = to_srt(segments) if response_format == "srt" else to_vtt(segments)
        return PlainTextResponse(body, headers=headers)
    if response_format == "verbose_json":
        # A transcription reports the spoken language; a translation the language it was translated into.
        language = record.src_lang if task == "transcribe" and record.src_lang else record.tgt_lang
        verbose = {
            "task": task,
            "language": openai_language_name(language),
            "duration": round(duration, 3),
            "text": text,
            "segments": verbose_segments(segments),
            "usage": usage,
        }
        return JSONResponse(verbose, headers=headers)
    return JSONResponse({"text": text, "usage": usage}, headers=headers)


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def transcript_events(
    aredis: redis.asyncio.Redis, job_id: str, *, text_lang: str, wait_s: float
) -> AsyncIterator[str]:
    """OpenAI's transcription stream: one ``transcript.text.delta`` per segment as the worker releases it (in
    order), then ``transcript.text.done`` with the whole text. A failed job ends the stream with ``{"error": ...}``
    (the SDK raises it as ``APIError``), and so does a job still running after ``wait_s`` (``wait_timeout``, with
    its id). A job that is run again from the start (handed back at a worker's shutdown, or taken over after its
    worker died) publishes its segments again: each is sent once."""
    deadline = time.monotonic() + wait_s
    separator = sentence_separator(text_lang)
    next_index = 0
    started = False
    async for event in follow_events(aredis, job_id, until=deadline):
        if event is not None and event.event == "segment":
            index = int(event.data.get("index", next_index))
            text = str(event.data.get("text", "")).strip()
            if index >= next_index:
                next_index = index + 1
                if text:
                    yield _data({"type": "transcript.text.delta", "delta": (separator if started else "") + text})
                    started = True
        elif event is not None and event.terminal:
            break
        elif event is None:
            yield ": keep-alive\n\n"
    record = await fetch_job(aredis, job_id)
    if record is not None and record.status is JobStatus.SUCCEEDED:
        text = str((record.result or {}).get("text", ""))
        yield _data({"type": "transcript.text.done", "text": text})
        return
    _, body, _ = openai_body(job_failure(record, job_id, waited_s=wait_s))
    yield _data(body)
