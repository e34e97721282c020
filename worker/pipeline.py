"""From a job's input to its outputs: plan the units (speech segments or text chunks), hand them to the batch
scheduler (which shares generate calls between jobs), stitch the results back in order.

- Speech input is downloaded from storage to a temporary file and decoded in blocks into a float32 file on disk,
  while the VAD reads the same blocks; each unit reads only its own segment back from that file when its call
  comes: memory stays bounded whatever the duration and however many jobs are in flight. Decoding stops past
  ``max_audio_s`` (``M4T_MAX_AUDIO_S``) and the job fails with ``audio_too_long``: the gateway measured the file
  (from its header where the container states a length), and a header can understate it. What was decoded is
  reported to the runner (``JobContext.decoded``), which settles the API key's audio quota to it.
- Text input is split into sentences and packed into chunks under a token budget, never across paragraphs.
- Planning (download, decode, VAD, sentence splitting) runs in the job's own thread, at most ``prep_concurrency``
  jobs at a time, while the model serves other jobs.
- Speech output goes to a scratch file as each unit's audio is released, not held in memory.
- Each unit's result is released in source order (a unit once all before it are done) as a ``segment`` event;
  progress is reported as results come, and ``checkpoint`` raises if the job was cancelled, taken over or is
  handed back at shutdown.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.audio import iter_decoded_blocks
from shared.audio_encode import CONTENT_TYPES, EXTENSIONS, change_tempo, encode_audio, output_rate
from shared.errors import AudioTooLong, InferenceFailed, M4TError
from shared.messages import JobMessage, output_key
from shared.storage import Storage
from worker.engine import ItemResult, SpeechItem, TextItem, TranslationEngine
from worker.scheduler import BatchScheduler, Unit
from worker.segmentation import SpeechSegment, SpeechSegmenter
from worker.text_chunks import TextChunk, chunk_text, join_chunks, join_segment_texts

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
DECODE_BLOCK_S = 60.0
SENTENCE_PAUSE_S = 0.3
PARAGRAPH_PAUSE_S = 0.8
RESULT_POLL_S = 0.5  # how often a waiting job looks at its checkpoint (cancellation, lease, shutdown)


@dataclass(frozen=True)
class PipelineOptions:
    text_chunk_tokens: int = 160
    max_output_pause_s: float = 2.0
    scratch_dir: Path | None = None
    """Where jobs keep their decoded audio and speech output while they run (default: the system's temp dir)."""
    max_audio_s: float | None = None
    """Decoding stops past this many seconds of audio, and the job fails with ``audio_too_long``."""


class JobContext:
    """What the pipeline may tell the runner: progress, released results, seconds of audio decoded, and the points
    where it may be stopped."""

    def __init__(
        self,
        progress: Callable[[int, int], None],
        checkpoint: Callable[[], None],
        segment: Callable[[dict[str, Any]], None] | None = None,
        decoded: Callable[[float], None] | None = None,
    ) -> None:
        self.progress = progress
        self.checkpoint = checkpoint
        self.segment = segment or (lambda _: None)
        self.decoded = decoded or (lambda _: None)


@dataclass(frozen=True)
class Translated:
    texts: list[str]
    engine_s: float


class TranslationPipeline:
    def __init__(
        self,
        engine: TranslationEngine,
        scheduler: BatchScheduler,
        storage: Storage,
        segmenters: Sequence[SpeechSegmenter],
        options: PipelineOptions,
    ) -> None:
        if not segmenters:
            raise ValueError("at least one segmenter")
        self.engine = engine
        self.scheduler = scheduler
        self.storage = storage
        self.options = options
        self._segmenters: queue.Queue[SpeechSegmenter] = queue.Queue()
        for segmenter in segmenters:
            self._segmenters.put(segmenter)
        self._planning = threading.BoundedSemaphore(len(segmenters))

    def run(self, message: JobMessage, ctx: JobContext) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix=f"m4t-{message.job_id[:8]}-", dir=self.options.scratch_dir) as tmp:
            folder = Path(tmp)
            if message.task.speech_input:
                return self._run_speech(message, ctx, folder)
            return self._run_text(message, ctx, folder)

    # -- speech input ------------------------------------------------------------------------------------------
    def _run_speech(self, message: JobMessage, ctx: JobContext, folder: Path) -> dict[str, Any]:
        source = folder / "input"
        with self._planning_slot(ctx):
            self.storage.download_to(message.input_key, source)
            audio, segments = self._decode_and_segment(source, folder / "audio.f32", ctx)
        source.unlink(missing_ok=True)
        ctx.checkpoint()

        def reader(segment: SpeechSegment) -> Callable[[], SpeechItem]:
            return lambda: SpeechItem(audio.read(segment.start_s, segment.end_s))

        output = SpeechOutput(folder / "output.f32") if message.task.speech_output else None
        gaps = [max(0.0, nxt.start_s - cur.end_s) for cur, nxt in itertools.pairwise(segments)]
        rows: list[dict[str, Any]] = [
            {"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "text": ""} for s in segments
        ]

        def release(index: int, result: ItemResult) -> None:
            row = rows[index]
            row["text"] = result.text
            if output is not None:
                pause = min(gaps[index - 1], self.options.max_output_pause_s) if index else 0.0
                start, end = output.append(result.waveform, pause_s=pause)
                # Spans in the audio as delivered, after _write_audio changes its tempo (atempo: time / speed).
                row["output_start_s"] = round(start / message.speed, 3)
                row["output_end_s"] = round(end / message.speed, 3)
            else:
                # Text output: what OpenAI's verbose_json segments carry besides the text.
                row["tokens"] = list(result.tokens)
                row["avg_logprob"] = None if result.avg_logprob is None else round(result.avg_logprob, 4)
            ctx.segment({"index": index, **row})

        translated = self._translate(
            message,
            ctx,
            [Unit(i, s.duration_s, reader(s)) for i, s in enumerate(segments)],
            release,
        )
        result: dict[str, Any] = {
            "text": join_segment_texts(translated.texts, message.tgt_lang, overlapped=[s.hard_cut for s in segments]),
            "engine_s": round(translated.engine_s, 4),
            "source_duration_s": round(audio.samples / SAMPLE_RATE, 3),
        }
        if output is not None:
            result["audio"] = self._write_audio(message, output.read_all())
        result["segments"] = rows
        return result

    @contextlib.contextmanager
    def _planning_slot(self, ctx: JobContext) -> Iterator[None]:
        """At most ``prep_concurrency`` jobs plan at once; a waiting job still sees its checkpoint."""
        while not self._planning.acquire(timeout=RESULT_POLL_S):
            ctx.checkpoint()
        try:
            yield
        finally:
            self._planning.release()

    def _decode_and_segment(
        self, source: Path, scratch: Path, ctx: JobContext
    ) -> tuple[ScratchAudio, list[SpeechSegment]]:
        """One decoding pass: blocks go to a float32 file on disk and through the VAD (with a checkpoint between
        blocks, so a long file can be cancelled or handed back while it is decoded). The seconds decoded go to
        ``ctx.decoded`` once decoding ends, also when it ends in an error about the audio."""
        total = 0
        segmenter = self._segmenters.get()
        try:
            with scratch.open("wb") as out:

                def blocks() -> Iterator[np.ndarray]:
                    nonlocal total
                    for block in iter_decoded_blocks(
                        source, block_s=DECODE_BLOCK_S, max_seconds=self.options.max_audio_s
                    ):
                        ctx.checkpoint()
                        out.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
                        total += len(block)
                        yield block

                segments = segmenter.segment(blocks(), sample_rate=SAMPLE_RATE)
        except AudioTooLong as exc:
            ctx.decoded(float(exc.details.get("decoded_s", total / SAMPLE_RATE)))
            raise
        except M4TError:
            ctx.decoded(total / SAMPLE_RATE)
            raise
        finally:
            self._segmenters.put(segmenter)
        ctx.decoded(total / SAMPLE_RATE)
        return ScratchAudio(scratch, total), segments

    # -- text input --------------------------------------------------------------------------------------------
    def _run_text(self, message: JobMessage, ctx: JobContext, folder: Path) -> dict[str, Any]:
        if message.src_lang is None:
            raise InferenceFailed("text job without a source language")
        src_lang = message.src_lang
        with self._planning_slot(ctx):
            text = self.storage.get_bytes(message.input_key).decode("utf-8")
            chunks = chunk_text(
                text,
                src_lang,
                count_tokens=self.engine.count_tokens,
                max_tokens=self.options.text_chunk_tokens,
            )
        ctx.checkpoint()
        output = SpeechOutput(folder / "output.f32") if message.task.speech_output else None
        pauses = _chunk_pauses(chunks)

        def release(index: int, result: ItemResult) -> None:
            if output is not None:
                output.append(result.waveform, pause_s=pauses[index - 1] if index else 0.0)
            ctx.segment({"index": index, "text": result.text})

        def item(chunk: TextChunk) -> Callable[[], TextItem]:
            return lambda: TextItem(chunk.text, src_lang)

        units = [Unit(i, self.engine.count_tokens(c.text) + 2, item(c)) for i, c in enumerate(chunks)]
        translated = self._translate(message, ctx, units, release)
        result: dict[str, Any] = {
            "text": join_chunks(chunks, translated.texts, message.tgt_lang),
            "engine_s": round(translated.engine_s, 4),
            "chunks": len(chunks),
        }
        if output is not None:
            result["audio"] = self._write_audio(message, output.read_all())
        return result

    # -- shared ------------------------------------------------------------------------------------------------
    def _translate(
        self,
        message: JobMessage,
        ctx: JobContext,
        units: Sequence[Unit],
        release: Callable[[int, ItemResult], None],
    ) -> Translated:
        """Hand the units to the scheduler and wait for their results; each is released (``release``) in unit
        order, once all before it are done. Returns the texts in unit order."""
        count = len(units)
        texts: list[str | None] = [None] * count
        waiting: dict[int, ItemResult] = {}
        released = 0
        job = self.scheduler.open_job(
            message.job_id,
            task=message.task,
            tgt_lang=message.tgt_lang,
            speaker_id=message.speaker_id,
            priority=message.priority,
        )
        try:
            ctx.progress(0, count)
            job.submit(units)
            done = 0
            while done < count:
                ctx.checkpoint()
                arrived = job.wait(RESULT_POLL_S)
                if not arrived:
                    continue
                waiting.update(arrived)
                done += len(arrived)
                while released in waiting:
                    result = waiting.pop(released)
                    texts[released] = result.text
                    release(released, result)
                    released += 1
                ctx.progress(done, count)
            ctx.checkpoint()
        finally:
            job.close()
        return Translated([t or "" for t in texts], job.engine_s)

    def _write_audio(self, message: JobMessage, wave: np.ndarray) -> dict[str, Any]:
        fmt = message.output_format
        if message.speed != 1.0:  # the whole job's speech at once: one filter graph, no seams between units
            wave = change_tempo(wave, message.speed, sample_rate=SAMPLE_RATE)
        data = encode_audio(wave, fmt, sample_rate=SAMPLE_RATE)  # first: an unknown format is InvalidRequest
        key = output_key(message.job_id, f"audio.{EXTENSIONS[fmt]}")
        self.storage.put_bytes(key, data, content_type=CONTENT_TYPES[fmt])
        rate = output_rate(fmt, SAMPLE_RATE)
        return {"key": key, "format": fmt, "sample_rate": rate, "duration_s": round(len(wave) / SAMPLE_RATE, 3)}


class SpeechOutput:
    """A job's translated speech, written to a float32 file on disk piece by piece as units are released."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = 0
        path.touch()

    def append(self, wave: np.ndarray | None, *, pause_s: float = 0.0) -> tuple[float, float]:
        """Append ``pause_s`` of silence and then ``wave``; returns the wave's span in the output (seconds)."""
        with self.path.open("ab") as out:
            if pause_s > 0:
                silence = _silence(pause_s)
                out.write(silence.tobytes())
                self.samples += len(silence)
            start = self.samples
            if wave is not None and len(wave):
                out.write(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
                self.samples += len(wave)
        return start / SAMPLE_RATE, self.samples / SAMPLE_RATE

    def read_all(self) -> np.ndarray:
        return np.fromfile(self.path, dtype=np.float32, count=self.samples)


class ScratchAudio:
    """Decoded 16 kHz float32 samples in a file on disk; segments are read from it one batch at a time."""

    def __init__(self, path: Path, samples: int) -> None:
        self.path = path
        self.samples = samples

    def read(self, start_s: float, end_s: float) -> np.ndarray:
        start = min(_sample(start_s), self.samples)
        count = max(0, min(_sample(end_s), self.samples) - start)
        return np.fromfile(self.path, dtype=np.float32, count=count, offset=start * 4)


def _sample(seconds: float) -> int:
    return max(0, round(seconds * SAMPLE_RATE))


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(_sample(seconds), dtype=np.float32)


def _chunk_pauses(chunks: Sequence[TextChunk]) -> list[float]:
    return [
        PARAGRAPH_PAUSE_S if nxt.paragraph != cur.paragraph else SENTENCE_PAUSE_S
        for cur, nxt in itertools.pairwise(chunks)
    ]
