"""Benchmark long audio through the real worker pipeline: batched vs one-segment-at-a-time, the VAD's share, memory.

Runs ``worker.pipeline.TranslationPipeline`` in-process exactly as the worker does (the same ``TranslationEngine``,
``SpeechSegmenter`` and ``LocalStorage``; a ``JobMessage``; a ``JobContext`` whose checkpoint does nothing and whose
progress callback records the time of every batch), on a long file built from the committed speech clips
(``tests/data/utt_*.ogg``) separated by ``--pause-s`` of silence, as in ``tests/test_long_inputs.py``: with the
default 1.5 s pauses the VAD cuts one segment per clip (about 125 segments in 10 minutes, 2.3-4.9 s each).
The file is written as FLAC clip by clip (never held whole in memory) and uploaded to storage like a job's input.

Two modes:

- compare (default): for each task (``--tasks``, S2TT by default), run the file with ``batch_size=8`` and with
  ``batch_size=1`` (``--batch-sizes``), interleaved ``--repeats`` times, and report the wall time, the real-time
  factor (processing time / audio duration), the engine's share, the batched speedup, and the time of the
  pipeline's decode + VAD step (``_decode_and_segment``, timed around the call) as a share of the total. The VAD
  alone is also timed afterwards on the same decoded audio (``SpeechSegmenter.segment`` on in-memory blocks).
- ``--memory-2h``: the tiny model, S2TT, batch 8, on a ``--hours`` (2) hour file; reports the process's peak RSS
  (``getrusage`` ``ru_maxrss``) before and after the job, what the job added, the anonymous and file-backed parts
  (sampled from /proc/self/status every 0.2 s), and the total time.

Models: ``--model tiny`` (default; the random test model, built by ``worker.tiny_model.ensure_tiny_model`` into
data/models) or ``--model full`` (the real SeamlessM4T v2 architecture with random weights, bf16: the folder that
``bench/engine.py --full-size`` builds into data/bench-models/full-size-random, processor and generation config
included; build it with that script first).

Output length. Random weights never emit </s> (both models suppress it), so every item generates exactly its
bound, ``ceil(max_len_a * encoder_length) + max_len_b`` tokens. For speech the engine's encoder length is the
feature frames after the length adaptor (50 frames/s / adaptor stride 8 = 6.25 per second), so the defaults
``--max-len-a 0.5 --max-len-b 5`` give ``ceil(3.125 * seconds) + 5`` tokens per segment (16 for a 3.5 s clip,
about 4.6 tokens per second of speech): a realistic amount of speech translation, and the same for the compared
runs. A batch runs to its longest item's bound (items are sorted by length, so the extra is small); the report
counts both the tokens the items needed and the decoder positions the batches computed. Greedy decoding (1 beam).

Examples (from the repository root)::

    .venv/bin/python bench/long_audio.py --json bench/results/long-audio-tiny-cpu.json
    nice -n 19 .venv/bin/python bench/long_audio.py --memory-2h --json bench/results/long-audio-2h-memory.json
    nice -n 19 .venv/bin/python bench/long_audio.py --model full --json bench/results/long-audio-full-size-cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/long_audio.py` from anywhere

from bench.common import machine_info, progress, write_report
from shared.audio import decode_audio, iter_decoded_blocks
from shared.messages import JobMessage, input_key
from shared.storage import LocalStorage
from shared.tasks import Task
from worker.engine import DecodingOptions, SpeechItem, TranslationEngine
from worker.pipeline import DECODE_BLOCK_S, JobContext, PipelineOptions, TranslationPipeline
from worker.scheduler import BatchScheduler, SchedulerOptions
from worker.segmentation import SpeechSegmenter

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
CLIPS = ["utt_en.ogg", "utt_fr.ogg", "utt_de.ogg", "utt_es.ogg", "utt_hi.ogg", "utt_zh.ogg"]
TINY_CACHE_DIR = REPO / "data" / "models"
DEFAULT_FULL_SIZE_DIR = REPO / "data" / "bench-models" / "full-size-random"
SAMPLE_RATE = 16_000
TGT_LANG = "eng"
PREFIX_TOKENS = 2  # generated sequences start with the decoder start token and the target language token
MIB = 1024**2

log = logging.getLogger("bench.long_audio")


# ---------------------------------------------------------------------------------------------------------------
# The long input


@dataclass(frozen=True)
class LongAudio:
    path: Path
    duration_s: float
    clips: int
    speech_s: float
    pause_s: float
    flac_bytes: int


def write_long_flac(path: Path, total_s: float, pause_s: float) -> LongAudio:
    """Clips separated by ``pause_s`` of silence until ``total_s`` (the layout of ``build_long_audio`` in
    tests/test_long_inputs.py), streamed into a 16-bit FLAC file piece by piece: memory stays at one clip."""
    sources = [decode_audio(DATA / name) for name in CLIPS]
    pause = np.zeros(int(pause_s * SAMPLE_RATE), dtype=np.float32)
    total = int(total_s * SAMPLE_RATE)
    position = clips = speech = 0
    with sf.SoundFile(path, "w", samplerate=SAMPLE_RATE, channels=1, format="FLAC", subtype="PCM_16") as out:
        while True:
            clip = sources[clips % len(sources)]
            if (position + len(clip)) / SAMPLE_RATE > total_s - pause_s:
                break
            out.write(clip)
            out.write(pause)
            position += len(clip) + len(pause)
            speech += len(clip)
            clips += 1
        chunk = 60 * SAMPLE_RATE
        while position < total:
            n = min(chunk, total - position)
            out.write(np.zeros(n, dtype=np.float32))
            position += n
    return LongAudio(
        path=path,
        duration_s=position / SAMPLE_RATE,
        clips=clips,
        speech_s=round(speech / SAMPLE_RATE, 2),
        pause_s=pause_s,
        flac_bytes=path.stat().st_size,
    )


# ---------------------------------------------------------------------------------------------------------------
# Probes around the real objects (instance attributes shadow the methods; removed afterwards)


@dataclass
class CallRecord:
    items: int
    encoder_lengths: list[int]
    """Per item: the engine's source length (feature frames after the adaptor)."""
    bounds: list[int]
    """Per item: the tokens it must generate, ``ceil(a * length) + b``."""
    steps: int
    """Tokens the call generated (after the two prefix tokens), the same for every row of the batch."""
    stopped_early: int
    """Rows that emitted </s> or <pad> before the end (0 with random weights; >0 breaks the comparison)."""


