"""From a job's input to its outputs: plan the units (speech segments or text chunks), translate them in
length-sorted batches, stitch the results back in order.

- Speech input is downloaded from storage to a temporary file and decoded in blocks into a float32 file on disk,
  while the VAD reads the same blocks; each batch reads only its own segments back from that file: memory stays
  bounded whatever the duration (a 2-hour file adds about 80 MiB to the worker's peak).
- Text input is split into sentences and packed into chunks under a token budget, never across paragraphs.
- Batches hold up to ``batch_size`` units sorted by length (less padding); progress is reported after each batch,
  and between batches ``checkpoint`` raises if the job was cancelled or taken over.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.audio import CONTENT_TYPES, encode_audio, iter_decoded_blocks
from shared.errors import EngineOutOfMemory, InferenceFailed
from shared.messages import JobMessage, output_key
from shared.storage import Storage
from worker.engine import Item, ItemResult, SpeechItem, TextItem, TranslationEngine
from worker.segmentation import SpeechSegment, SpeechSegmenter
from worker.text_chunks import TextChunk, chunk_text, join_chunks, join_segment_texts

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
DECODE_BLOCK_S = 60.0
SENTENCE_PAUSE_S = 0.3
PARAGRAPH_PAUSE_S = 0.8


@dataclass(frozen=True)
class PipelineOptions:
    batch_size: int = 8
    text_chunk_tokens: int = 160
    max_output_pause_s: float = 2.0


class JobContext:
    """What the pipeline may tell the runner: progress, and the points where it may be stopped."""

    def __init__(self, progress: Callable[[int, int], None], checkpoint: Callable[[], None]) -> None:
        self.progress = progress
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class Translated:
    results: list[ItemResult]
    engine_s: float


class TranslationPipeline:
    def __init__(
        self,
        engine: TranslationEngine,
        storage: Storage,
        segmenter: SpeechSegmenter,
        options: PipelineOptions,
    ) -> None:
        self.engine = engine
        self.storage = storage
        self.segmenter = segmenter
        self.options = options

    def run(self, message: JobMessage, ctx: JobContext) -> dict[str, Any]:
        if message.task.speech_input:
            with tempfile.TemporaryDirectory(prefix=f"m4t-{message.job_id[:8]}-") as folder:
                return self._run_speech(message, ctx, Path(folder))
        return self._run_text(message, ctx)

    # -- speech input ------------------------------------------------------------------------------------------
    def _run_speech(self, message: JobMessage, ctx: JobContext, folder: Path) -> dict[str, Any]:
        source = folder / "input"
        self.storage.download_to(message.input_key, source)
        audio, segments = self._decode_and_segment(source, folder / "audio.f32")
        ctx.checkpoint()
        translated = self._translate(
            message,
            ctx,
            lambda i: SpeechItem(audio.read(segments[i].start_s, segments[i].end_s)),
            sizes=[s.duration_s for s in segments],
        )
        texts = [r.text for r in translated.results]
        result: dict[str, Any] = {
            "text": join_segment_texts(texts, message.tgt_lang, overlapped=[s.hard_cut for s in segments]),
            "engine_s": round(translated.engine_s, 4),
            "source_duration_s": round(audio.samples / SAMPLE_RATE, 3),
        }
        rows: list[dict[str, Any]] = [
            {"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "text": text}
            for s, text in zip(segments, texts, strict=True)
        ]
        if message.task.speech_output:
            waves = [r.waveform if r.waveform is not None else _silence(0) for r in translated.results]
            gaps = [max(0.0, nxt.start_s - cur.end_s) for cur, nxt in itertools.pairwise(segments)]
            wave, spans = self._concatenate(waves, [min(g, self.options.max_output_pause_s) for g in gaps])
            for row, (start, end) in zip(rows, spans, strict=True):
                row["output_start_s"], row["output_end_s"] = round(start, 3), round(end, 3)
            result["audio"] = self._write_audio(message, wave)
        result["segments"] = rows
        return result

    def _decode_and_segment(self, source: Path, scratch: Path) -> tuple[ScratchAudio, list[SpeechSegment]]:
        """One decoding pass: blocks go to a float32 file on disk and through the VAD."""
        total = 0
        with scratch.open("wb") as out:

            def blocks() -> Iterator[np.ndarray]:
                nonlocal total
                for block in iter_decoded_blocks(source, block_s=DECODE_BLOCK_S):
                    out.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
                    total += len(block)
                    yield block

            segments = self.segmenter.segment(blocks(), sample_rate=SAMPLE_RATE)
        return ScratchAudio(scratch, total), segments

    # -- text input --------------------------------------------------------------------------------------------
    def _run_text(self, message: JobMessage, ctx: JobContext) -> dict[str, Any]:
        if message.src_lang is None:
            raise InferenceFailed("text job without a source language")
        text = self.storage.get_bytes(message.input_key).decode("utf-8")
        chunks = chunk_text(
            text,
            message.src_lang,
            count_tokens=self.engine.count_tokens,
            max_tokens=self.options.text_chunk_tokens,
        )
        src_lang = message.src_lang
        translated = self._translate(
            message, ctx, lambda i: TextItem(chunks[i].text, src_lang), sizes=[len(chunk.text) for chunk in chunks]
        )
        texts = [r.text for r in translated.results]
        result: dict[str, Any] = {
            "text": join_chunks(chunks, texts, message.tgt_lang),
            "engine_s": round(translated.engine_s, 4),
            "chunks": len(chunks),
        }
        if message.task.speech_output:
            waves = [r.waveform if r.waveform is not None else _silence(0) for r in translated.results]
            wave, _ = self._concatenate(waves, _chunk_pauses(chunks))
            result["audio"] = self._write_audio(message, wave)
        return result

    # -- shared ------------------------------------------------------------------------------------------------
    def _translate(
        self, message: JobMessage, ctx: JobContext, item: Callable[[int], Item], *, sizes: Sequence[float]
    ) -> Translated:
        """Items 0..n-1 (made by ``item(i)`` only when their batch comes, so long audio is never all in memory),
        longest first, in batches; results come back in item order."""
        count = len(sizes)
        order = sorted(range(count), key=lambda i: sizes[i], reverse=True)
        results: list[ItemResult | None] = [None] * count
        engine_s = 0.0
        done = 0
        ctx.progress(0, count)
        for start in range(0, len(order), self.options.batch_size):
            ctx.checkpoint()
            indices = order[start : start + self.options.batch_size]
            began = time.perf_counter()
            batch = self._translate_batch(message, [item(i) for i in indices])
            engine_s += time.perf_counter() - began
            for index, result in zip(indices, batch, strict=True):
                results[index] = result
            done += len(indices)
            ctx.progress(done, count)
        ctx.checkpoint()
        return Translated([r for r in results if r is not None], engine_s)

    def _translate_batch(self, message: JobMessage, items: Sequence[Item]) -> list[ItemResult]:
        """One batch; on out-of-memory, the two halves one after the other (down to single items, which then fail
        the job with ``out_of_memory``: the worker itself keeps serving)."""
        try:
            return self.engine.translate(message.task, items, tgt_lang=message.tgt_lang, speaker_id=message.speaker_id)
        except EngineOutOfMemory:
            self.engine.release_cached_memory()
            if len(items) == 1:
                raise
            log.warning("job %s: out of memory on %d items; splitting the batch", message.job_id, len(items))
            half = len(items) // 2
            return self._translate_batch(message, items[:half]) + self._translate_batch(message, items[half:])

    def _concatenate(
        self, waves: Sequence[np.ndarray], pauses: Sequence[float]
    ) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """Waves joined with the given pauses between them; returns the audio and each wave's span in it."""
        pieces: list[np.ndarray] = []
        spans: list[tuple[float, float]] = []
        position = 0
        for index, wave in enumerate(waves):
            if index and pauses[index - 1] > 0:
                pieces.append(_silence(pauses[index - 1]))
                position += len(pieces[-1])
            spans.append((position / SAMPLE_RATE, (position + len(wave)) / SAMPLE_RATE))
            pieces.append(wave)
            position += len(wave)
        return (np.concatenate(pieces) if pieces else _silence(0)), spans

    def _write_audio(self, message: JobMessage, wave: np.ndarray) -> dict[str, Any]:
        fmt = message.output_format
        key = output_key(message.job_id, f"audio.{fmt}")
        self.storage.put_bytes(key, encode_audio(wave, fmt), content_type=CONTENT_TYPES[fmt])
        return {"key": key, "format": fmt, "sample_rate": SAMPLE_RATE, "duration_s": round(len(wave) / SAMPLE_RATE, 3)}


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
