"""Benchmark the inference engine: one-item latency and batched throughput of the four tasks.

Runs ``worker.engine.TranslationEngine`` exactly as the worker does (``TranslationEngine.load`` on a model
folder, then ``translate``), on the tiny test model (default) or, with ``--full-size``, on a model with the real
SeamlessM4T v2 architecture (``SeamlessM4Tv2Config()``, 2.3 B parameters) and random weights. Random weights cost
the same per token as the real ones, so the timings stand in for the real model's; their *outputs* are noise.

The full-size model is built once (fixed seed, about a minute and 12 GiB of memory in a child process, 9.2 GB on
disk) into ``--cache-dir`` and then loaded through the engine's normal path. Its processor is the tiny model's
(token ids < 4100, valid for the 256102-token embedding), its generation config the tiny model's language tables
laid out for the real unit vocabulary (see ``build_full_size_model``).

What is measured, for each task, dtype and beam count (the same item repeated: a text of about 22 tokens or a
French speech clip; every item generates exactly ``--new-tokens`` tokens, checked on every call):

- items/s at batch 1, 4 and 8, on a workload of 8 items: 8 single calls, 2 calls of 4, 1 call of 8, each
  workload run ``--repeats`` times (interleaved: b1, b4, b8, b1, ...). Items/s at batch B is B over the median
  time of one call of B items (8 / workload time when nothing else runs; a stray slow call, e.g. when another
  process takes a core, does not drag the whole workload with it). ``--statistic best`` uses the fastest call
  instead: on a busy shared machine other work only ever adds time (with 2 threads on 2 cores, a process that
  takes one core can make a call 10x slower);
- the latency of one item: the median (or best) of all the single calls (8 per repeat), so items/s at b1 is
  1 / latency;
- the batch-8 speedup: items/s at batch 8 over items/s at batch 1.

One single call per task is run first and not timed (warm-up). The JSON keeps every call's time.

Examples (from the repository root)::

    .venv/bin/python bench/engine.py
    nice -n 19 .venv/bin/python bench/engine.py --full-size --json bench/results/engine-full-size-cpu.json
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/engine.py` from anywhere

from bench.common import GIB, machine_info, progress, write_report
from shared.audio import decode_audio
from shared.tasks import Task
from worker.engine import DecodingOptions, Item, SpeechItem, TextItem, TranslationEngine

REPO = Path(__file__).resolve().parent.parent
SPEECH_FILE = REPO / "tests" / "data" / "speech_fr.wav"
TINY_CACHE_DIR = REPO / "data" / "models"
DEFAULT_FULL_SIZE_DIR = REPO / "data" / "bench-models" / "full-size-random"
# 22 tokens with the tiny model's tokenizer (language token and </s> included).
DEFAULT_TEXT = "Bonjour, le temps est beau ce matin."
SRC_LANG = "fra"
TGT_LANG = "eng"
SAMPLE_RATE = 16_000
WORKLOAD = 8
BATCH_SIZES = (1, 4, 8)
TASKS = (Task.T2TT, Task.S2TT, Task.T2ST, Task.S2ST)
PREFIX_TOKENS = 2  # generated sequences start with the decoder start token and the target language token

FULL_SIZE_SEED = 0
# Bump when build_full_size_model changes what it writes: a cached folder of another recipe is rebuilt.
FULL_SIZE_RECIPE = 1
FULL_SIZE_MARKER = "bench-model.json"
# Text ids the random text decoder must never emit: <pad> (would cut the text-to-unit input short), <unk>, <s>,
# </s> (would stop generation early and break the forced output length).
TEXT_CONTROL_IDS = (0, 1, 2, 3)

log = logging.getLogger("bench.engine")


# ---------------------------------------------------------------------------------------------------------------
# The full-size random-weight model


def _marker(seed: int) -> dict[str, Any]:
    return {"recipe": FULL_SIZE_RECIPE, "seed": seed, "config": "SeamlessM4Tv2Config()"}


def full_size_ready(folder: Path, seed: int) -> bool:
    marker = folder / FULL_SIZE_MARKER
    if not marker.is_file():
        return False
    found = json.loads(marker.read_text())
    return all(found.get(key) == value for key, value in _marker(seed).items())


def full_size_generation_tables(tiny_tables: dict[str, Any], config: Any) -> dict[str, Any]:
    """The tiny model's language and character tables, fitted to the full-size model's vocabularies.

    - ``text_decoder_lang_to_code_id``, ``vocoder_lang_code_to_id``, ``char_to_id``: unchanged (tokenizer ids
      < 4099 < 256102; vocoder languages 0..35 of 36; character ids < 3074 < 10943);
    - ``t2u_lang_code_to_id``: moved to the real unit layout (<s> <pad> </s> <unk>, 10000 units, <mask>, 38 spare
      ids, the 38 languages, one spare id = 10082): 10043..10080 instead of the tiny 1043..1080;
    - ``id_to_text``: extended to every one of the 256102 text ids, like the real table (ids the tiny tokenizer
      does not have get one of its ordinary pieces, in turn). Without it the text-to-unit step reads "None" for
      every unknown id (``str(dict.get(...))``): no crash, but a made-up character sequence.
    """
    from shared.languages import CHECKPOINT_T2U_LANGS
    from worker.tiny_model import T2U_LANG_OFFSET

    tables = {
        key: dict(tiny_tables[key])
        for key in ("text_decoder_lang_to_code_id", "t2u_lang_code_to_id", "vocoder_lang_code_to_id", "char_to_id")
    }
    t2u_offset = config.unit_hifi_gan_vocab_size + 5 + len(CHECKPOINT_T2U_LANGS)
    if t2u_offset + len(CHECKPOINT_T2U_LANGS) + 1 != config.t2u_vocab_size:
        raise RuntimeError(f"unexpected unit layout: t2u_vocab_size {config.t2u_vocab_size}")
    tables["t2u_lang_code_to_id"] = {
        code: int(i) - T2U_LANG_OFFSET + t2u_offset for code, i in tiny_tables["t2u_lang_code_to_id"].items()
    }
    checks = {
        "text_decoder_lang_to_code_id": config.vocab_size,
        "t2u_lang_code_to_id": config.t2u_vocab_size,
        "vocoder_lang_code_to_id": config.vocoder_num_langs,
        "char_to_id": config.char_vocab_size,
    }
    for key, limit in checks.items():
        if max(tables[key].values()) >= limit:
            raise RuntimeError(f"{key} has ids >= {limit}")

    id_to_text = dict(tiny_tables["id_to_text"])
    pieces = [
        text
        for i, text in sorted(id_to_text.items(), key=lambda kv: int(kv[0]))
        if int(i) not in TEXT_CONTROL_IDS and not (text.startswith("__") and text.endswith("__"))
    ]
    known = len(id_to_text)
    for i in range(known, config.vocab_size):
        id_to_text[str(i)] = pieces[(i - known) % len(pieces)]
    tables["id_to_text"] = id_to_text
    return tables


def build_full_size_model(out_dir: Path, *, seed: int, tiny_dir: Path) -> None:
    """Build the real architecture with random weights (fp32) into ``out_dir``, loadable by the engine.

    Besides the generation tables (``full_size_generation_tables``), two things keep random weights usable, as
    in the tiny model (``worker.tiny_model._suppress_rows``, compute unchanged): the text head never emits
    <pad>/<unk>/<s>/</s> (so every item runs to the forced length), and the unit head only emits ids the vocoder
    can embed (with ``vocoder_offset`` 4, control symbols, <mask> and language ids raise IndexError in the
    vocoder's unit embedding).
    """
    from transformers import SeamlessM4Tv2Config, SeamlessM4Tv2Model

    from worker.tiny_model import _suppress_rows

    started = time.perf_counter()
    config = SeamlessM4Tv2Config()
    tiny_tables = json.loads((tiny_dir / "generation_config.json").read_text())
    tables = full_size_generation_tables(tiny_tables, config)
    torch.manual_seed(seed)
    model: Any = SeamlessM4Tv2Model(config).eval()
    log.info("initialised %.0f M parameters in %.0f s", _parameters(model) / 1e6, time.perf_counter() - started)
    with torch.no_grad():
        _suppress_rows(model.text_decoder.layer_norm, model.lm_head.weight, list(TEXT_CONTROL_IDS))
        units = range(config.vocoder_offset, config.vocoder_offset + config.unit_hifi_gan_vocab_size)
        not_units = [i for i in range(config.t2u_vocab_size) if i not in units]
        _suppress_rows(model.t2u_model.model.decoder.layer_norm, model.t2u_model.lm_head.weight, not_units)
    for key, value in tables.items():
        setattr(model.generation_config, key, value)
    model.generation_config._from_model_config = False

    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        del model
        gc.collect()
        # The tiny model's processor: feature extractor, tokenizer (ids < 4099) and its sentencepiece model.
        model_files = {"config.json", "generation_config.json", "model.safetensors"}
        for path in sorted(tiny_dir.iterdir()):
            if path.is_file() and path.name not in model_files:
                shutil.copy2(path, staging / path.name)
        marker = {**_marker(seed), "build_s": round(time.perf_counter() - started, 1)}
        (staging / FULL_SIZE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        staging.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("built %s in %.0f s", out_dir, time.perf_counter() - started)


def ensure_full_size_model(folder: Path, *, seed: int) -> dict[str, Any]:
    """Build the full-size model in a child process if ``folder`` does not hold it; return what the build cost."""
    if full_size_ready(folder, seed):
        return {"built": False}
    from worker.tiny_model import ensure_tiny_model

    tiny_dir = ensure_tiny_model(TINY_CACHE_DIR)
    folder.parent.mkdir(parents=True, exist_ok=True)
    progress(f"building the full-size random model into {folder} (about a minute, 12 GiB of memory, 9.2 GB)")
    started = time.perf_counter()
    # A child process, so that the build's 12 GiB peak does not count in this process's peak RSS.
    command = [sys.executable, str(Path(__file__).resolve()), "--build-only", str(folder), "--seed", str(seed)]
    subprocess.run([*command, "--tiny-dir", str(tiny_dir)], check=True)
    return {
        "built": True,
        "build_s": round(time.perf_counter() - started, 1),
        "build_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / GIB, 2),
    }


# ---------------------------------------------------------------------------------------------------------------
# Measuring


@dataclass
class CallRecord:
    new_tokens: list[int]
    """Generated tokens per item (neither <pad> nor </s>), after the two prefix tokens."""
    audio_s: list[float]
    """Output audio per item (speech output only)."""


class GenerateProbe:
    """Records what every ``model.generate`` call made, through the engine's own ``translate``."""

    def __init__(self, engine: TranslationEngine) -> None:
        self.model = engine.model
        self.pad_id = int(engine.model.generation_config.pad_token_id)
        self.eos_id = int(engine.model.generation_config.eos_token_id)
        self.records: list[CallRecord] = []

    @contextmanager
    def attached(self) -> Iterator[GenerateProbe]:
        original = self.model.generate

        def recording(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            self._record(output)
            return output

        self.model.generate = recording  # an instance attribute shadows the method
        try:
            yield self
        finally:
            del self.model.generate

    def _record(self, output: Any) -> None:
        generated = output.sequences[:, PREFIX_TOKENS:]
        real = (generated != self.pad_id) & (generated != self.eos_id)
        audio: list[float] = []
        if getattr(output, "waveform_lengths", None) is not None:
            audio = [int(n) / SAMPLE_RATE for n in output.waveform_lengths.reshape(-1).tolist()]
        self.records.append(CallRecord(new_tokens=real.sum(dim=1).tolist(), audio_s=audio))


@dataclass
class TaskResult:
    task: str
    dtype: str
    beams: int
    input: str
    statistic: str
    latency_s: float
    items_per_s: dict[str, float]
    b8_speedup: float
    new_tokens_per_item: list[int]
    output_audio_s_per_item: float | None
    latency_s_by_statistic: dict[str, float] = field(default_factory=dict)
    items_per_s_by_statistic: dict[str, dict[str, float]] = field(default_factory=dict)
    call_s: dict[str, list[float]] = field(default_factory=dict)
    """Every timed call, per batch size."""
    workload_s: dict[str, list[float]] = field(default_factory=dict)
    gpu_peak_gib: dict[str, float] = field(default_factory=dict)
    """Peak GPU memory allocated during the calls of each batch size (CUDA only)."""


def _items(task: Task, text: str, speech: np.ndarray, workload: int) -> list[Item]:
    item: Item = SpeechItem(speech) if task.speech_input else TextItem(text, SRC_LANG)
    return [item] * workload


def _timed(engine: TranslationEngine, task: Task, items: Sequence[Item]) -> float:
    started = time.perf_counter()
    results = engine.translate(task, items, tgt_lang=TGT_LANG)
    elapsed = time.perf_counter() - started
    if len(results) != len(items):
        raise RuntimeError(f"{task}: {len(items)} items in, {len(results)} results out")
    return elapsed


def _best(times: Sequence[float]) -> float:
    return min(times)


def _median(times: Sequence[float]) -> float:
    return statistics.median(times)


STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {"median": _median, "best": _best}


def measure_task(
    engine: TranslationEngine,
    task: Task,
    *,
    text: str,
    speech: np.ndarray,
    beams: int,
    repeats: int,
    statistic: str = "median",
    batch_sizes: Sequence[int] = BATCH_SIZES,
) -> TaskResult:
    workload = max(WORKLOAD, *batch_sizes)
    items = _items(task, text, speech, workload)
    probe = GenerateProbe(engine)
    call_s: dict[int, list[float]] = {size: [] for size in batch_sizes}
    workload_s: dict[int, list[float]] = {size: [] for size in batch_sizes}
    gpu_peak_gib: dict[str, float] = {}
    on_gpu = engine.device.type == "cuda"
    with probe.attached():
        progress(f"  {task} warm-up: {_timed(engine, task, items[:1]):.2f} s")
        for repeat in range(repeats):
            for size in batch_sizes:
                if on_gpu:
                    torch.cuda.reset_peak_memory_stats(engine.device)
                # every size runs max(size, WORKLOAD) items: batch 1 and 4 a WORKLOAD, larger sizes one call each
                calls = [_timed(engine, task, items[i : i + size]) for i in range(0, max(size, WORKLOAD), size)]
                if on_gpu:
                    peak = torch.cuda.max_memory_allocated(engine.device) / GIB
                    gpu_peak_gib[f"b{size}"] = round(max(peak, gpu_peak_gib.get(f"b{size}", 0.0)), 2)
                call_s[size].extend(calls)
                workload_s[size].append(sum(calls))
                progress(
                    f"  {task} repeat {repeat + 1}/{repeats} batch {size}: {sum(calls):.2f} s for "
                    f"{max(size, WORKLOAD)} items"
                    f" ({', '.join(f'{c:.2f}' for c in calls)})"
                )
    by_statistic = {
        name: {f"b{size}": size / pick(times) for size, times in call_s.items()} for name, pick in STATISTICS.items()
    }
    items_per_s = by_statistic[statistic]
    tokens = sorted({n for record in probe.records for n in record.new_tokens})
    audio = [s for record in probe.records for s in record.audio_s]
    return TaskResult(
        task=task.value,
        dtype=_dtype_name(engine.dtype),
        beams=beams,
        input=_describe_input(engine, task, text, speech),
        statistic=statistic,
        latency_s=STATISTICS[statistic](call_s[1]),
        items_per_s=items_per_s,
        b8_speedup=items_per_s[f"b{8 if 8 in call_s else max(call_s)}"] / items_per_s["b1"],
        new_tokens_per_item=tokens,
        output_audio_s_per_item=statistics.mean(audio) if audio else None,
        latency_s_by_statistic={name: pick(call_s[1]) for name, pick in STATISTICS.items()},
        items_per_s_by_statistic=by_statistic,
        call_s={f"b{size}": [round(x, 4) for x in times] for size, times in call_s.items()},
        workload_s={f"b{size}": [round(x, 4) for x in times] for size, times in workload_s.items()},
        gpu_peak_gib=gpu_peak_gib,
    )


def _describe_input(engine: TranslationEngine, task: Task, text: str, speech: np.ndarray) -> str:
    if task.speech_input:
        return f"{len(speech) / SAMPLE_RATE:.1f} s audio"
    tokens = engine.processor.tokenizer(text, src_lang=SRC_LANG)["input_ids"]
    return f"{len(tokens)} tokens"


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Memory and machine


def _proc_status_gib(key: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc (Linux), in GiB."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024 / GIB
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM (Linux: writing 5 to clear_refs), so that it then measures the peak of what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_gib() -> float:
    """Peak RSS of this process (getrusage: KiB on Linux) since it started or since the last ``_reset_peak_rss``
    (on Linux ``ru_maxrss`` reads the same high-water mark as VmHWM, which clear_refs resets)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


# ---------------------------------------------------------------------------------------------------------------
# Reporting


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    settings = report["settings"]
    lines = [
        f"### Engine benchmark: {report['model']['name']}",
        "",
        f"Machine: {machine['cpu']}; {machine['cpu_count']} CPUs ({machine['usable_cpus']} usable), "
        f"{machine['memory_gib']} GiB; torch {machine['torch']} (CPU capability "
        f"{machine.get('torch_cpu_capability')}) with {machine['torch_threads']} threads, "
        f"transformers {machine['transformers']}, Python {machine['python']}; "
        f"load average {machine['load_average_start']} at start, {machine.get('load_average_end')} at end.",
        f"Decoding: exactly {settings['new_tokens']} new tokens per item, {TGT_LANG} target. "
        f"{settings['repeats']} repeat(s) of max(B, {WORKLOAD}) items per batch size B; items/s "
        f"at batch B = B / {settings['statistic']} time of a B-item call; latency = {settings['statistic']} single "
        "call.",
        "",
    ]
    sizes = settings["batch_sizes"]
    gpu = any(r.get("gpu_peak_gib") for r in report["results"])
    speedup = "b8" if 8 in sizes else f"b{max(sizes)}"
    header = ["task", "dtype", "beams", "input", "1-item latency (s)", *(f"items/s b{b}" for b in sizes)]
    header += [f"{speedup} speedup", "new tokens/item", "out audio (s/item)"]
    header += [f"GPU peak GiB b{b}" for b in sizes] if gpu else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in report["results"]:
        ips = r["items_per_s"]
        audio = "" if r["output_audio_s_per_item"] is None else f"{r['output_audio_s_per_item']:.2f}"
        tokens = "/".join(str(n) for n in r["new_tokens_per_item"])
        cells = [r["task"].upper(), r["dtype"], str(r["beams"]), r["input"], f"{r['latency_s']:.3f}"]
        cells += [f"{ips[f'b{b}']:.2f}" for b in sizes]
        cells += [f"{r['b8_speedup']:.2f}x", tokens, audio]
        cells += [str(r.get("gpu_peak_gib", {}).get(f"b{b}", "")) for b in sizes] if gpu else []
        lines.append("| " + " | ".join(cells) + " |")
    memory = report["memory"]
    lines += ["", "Memory (RSS, GiB) and load time: " + "; ".join(f"{k} {v}" for k, v in memory.items()) + "."]
    if report["build"].get("built"):
        build = report["build"]
        lines.append(
            f"Built the model first: {build['build_s']} s, child process peak RSS {build['build_peak_rss_gib']} GiB."
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Latency and batched throughput of the inference engine, per task (T2TT, S2TT, T2ST, S2ST).",
        epilog="Run from the repository root, e.g. `.venv/bin/python bench/engine.py --full-size --json out.json`.",
    )
    parser.add_argument(
        "--full-size",
        action="store_true",
        help="the real architecture (SeamlessM4Tv2Config(), 2.3 B parameters) with random weights, built once "
        "into --cache-dir (9.2 GB; building takes about a minute and 12 GiB of memory)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_FULL_SIZE_DIR,
        help="folder of the full-size random model (default: %(default)s)",
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=("fp32", "bf16", "fp16"),
        help="dtype(s) to load the model in (default: bf16 for --full-size, fp32 for the tiny model)",
    )
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        type=int,
        default=list(BATCH_SIZES),
        help="batch sizes to measure (1 must be among them); batch B runs max(B, 8) items per repeat "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--beams", nargs="+", type=int, default=[1], help="text beam sizes to measure, e.g. `--beams 1 5`"
    )
    parser.add_argument(
        "--tasks", nargs="+", choices=[t.value for t in TASKS], default=[t.value for t in TASKS], help="tasks to run"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="times each 8-item workload is run per batch size; the latency and items/s come from the median "
        "call (8 x REPEATS single calls, 2 x REPEATS calls of 4, REPEATS calls of 8) (default: %(default)s)",
    )
    parser.add_argument(
        "--statistic",
        choices=tuple(STATISTICS),
        default="median",
        help="how calls of one batch size are summarised: their median, or the best (fastest) call, which "
        "suits a shared machine where other work only ever adds time; the JSON holds both (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: all usable cores of this machine)"
    )
    parser.add_argument(
        "--new-tokens", type=int, default=30, help="tokens every item generates (forced) (default: %(default)s)"
    )
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the French text input (default: %(default)r)")
    parser.add_argument(
        "--speech-seconds",
        type=float,
        default=None,
        help="tile or cut the 2.9 s French clip to this length (default: 5.0 for --full-size, the clip as is "
        "for the tiny model)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the engine runs: cpu, cuda or cuda:N (GPU peak memory is reported too) (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=FULL_SIZE_SEED, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here (`-`: stdout)")
    parser.add_argument("--build-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tiny-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if 1 not in args.batch_sizes or any(b < 1 for b in args.batch_sizes):
        parser.error("--batch-sizes must hold 1 (the latency) and nothing below it")
    args.batch_sizes = sorted(set(args.batch_sizes))
    if any(b < 1 for b in args.beams):
        parser.error("--beams must be at least 1")
    return args


def load_speech(seconds: float | None) -> np.ndarray:
    wave = decode_audio(SPEECH_FILE)
    if seconds is None:
        return wave
    samples = round(seconds * SAMPLE_RATE)
    return np.tile(wave, math.ceil(samples / len(wave)))[:samples].astype(np.float32)


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    machine = machine_info(torch.get_num_threads())
    dtypes: list[str] = args.dtype or (["bf16"] if args.full_size else ["fp32"])
    speech_seconds = args.speech_seconds if args.speech_seconds is not None else (5.0 if args.full_size else None)
    speech = load_speech(speech_seconds)
    tasks = [Task(t) for t in args.tasks]

    memory: dict[str, Any] = {}
    build: dict[str, Any] = {}
    peaks: list[float] = []
    if args.full_size:
        folder: Path = args.cache_dir.resolve()
        build = ensure_full_size_model(folder, seed=args.seed)
        model_source, model_name = str(folder), "full-size SeamlessM4T v2 architecture, random weights"
    else:
        model_source, model_name = "tiny", "tiny random SeamlessM4T v2 (tests/demos)"

    results: list[TaskResult] = []
    for dtype in dtypes:
        started = time.perf_counter()
        engine = TranslationEngine.load(
            model_source,
            device=args.device,
            dtype=dtype,
            num_threads=threads,
            cache_dir=TINY_CACHE_DIR,
        )
        load_s = time.perf_counter() - started
        params = _parameters(engine.model)
        memory[f"{dtype}: load_s"] = round(load_s, 1)
        memory[f"{dtype}: rss_after_load_gib"] = _round(_proc_status_gib("VmRSS"))
        peaks.append(_peak_rss_gib())
        memory[f"{dtype}: peak_rss_through_load_gib"] = round(peaks[-1], 2)
        reset = _reset_peak_rss()
        progress(f"loaded {model_name} ({params / 1e6:.0f} M parameters, {dtype}) in {load_s:.1f} s")
        for beams in args.beams:
            engine.decoding = DecodingOptions(
                text_num_beams=beams, max_len_a=0, max_len_b=args.new_tokens, max_new_tokens=args.new_tokens
            )
            for task in tasks:
                result = measure_task(
                    engine,
                    task,
                    text=args.text,
                    speech=speech,
                    beams=beams,
                    repeats=args.repeats,
                    statistic=args.statistic,
                    batch_sizes=args.batch_sizes,
                )
                if result.new_tokens_per_item != [args.new_tokens]:
                    progress(
                        f"WARNING: {task} generated {result.new_tokens_per_item} tokens per item, "
                        f"not exactly {args.new_tokens}: the runs are not comparable"
                    )
                results.append(result)
        peaks.append(_peak_rss_gib())
        if reset:
            memory[f"{dtype}: peak_rss_during_runs_gib"] = round(peaks[-1], 2)
        if args.device.startswith("cuda"):
            memory[f"{dtype}: gpu"] = torch.cuda.get_device_name(engine.device)
            memory[f"{dtype}: gpu_peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(engine.device) / GIB, 2)
            memory[f"{dtype}: gpu_peak_reserved_gib"] = round(torch.cuda.max_memory_reserved(engine.device) / GIB, 2)
            torch.cuda.reset_peak_memory_stats(engine.device)
        del engine
        gc.collect()
    memory["peak_rss_gib"] = round(max(peaks), 2)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "model": {"name": model_name, "source": model_source, "parameters": params},
        "machine": machine,
        "settings": {
            "device": args.device,
            "tasks": [t.value for t in tasks],
            "dtypes": dtypes,
            "beams": args.beams,
            "repeats": args.repeats,
            "statistic": args.statistic,
            "new_tokens": args.new_tokens,
            "workload_items": max(WORKLOAD, *args.batch_sizes),
            "batch_sizes": args.batch_sizes,
            "text": args.text,
            "speech_s": round(len(speech) / SAMPLE_RATE, 2),
            "src_lang": SRC_LANG,
            "tgt_lang": TGT_LANG,
        },
        "build": build,
        "memory": memory,
        "results": [asdict(r) for r in results],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.build_only is not None:
        if args.tiny_dir is None:
            raise SystemExit("--build-only needs --tiny-dir")
        log.setLevel(logging.INFO)
        build_full_size_model(args.build_only.resolve(), seed=args.seed, tiny_dir=args.tiny_dir)
        return 0
    report = run(args)
    print(markdown(report))
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