@dataclass
class RunProbe:
    decode_segment_s: float = 0.0
    calls: list[CallRecord] = field(default_factory=list)
    progress: list[tuple[float, int, int]] = field(default_factory=list)
    rss_at_first_progress: dict[str, float] = field(default_factory=dict)
    _pending: list[list[int]] = field(default_factory=list)


@contextmanager
def probed(pipeline: TranslationPipeline, probe: RunProbe) -> Iterator[RunProbe]:
    """Time the pipeline's decode + VAD step; record every generate call's lengths and bounds."""
    engine = pipeline.engine
    model = engine.model
    decode_and_segment = pipeline._decode_and_segment
    prepare = engine._prepare
    generate = model.generate
    pad_id = int(model.generation_config.pad_token_id)
    eos_id = int(model.generation_config.eos_token_id)

    def timed_decode_and_segment(source: Path, scratch: Path, ctx: Any) -> Any:
        started = time.perf_counter()
        try:
            return decode_and_segment(source, scratch, ctx)
        finally:
            probe.decode_segment_s += time.perf_counter() - started

    def recording_prepare(task: Task, items: Sequence[Any]) -> Any:
        inputs, lengths = prepare(task, items)
        probe._pending.append(list(lengths))
        return inputs, lengths

    def recording_generate(*args: Any, **kwargs: Any) -> Any:
        output = generate(*args, **kwargs)
        lengths = probe._pending.pop() if probe._pending else []
        generated = output.sequences[:, PREFIX_TOKENS:]
        steps = int(generated.shape[1])
        bounds = [engine.decoding.max_new_tokens_for(n) for n in lengths]
        stop = (generated == pad_id) | (generated == eos_id)
        probe.calls.append(
            CallRecord(
                items=int(generated.shape[0]),
                encoder_lengths=lengths,
                bounds=bounds,
                steps=steps,
                stopped_early=int(stop.any(dim=1).sum()),
            )
        )
        return output

    pipeline._decode_and_segment = timed_decode_and_segment  # type: ignore[method-assign]
    engine._prepare = recording_prepare  # type: ignore[method-assign]
    model.generate = recording_generate
    try:
        yield probe
    finally:
        del pipeline._decode_and_segment
        del engine._prepare
        del model.generate


# ---------------------------------------------------------------------------------------------------------------
# Memory


def _status_kib(*keys: str) -> dict[str, int]:
    """Fields of /proc/self/status in KiB (Linux; empty elsewhere)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in keys:
            found[name] = int(rest.split()[0])
    return found


def ru_maxrss_mib() -> float:
    """Peak RSS of this process since it started (getrusage; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Samples VmRSS, RssAnon and RssFile every ``interval_s`` in a thread and keeps the peaks (MiB)."""

    KEYS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        for key, kib in _status_kib(*self.KEYS).items():
            self.peaks[key] = max(self.peaks.get(key, 0.0), kib / 1024)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def rss_now_mib() -> dict[str, float]:
    return {key: round(kib / 1024, 1) for key, kib in _status_kib(*RssSampler.KEYS).items()}


# ---------------------------------------------------------------------------------------------------------------
# Running


@dataclass
class RunResult:
    task: str
    batch_size: int
    repeat: int
    wall_s: float
    cpu_s: float
    """CPU time of this process during the run (all threads): wall x threads when nothing else competes."""
    rtf: float
    engine_s: float
    decode_segment_s: float
    decode_segment_share: float
    segments: int
    generate_calls: int
    tokens_needed: int
    """Sum over items of their own bound: what one-at-a-time decoding generates."""
    token_slots: int
    """Sum over calls of batch rows x steps: what the batches computed (includes the shorter items' extra)."""
    padding_frames_share: float
    """Share of the encoder frames in the batches that were padding."""
    stopped_early: int
    first_batch_s: float
    """From the start of the job to the end of its first batch (decode, VAD, first batch)."""
    load_average: list[float]
    rss_after_mib: float
    rss_when_translation_starts_mib: dict[str, float]
    """VmRSS / RssAnon / RssFile at the first progress report: audio decoded, segments cut and sliced."""
    batch_s: list[float] = field(default_factory=list)


def run_job(
    pipeline: TranslationPipeline,
    storage: LocalStorage,
    key: str,
    task: Task,
    audio: LongAudio,
    *,
    batch_size: int,
    repeat: int,
) -> tuple[RunResult, dict[str, Any]]:
    pipeline.scheduler.options = dataclasses.replace(pipeline.scheduler.options, batch_size=batch_size)
    message = JobMessage(
        job_id=uuid.uuid4().hex, task=task, tgt_lang=TGT_LANG, input_key=key, output_format="wav", speaker_id=None
    )
    probe = RunProbe()
    label = f"{task.value} batch {batch_size} (repeat {repeat + 1})"
    started = time.perf_counter()
    last_print = [started]

    def on_progress(done: int, total: int) -> None:
        now = time.perf_counter()
        probe.progress.append((now - started, done, total))
        if not probe.rss_at_first_progress:
            probe.rss_at_first_progress = rss_now_mib()
        if done and (now - last_print[0] > 30 or done == total or len(probe.progress) == 2):
            last_print[0] = now
            elapsed = now - started
            # Longest segments come first: the estimate is an upper bound early on.
            eta = elapsed / done * (total - done)
            progress(f"  {label}: {done}/{total} segments in {elapsed:.1f} s (at most ~{eta:.0f} s left)")

    def checkpoint() -> None:
        return None

    gc.collect()
    load_before = os.getloadavg()
    cpu_started = time.process_time()
    with probed(pipeline, probe):
        result = pipeline.run(message, JobContext(on_progress, checkpoint))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    load_after = os.getloadavg()
    storage.delete_prefix(f"jobs/{message.job_id}/")

    segments = len(result["segments"])
    slots = sum(c.items * c.steps for c in probe.calls)
    needed = sum(sum(c.bounds) for c in probe.calls)
    frames = sum(len(c.encoder_lengths) * max(c.encoder_lengths) for c in probe.calls if c.encoder_lengths)
    real = sum(sum(c.encoder_lengths) for c in probe.calls)
    times = [t for t, done, _ in probe.progress if done]
    batch_s = [round(b - a, 4) for a, b in zip([probe.progress[0][0], *times[:-1]], times, strict=True)]
    run = RunResult(
        task=task.value,
        batch_size=batch_size,
        repeat=repeat,
        wall_s=round(wall, 3),
        cpu_s=round(cpu, 3),
        rtf=round(wall / audio.duration_s, 5),
        engine_s=float(result["engine_s"]),
        decode_segment_s=round(probe.decode_segment_s, 3),
        decode_segment_share=round(probe.decode_segment_s / wall, 5),
        segments=segments,
        generate_calls=len(probe.calls),
        tokens_needed=needed,
        token_slots=slots,
        padding_frames_share=round(1 - real / frames, 4) if frames else 0.0,
        stopped_early=sum(c.stopped_early for c in probe.calls),
        first_batch_s=round(times[0], 3) if times else 0.0,
        load_average=[round(load_before[0], 2), round(load_after[0], 2)],
        rss_after_mib=round(ru_maxrss_mib(), 1),
        rss_when_translation_starts_mib=probe.rss_at_first_progress,
        batch_s=batch_s,
    )
    progress(
        f"{label}: {wall:.1f} s (CPU {cpu:.1f} s) for {audio.duration_s / 60:.1f} min (RTF {run.rtf:.4f}), "
        f"{segments} segments, {len(probe.calls)} generate calls, decode+VAD {probe.decode_segment_s:.2f} s "
        f"({100 * run.decode_segment_share:.2f} %), tokens needed {needed}, computed {slots}"
    )
    if run.stopped_early:
        progress(f"WARNING: {run.stopped_early} items stopped before their bound: output lengths are not forced")
    return run, result


def time_vad_alone(segmenter: SpeechSegmenter, flac: Path) -> dict[str, float]:
    """Decode the file to in-memory blocks (timed), then run the VAD alone on them (timed): 10-minute files only."""
    started = time.perf_counter()
    blocks = list(iter_decoded_blocks(flac, block_s=DECODE_BLOCK_S))
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    segments = segmenter.segment(blocks, sample_rate=SAMPLE_RATE)
    vad_s = time.perf_counter() - started
    return {"decode_s": round(decode_s, 3), "vad_s": round(vad_s, 3), "segments": len(segments)}


def load_engine(args: argparse.Namespace, decoding: DecodingOptions, threads: int) -> tuple[TranslationEngine, dict]:
    if args.model == "full":
        folder: Path = args.full_dir.resolve()
        if not (folder / "config.json").is_file():
            raise SystemExit(
                f"{folder} holds no model: build it first with `.venv/bin/python bench/engine.py --full-size`"
            )
        source, name, dtype = str(folder), "full-size SeamlessM4T v2 architecture, random weights", args.dtype or "bf16"
    else:
        source, name, dtype = "tiny", "tiny random SeamlessM4T v2 (tests/demos)", args.dtype or "fp32"
    started = time.perf_counter()
    engine = TranslationEngine.load(
        source, device="cpu", dtype=dtype, num_threads=threads, decoding=decoding, cache_dir=TINY_CACHE_DIR
    )
    load_s = time.perf_counter() - started
    parameters = sum(p.numel() for p in engine.model.parameters())
    progress(f"loaded {name} ({parameters / 1e6:.0f} M parameters, {dtype}) in {load_s:.1f} s")
    return engine, {
        "name": name,
        "source": source if args.model == "full" else "tiny (data/models)",
        "dtype": dtype,
        "parameters": parameters,
        "load_s": round(load_s, 1),
    }


def warm_up(engine: TranslationEngine, segmenter: SpeechSegmenter, tasks: Sequence[Task]) -> None:
    clip = decode_audio(DATA / CLIPS[0])
    segmenter.segment_array(clip)
    for task in tasks:
        started = time.perf_counter()
        engine.translate(task, [SpeechItem(clip)], tgt_lang=TGT_LANG)
        progress(
            f"  {task.value} warm-up (one {len(clip) / SAMPLE_RATE:.1f} s clip): {time.perf_counter() - started:.2f} s"
        )


def summarise(runs: Sequence[RunResult], batch_sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Per task: median wall time per batch size, and the speedup of each batch size over the last one."""
    rows = []
    for task in dict.fromkeys(r.task for r in runs):
        medians = {
            size: statistics.median(r.wall_s for r in runs if r.task == task and r.batch_size == size)
            for size in batch_sizes
        }
        cpu = {
            size: statistics.median(r.cpu_s for r in runs if r.task == task and r.batch_size == size)
            for size in batch_sizes
        }
        base = batch_sizes[-1]
        rows.append(
            {
                "task": task,
                "median_wall_s": {f"b{size}": round(value, 3) for size, value in medians.items()},
                "speedup_over": f"b{base}",
                "speedup": {f"b{size}": round(medians[base] / value, 3) for size, value in medians.items()},
                "median_cpu_s": {f"b{size}": round(value, 3) for size, value in cpu.items()},
                "cpu_speedup": {f"b{size}": round(cpu[base] / value, 3) for size, value in cpu.items()},
                "max_decode_segment_share": max(r.decode_segment_share for r in runs if r.task == task),
            }
        )
    return rows


def run_compare(args: argparse.Namespace, decoding: DecodingOptions, threads: int) -> dict[str, Any]:
    tasks = [Task(t) for t in args.tasks]
    machine = machine_info(threads)
    engine, model = load_engine(args, decoding, threads)
    segmenter = SpeechSegmenter()
    rss_after_load = ru_maxrss_mib()
    warm_up(engine, segmenter, tasks)
    runs: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="m4t-bench-long-") as tmp:
        folder = Path(tmp)
        audio = write_long_flac(folder / "long.flac", args.minutes * 60, args.pause_s)
        progress(
            f"built {audio.duration_s / 60:.1f} min of audio: {audio.clips} clips, {audio.speech_s:.0f} s of speech, "
            f"{audio.pause_s} s pauses, FLAC {audio.flac_bytes / MIB:.1f} MiB"
        )
        storage = LocalStorage(folder / "storage")
        key = input_key("bench", "long.flac")
        with audio.path.open("rb") as file:
            storage.put_file(key, file, audio.flac_bytes, content_type="audio/flac")
        scheduler = BatchScheduler(engine, SchedulerOptions(wait_s=0)).start()
        pipeline = TranslationPipeline(engine, scheduler, storage, [segmenter], PipelineOptions())
        for repeat in range(args.repeats):
            for task in tasks:
                for size in args.batch_sizes:
                    run, _ = run_job(pipeline, storage, key, task, audio, batch_size=size, repeat=repeat)
                    runs.append(run)
        vad = time_vad_alone(segmenter, audio.path)
    batched = args.batch_sizes[0]
    total = statistics.median(r.wall_s for r in runs if r.batch_size == batched)
    vad[f"vad_share_of_median_b{batched}_run"] = round(vad["vad_s"] / total, 5)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "mode": "compare",
        "command": _command(),
        "model": model,
        "machine": machine,
        "audio": _audio_json(audio),
        "decoding": _decoding_json(decoding),
        "settings": {
            "tasks": [t.value for t in tasks],
            "batch_sizes": list(args.batch_sizes),
            "repeats": args.repeats,
            "threads": threads,
            "tgt_lang": TGT_LANG,
            "segmenter": "SpeechSegmenter() defaults (max 20 s)",
        },
        "summary": summarise(runs, args.batch_sizes),
        "vad_alone": vad,
        "memory": {
            "ru_maxrss_after_load_mib": round(rss_after_load, 1),
            "ru_maxrss_end_mib": round(ru_maxrss_mib(), 1),
        },
        "runs": [asdict(r) for r in runs],
    }


def run_memory(args: argparse.Namespace, decoding: DecodingOptions, threads: int) -> dict[str, Any]:
    if args.model != "tiny":
        raise SystemExit("--memory-2h runs the tiny model only")
    machine = machine_info(threads)
    engine, model = load_engine(args, decoding, threads)
    segmenter = SpeechSegmenter()
    warm_up(engine, segmenter, [Task.S2TT])
    with tempfile.TemporaryDirectory(prefix="m4t-bench-2h-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        audio = write_long_flac(folder / "long.flac", args.hours * 3600, args.pause_s)
        build_s = time.perf_counter() - started
        progress(
            f"built {audio.duration_s / 3600:.2f} h of audio in {build_s:.0f} s: {audio.clips} clips, FLAC "
            f"{audio.flac_bytes / MIB:.1f} MiB"
        )
        storage = LocalStorage(folder / "storage")
        key = input_key("bench", "long.flac")
        with audio.path.open("rb") as file:
            storage.put_file(key, file, audio.flac_bytes, content_type="audio/flac")
        audio.path.unlink()
        scheduler = BatchScheduler(engine, SchedulerOptions(wait_s=0)).start()
        pipeline = TranslationPipeline(engine, scheduler, storage, [segmenter], PipelineOptions())
        gc.collect()
        before = ru_maxrss_mib()
        rss_before = rss_now_mib()
        with RssSampler() as sampler:
            run, result = run_job(pipeline, storage, key, Task.S2TT, audio, batch_size=args.batch_sizes[0], repeat=0)
        after = ru_maxrss_mib()
        text_chars = len(result["text"])
        del result
    float32_mib = audio.duration_s * SAMPLE_RATE * 4 / MIB
    memory = {
        "ru_maxrss_before_mib": round(before, 1),
        "ru_maxrss_after_mib": round(after, 1),
        "job_added_mib": round(after - before, 1),
        "rss_before_mib": rss_before,
        "sampled_peaks_during_job_mib": {k: round(v, 1) for k, v in sampler.peaks.items()},
        "whole_audio_float32_mib": round(float32_mib, 1),
        "speech_float32_mib": round(audio.speech_s * SAMPLE_RATE * 4 / MIB, 1),
    }
    progress(
        f"peak RSS {before:.0f} MiB before the job, {after:.0f} MiB after (+{after - before:.0f} MiB); "
        f"2 h of float32 audio would be {float32_mib:.0f} MiB"
    )
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "mode": "memory-2h",
        "command": _command(),
        "model": model,
        "machine": machine,
        "audio": {**_audio_json(audio), "build_s": round(build_s, 1)},
        "decoding": _decoding_json(decoding),
        "settings": {"tasks": ["s2tt"], "batch_sizes": [args.batch_sizes[0]], "threads": threads, "tgt_lang": TGT_LANG},
        "memory": memory,
        "result_text_chars": text_chars,
        "runs": [asdict(run)],
    }


# ---------------------------------------------------------------------------------------------------------------
# Machine and reporting


def _audio_json(audio: LongAudio) -> dict[str, Any]:
    return {
        "duration_s": round(audio.duration_s, 3),
        "clips": audio.clips,
        "speech_s": audio.speech_s,
        "pause_s": audio.pause_s,
        "flac_mib": round(audio.flac_bytes / MIB, 2),
        "source": f"tests/data/{{{','.join(c.removesuffix('.ogg') for c in CLIPS)}}}.ogg in turn",
    }


def _decoding_json(decoding: DecodingOptions) -> dict[str, Any]:
    return {
        **asdict(decoding),
        "tokens_per_item": f"ceil({decoding.max_len_a} * encoder_length) + {decoding.max_len_b}, "
        "encoder_length = ceil(feature_frames / 8) = 6.25 per second of audio",
        "tokens_per_audio_second": round(decoding.max_len_a * 6.25, 3),
        "forced": "random weights never emit </s>: every item generates exactly its bound",
    }


def _command() -> str:
    executable = Path(sys.executable)
    if executable.is_relative_to(REPO):
        executable = executable.relative_to(REPO)
    return " ".join([str(executable) if executable.parts[0] == ".venv" else executable.name, *sys.argv])


def _decoding_line(report: dict[str, Any]) -> str:
    d = report["decoding"]
    return (
        f"Decoding: {d['text_num_beams']} beam, forced length ceil({d['max_len_a']} x encoder frames) + "
        f"{d['max_len_b']} tokens per segment (~{d['tokens_per_audio_second']} tokens per second of audio + "
        f"{d['max_len_b']}), target {TGT_LANG}."
    )


def _machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    return (
        f"Machine: {m['cpu']}, {m['cpu_count']} CPUs ({m['usable_cpus']} usable), {m['memory_gib']} GiB; "
        f"torch {m['torch']} ({m['torch_threads']} threads), transformers {m['transformers']}, Python {m['python']}; "
        f"nice {m['niceness']}; load average {m['load_average_start']} at start, {m.get('load_average_end')} at end."
    )


def _rss(values: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.0f} MiB" for key, value in values.items()) or "n/a"


def markdown(report: dict[str, Any]) -> str:
    model, audio = report["model"], report["audio"]
    head = [
        f"`{report['command']}`",
        "",
        f"Model: {model['name']} ({model['parameters'] / 1e6:.0f} M parameters, {model['dtype']}).",
        f"Audio: {audio['duration_s'] / 60:.1f} min, {audio['clips']} clips ({audio['speech_s']:.0f} s of speech) "
        f"with {audio['pause_s']} s pauses, FLAC {audio['flac_mib']} MiB.",
        _decoding_line(report),
        _machine_line(report),
        "",
    ]
    if report["mode"] == "memory-2h":
        mem, run = report["memory"], report["runs"][0]
        peaks = mem["sampled_peaks_during_job_mib"]
        return "\n".join(
            [
                *head,
                "| audio | segments | batch | wall (s) | RTF | decode+VAD (s) | peak RSS before job (MiB) "
                "| peak RSS after job (MiB) | added (MiB) | sampled peak RssAnon / RssFile (MiB) |",
                "|---|---|---|---|---|---|---|---|---|---|",
                f"| {audio['duration_s'] / 3600:.2f} h | {run['segments']} | {run['batch_size']} | {run['wall_s']:.1f} "
                f"| {run['rtf']:.4f} | {run['decode_segment_s']:.1f} | {mem['ru_maxrss_before_mib']:.0f} "
                f"| {mem['ru_maxrss_after_mib']:.0f} | {mem['job_added_mib']:.0f} "
                f"| {peaks.get('RssAnon', 0):.0f} / {peaks.get('RssFile', 0):.0f} |",
                "",
                f"For scale: the whole audio as float32 is {mem['whole_audio_float32_mib']:.0f} MiB, its speech "
                f"{mem['speech_float32_mib']:.0f} MiB. RSS before the job {_rss(mem['rss_before_mib'])}; when "
                f"translation starts (decoded, segmented, segments sliced) "
                f"{_rss(run['rss_when_translation_starts_mib'])}.",
            ]
        )
    lines = [
        *head,
        "| task | batch | repeat | segments | generate calls | wall (s) | CPU (s) | RTF | engine (s) "
        "| decode+VAD step (s) "
        "| decode+VAD share | tokens needed / computed | padding frames | load avg (start, end) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['task'].upper()} | {r['batch_size']} | {r['repeat'] + 1} | {r['segments']} | {r['generate_calls']} "
            f"| {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['rtf']:.4f} | {r['engine_s']:.1f} "
            f"| {r['decode_segment_s']:.2f} "
            f"| {100 * r['decode_segment_share']:.2f} % | {r['tokens_needed']} / {r['token_slots']} "
            f"| {100 * r['padding_frames_share']:.1f} % | {r['load_average'][0]}, {r['load_average'][1]} |"
        )
    lines.append("")
    for s in report["summary"]:
        walls = ", ".join(f"{k} {v:.1f} s" for k, v in s["median_wall_s"].items())
        speedups = ", ".join(f"{k} {v:.2f}x" for k, v in s["speedup"].items() if k != s["speedup_over"])
        cpu = ", ".join(f"{k} {v:.1f} s" for k, v in s["median_cpu_s"].items())
        cpu_speedups = ", ".join(f"{k} {v:.2f}x" for k, v in s["cpu_speedup"].items() if k != s["speedup_over"])
        lines.append(
            f"- {s['task'].upper()}: median wall {walls}; wall-time speedup over {s['speedup_over']}: {speedups}. "
            f"Median CPU time {cpu}; CPU-time speedup: {cpu_speedups}."
        )
    vad = report["vad_alone"]
    batched = report["settings"]["batch_sizes"][0]
    share = vad[f"vad_share_of_median_b{batched}_run"]
    lines.append(
        f"- VAD alone on the same audio (decoded to memory first in {vad['decode_s']:.2f} s): {vad['vad_s']:.2f} s, "
        f"{100 * share:.2f} % of the median batch-{batched} run ({vad['segments']} segments)."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Main


def _int_list(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers, e.g. 8,1")
    return values


def _task_list(text: str) -> list[str]:
    values = [x.strip().lower() for x in text.split(",") if x.strip()]
    if not values or any(v not in ("s2tt", "s2st") for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of speech-input tasks: s2tt, s2st")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Long audio through the real worker pipeline: batched vs unbatched wall time and real-time "
        "factor, the share of decoding + VAD, and (--memory-2h) the peak memory of a 2-hour job.",
        epilog="Run from the repository root, e.g. `.venv/bin/python bench/long_audio.py --json out.json`.",
    )
    parser.add_argument(
        "--model",
        choices=("tiny", "full"),
        default="tiny",
        help="tiny: the random test model (built into data/models); full: the real architecture with random "
        "weights from --full-dir, as built by `bench/engine.py --full-size` (default: %(default)s)",
    )
    parser.add_argument(
        "--full-dir", type=Path, default=DEFAULT_FULL_SIZE_DIR, help="folder of the full-size model (%(default)s)"
    )
    parser.add_argument(
        "--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="default: bf16 for full, fp32 for tiny"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the audio (default: %(default)s)")
    parser.add_argument(
        "--pause-s", type=float, default=1.5, help="silence between clips, seconds (default: %(default)s)"
    )
    parser.add_argument(
        "--tasks", type=_task_list, default=["s2tt"], help="comma-separated: s2tt, s2st (default: s2tt)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=_int_list,
        default=[8, 1],
        help="pipeline batch sizes to compare, comma-separated; speedups are over the last (default: 8,1)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per task and batch size, interleaved (default: %(default)s)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: all usable cores of this machine)"
    )
    parser.add_argument(
        "--max-len-a",
        type=float,
        default=0.5,
        help="tokens per encoder frame (6.25 frames per second of audio) (default: %(default)s)",
    )
    parser.add_argument("--max-len-b", type=int, default=5, help="tokens added per segment (default: %(default)s)")
    parser.add_argument(
        "--memory-2h",
        action="store_true",
        help="instead: the tiny model, S2TT, batch 8 (the first of --batch-sizes), on a --hours long file; reports "
        "the peak RSS before and after the job and the time",
    )
    parser.add_argument("--hours", type=float, default=2.0, help="length for --memory-2h (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here (`-`: stdout)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.minutes <= 0 or args.hours <= 0 or args.pause_s < 1.0:
        parser.error("--minutes and --hours must be positive, --pause-s at least 1.0 (one segment per clip)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    torch.set_num_threads(threads)
    decoding = DecodingOptions(text_num_beams=1, max_len_a=args.max_len_a, max_len_b=args.max_len_b)
    progress(
        f"decoding: greedy, ceil({decoding.max_len_a} x encoder frames) + {decoding.max_len_b} tokens per segment "
        f"(~{decoding.max_len_a * 6.25:.2f} tokens per second of audio + {decoding.max_len_b}), forced"
    )
    report = run_memory(args, decoding, threads) if args.memory_2h else run_compare(args, decoding, threads)
    print(markdown(report))
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
