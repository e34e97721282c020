"""The inference engine: one resident SeamlessM4T v2 model serving all four tasks, in batches.

Plain Python, no Celery: the worker's task is a thin wrapper around it and tests call it directly.
A batch shares one task, one target language and one speaker (``generate`` takes one of each); items may
have different lengths and, for text input, different source languages.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from shared.errors import EngineOutOfMemory, InferenceFailed, InvalidRequest, M4TError, ModelLoadError
from shared.languages import LanguageSupport
from shared.settings import WorkerSettings
from shared.tasks import Task
from worker.token_logprobs import item_tokens, step_logprobs

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
_EMPTY_TEXT_CRASH = "Kernel size can't be greater than actual input size"
_PREFIX_TOKENS = 2  # generated sequences start with the decoder start token and the target language token
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class TextItem:
    text: str
    src_lang: str


@dataclass(frozen=True)
class SpeechItem:
    waveform: np.ndarray
    """Mono float32 at 16 kHz."""

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / SAMPLE_RATE


Item = TextItem | SpeechItem


@dataclass(frozen=True)
class ItemResult:
    text: str
    """The translated text (for speech output, the intermediate text the speech was made from)."""

    waveform: np.ndarray | None = None
    """Speech output: mono float32 at 16 kHz, trimmed to its true length; None for text output."""

    tokens: tuple[int, ...] = ()
    """Text output: the generated token ids of ``text`` (no language prefix, end token or padding); empty for
    speech output. For clients that show tokens (OpenAI's ``verbose_json`` segments)."""

    avg_logprob: float | None = None
    """Text output: the mean log-probability per generated token, the end token included; None for speech output."""


@dataclass(frozen=True)
class DecodingOptions:
    """Generation settings; defaults follow Meta's ``m4t_predict``."""

    text_num_beams: int = 5
    no_repeat_ngram_size: int = 0
    max_len_a: float = 1.0
    max_len_b: int = 200
    max_new_tokens: int = 1024

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> DecodingOptions:
        return cls(
            text_num_beams=settings.text_num_beams,
            no_repeat_ngram_size=settings.no_repeat_ngram_size,
            max_len_a=settings.max_len_a,
            max_len_b=settings.max_len_b,
            max_new_tokens=settings.max_new_tokens,
        )

    def max_new_tokens_for(self, source_length: int) -> int:
        """``a * source_length + b``, never above the cap: long inputs are not cut at the model's default 256."""
        return max(1, min(self.max_new_tokens, math.ceil(self.max_len_a * source_length) + self.max_len_b))

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"text_num_beams": self.text_num_beams}
        if self.no_repeat_ngram_size:
            kwargs["text_no_repeat_ngram_size"] = self.no_repeat_ngram_size
        return kwargs


@dataclass(frozen=True)
class FaultInjection:
    """Test hooks that make the engine fail like real hardware does (``M4T_FAULT_*``). Never set in production."""

    oom_over_items: int | None = None
    """Raise CUDA out-of-memory for any batch of more items than this."""

    oom_marker: str | None = None
    """Raise CUDA out-of-memory for any batch holding a text item that contains this marker, even alone."""

    crash_marker: str | None = None
    """Kill this process (SIGKILL, like a segfault) when a text item contains this marker."""

    slow_batch_s: float | None = None
    """Sleep this long before every batch, like a slow device."""

    def check(self, items: Sequence[Item]) -> None:
        if self.slow_batch_s:
            time.sleep(self.slow_batch_s)
        if self.crash_marker and any(isinstance(i, TextItem) and self.crash_marker in i.text for i in items):
            log.error("M4T_FAULT_CRASH_MARKER seen: killing this worker (test hook)")
            os.kill(os.getpid(), signal.SIGKILL)
        if self.oom_over_items is not None and len(items) > self.oom_over_items:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected for batches over {self.oom_over_items})")
        if self.oom_marker and any(isinstance(i, TextItem) and self.oom_marker in i.text for i in items):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by M4T_FAULT_OOM_MARKER)")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"M4T_DEVICE={device} but no CUDA device is available to torch")
    return resolved


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX: what oneDNN's bf16 kernels need)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: fp16 on CUDA; on CPU bf16 where the CPU has native bf16, else fp32. Measured on an AVX2-only CPU
    (bench/concurrency.py --full-size, README "Performance"): bf16 there is emulated, and fp32 gives the higher
    batched throughput, the figure that matters under load, and bit-for-bit the checkpoint's own numbers."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return _DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}[dtype]


class TranslationEngine:
    """One SeamlessM4Tv2Model + processor on one device. ``translate`` is safe to call from several threads:
    generate calls are serialised (the tokenizer keeps ``src_lang`` as state and the model switches modality)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str,
        device: torch.device,
        dtype: torch.dtype,
        decoding: DecodingOptions,
        default_speaker_id: int = 0,
        faults: FaultInjection | None = None,
    ) -> None:
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.decoding = decoding
        self.default_speaker_id = default_speaker_id
        self.faults = faults or FaultInjection()
        self.languages = LanguageSupport.from_generation_config(model.generation_config)
        self.num_speakers = int(getattr(model.config, "vocoder_num_spkrs", 1))
        self._lock = threading.Lock()
        self._planning_tokenizer = copy.deepcopy(processor.tokenizer)
        self._planning_lock = threading.Lock()
        # What generate stops on and pads with: where an item's own tokens end.
        eos = model.generation_config.eos_token_id
        self._eos_ids = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self._pad_id: int | None = model.generation_config.pad_token_id

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> TranslationEngine:
        return cls.load(
            settings.model,
            device=settings.device,
            dtype=settings.dtype,
            num_threads=settings.num_threads,
            decoding=DecodingOptions.from_settings(settings),
            default_speaker_id=settings.default_speaker_id,
            cache_dir=settings.model_cache_dir,
            faults=FaultInjection(
                oom_over_items=settings.fault_oom_over_items,
                oom_marker=settings.fault_oom_marker,
                crash_marker=settings.fault_crash_marker,
                slow_batch_s=settings.fault_slow_batch_s,
            ),
        )

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        num_threads: int | None = None,
        decoding: DecodingOptions | None = None,
        default_speaker_id: int = 0,
        cache_dir: Path | None = None,
        faults: FaultInjection | None = None,
    ) -> TranslationEngine:
        """Load the model once, through ``from_pretrained``, whatever the source (hub id, folder, ``tiny``)."""
        from transformers import AutoProcessor, SeamlessM4Tv2Model
        from transformers.utils import logging as hf_logging

        if num_threads:
            torch.set_num_threads(num_threads)
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        source = resolve_model_source(model, cache_dir=cache_dir or Path("data/models"))
        started = time.perf_counter()
        hf_logging.set_verbosity_error()
        try:
            hf_model = SeamlessM4Tv2Model.from_pretrained(source, dtype=torch_dtype)
            processor = AutoProcessor.from_pretrained(source)
        except OSError as exc:
            raise ModelLoadError(_load_failure_message(model, exc)) from exc
        hf_model = cast(Any, hf_model).to(torch_device).eval()
        log.info(
            "loaded %s on %s (%s) in %.1f s",
            model,
            torch_device,
            dtype_name(torch_dtype),
            time.perf_counter() - started,
        )
        return cls(
            hf_model,
            processor,
            model_id=model,
            device=torch_device,
            dtype=torch_dtype,
            decoding=decoding or DecodingOptions(),
            default_speaker_id=default_speaker_id,
            faults=faults,
        )

    def translate(
        self,
        task: Task,
        items: Sequence[Item],
        *,
        tgt_lang: str | Sequence[str],
        speaker_id: int | None = None,
    ) -> list[ItemResult]:
        """Translate a batch of items of one task into one target language (and one voice for speech).

        Text output may take one target language per item (a sequence as long as ``items``): each row then gets
        its own language token as the text decoder's start, which gives the same outputs as per-language calls
        (tested). Speech output takes one target language: the vocoder takes one language and one speaker."""
        if not items:
            return []
        wanted = [tgt_lang] * len(items) if isinstance(tgt_lang, str) else list(tgt_lang)
        if len(wanted) != len(items):
            raise ValueError("one target language per item")
        if task.speech_output and len(set(wanted)) > 1:
            raise InvalidRequest("speech output takes one target language per call")
        src_langs = [item.src_lang if isinstance(item, TextItem) else None for item in items]
        targets = [self.languages.validate(task, src, tgt)[1] for src, tgt in zip(src_langs, wanted, strict=True)]
        speaker = self.default_speaker_id if speaker_id is None else speaker_id
        if task.speech_output and not 0 <= speaker < self.num_speakers:
            raise InvalidRequest(f"speaker_id must be between 0 and {self.num_speakers - 1}")
        inputs, source_lengths = self._prepare(task, items)
        bounds = [self.decoding.max_new_tokens_for(n) for n in source_lengths]
        try:
            with self._lock, torch.inference_mode():
                self.faults.check(items)
                if task.speech_output:
                    return self._generate_speech(inputs, targets[0], speaker, max(bounds))
                return self._generate_text(inputs, targets, max(bounds), per_item=bounds)
        except (InvalidRequest, EngineOutOfMemory):
            raise
        except Exception as exc:
            raise _engine_error(exc) from exc

    def _prepare(self, task: Task, items: Sequence[Item]) -> tuple[dict[str, torch.Tensor], list[int]]:
        if task.speech_input:
            waves = [_speech(item).waveform for item in items]
            if any(len(w) == 0 for w in waves):
                raise InvalidRequest("empty audio cannot be translated")
            features = self.processor(audio=waves, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True)
            mask = features["attention_mask"]
            stride = int(getattr(self.model.config, "adaptor_stride", 1)) if self.model.config.add_adapter else 1
            lengths = [math.ceil(int(n) / stride) for n in mask.sum(dim=1)]
            return {
                "input_features": features["input_features"].to(self.device, self.dtype),
                "attention_mask": mask.to(self.device),
            }, lengths
        texts = [_text(item) for item in items]
        if any(not t.text.strip() for t in texts):
            raise InvalidRequest("empty text cannot be translated")
        tokenizer = self.processor.tokenizer
        encoded = [tokenizer(t.text, src_lang=self._src(t.src_lang)) for t in texts]
        padded = tokenizer.pad(
            {
                "input_ids": [e["input_ids"] for e in encoded],
                "attention_mask": [e["attention_mask"] for e in encoded],
            },
            return_tensors="pt",
        )
        lengths = [len(e["input_ids"]) for e in encoded]
        return {
            "input_ids": padded["input_ids"].to(self.device),
            "attention_mask": padded["attention_mask"].to(self.device),
        }, lengths

    def _src(self, src_lang: str) -> str:
        return self.languages.normalize_text_code(src_lang)

    def _generate_text(
        self,
        inputs: dict[str, torch.Tensor],
        tgt: str | Sequence[str],
        max_new_tokens: int,
        per_item: Sequence[int] = (),
    ) -> list[ItemResult]:
        language: dict[str, Any]
        if isinstance(tgt, str) or len(set(tgt)) == 1:
            language = {"tgt_lang": tgt if isinstance(tgt, str) else tgt[0]}
        else:
            # One language token per row as the text decoder's start (``tgt_lang`` would set one for the batch).
            codes = self.model.generation_config.text_decoder_lang_to_code_id
            language = {"text_decoder_input_ids": torch.tensor([[codes[t]] for t in tgt], device=self.device)}
        output = self.model.generate(
            **inputs,
            **language,
            generate_speech=False,
            max_new_tokens=max_new_tokens,
            **self.decoding.generate_kwargs(),
        )
        # The batch ran to its longest item's bound; hold each item to its own, as if it had run alone
        # (sequences start with the decoder start token and the target language token).
        bounds = per_item or [max_new_tokens] * len(output.sequences)
        sequences = [row[: _PREFIX_TOKENS + bound] for row, bound in zip(output.sequences, bounds, strict=True)]
        logprobs = step_logprobs(output, prefix=_PREFIX_TOKENS)
        results = []
        for row, text, row_logprobs in zip(sequences, self._decode(sequences), logprobs, strict=True):
            scored = item_tokens(
                row[_PREFIX_TOKENS:].tolist(), row_logprobs, eos_ids=self._eos_ids, pad_id=self._pad_id
            )
            results.append(ItemResult(text=text, tokens=scored.tokens, avg_logprob=scored.avg_logprob))
        return results

    def _generate_speech(
        self, inputs: dict[str, torch.Tensor], tgt: str, speaker: int, max_new_tokens: int
    ) -> list[ItemResult]:
        try:
            output = self._speech_call(inputs, tgt, speaker, max_new_tokens)
        except RuntimeError as exc:
            if _EMPTY_TEXT_CRASH not in str(exc):
                raise
            # Too little text to speak (an empty translation, e.g. of silence) crashes the text-to-unit duration
            # predictor for the whole batch: redo the batch item by item, with empty audio for the unspeakable.
            return self._speech_item_by_item(inputs, tgt, speaker, max_new_tokens)
        return self._speech_results(output)

    def _speech_results(self, output: Any) -> list[ItemResult]:
        texts = self._decode(output.sequences)
        lengths = output.waveform_lengths.reshape(-1).tolist()
        results = []
        for row, (text, length) in enumerate(zip(texts, lengths, strict=True)):
            if not text:
                results.append(ItemResult(text="", waveform=np.zeros(0, dtype=np.float32)))
                continue
            wave = output.waveform[row, : int(length)].float().cpu().numpy().astype(np.float32, copy=False)
            results.append(ItemResult(text=text, waveform=wave))
        return results

    def _speech_call(self, inputs: dict[str, torch.Tensor], tgt: str, speaker: int, max_new_tokens: int) -> Any:
        return self.model.generate(
            **inputs,
            tgt_lang=tgt,
            speaker_id=speaker,
            generate_speech=True,
            return_intermediate_token_ids=True,
            max_new_tokens=max_new_tokens,
            **self.decoding.generate_kwargs(),
        )

    def _speech_item_by_item(
        self, inputs: dict[str, torch.Tensor], tgt: str, speaker: int, max_new_tokens: int
    ) -> list[ItemResult]:
        results: list[ItemResult] = []
        for row in range(int(inputs["attention_mask"].shape[0])):
            single = _single_row(inputs, row)
            try:
                output = self._speech_call(single, tgt, speaker, max_new_tokens)
            except RuntimeError as exc:
                if _EMPTY_TEXT_CRASH not in str(exc):
                    raise
                text = self._generate_text(single, tgt, max_new_tokens)[0].text
                results.append(ItemResult(text=text, waveform=np.zeros(0, dtype=np.float32)))
                continue
            results.extend(self._speech_results(output))
        return results

    def _decode(self, sequences: torch.Tensor | Sequence[torch.Tensor]) -> list[str]:
        decoded = self.processor.batch_decode(sequences, skip_special_tokens=True)
        return [text.strip() for text in decoded]

    def count_tokens(self, text: str) -> int:
        """Length of ``text`` in model tokens (without the language and end tokens). Uses a tokenizer of its
        own, so that planning a job (splitting its text) never waits behind a generate call."""
        with self._planning_lock:
            return len(self._planning_tokenizer.tokenize(text))

    def gpu_memory_gib(self) -> tuple[float, float, float] | None:
        """(total, free, used) GiB of this engine's GPU, or None on CPU."""
        if self.device.type != "cuda":
            return None
        free, total = torch.cuda.mem_get_info(self.device)
        gib = 1024**3
        return total / gib, free / gib, (total - free) / gib

    def release_cached_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _single_row(inputs: dict[str, torch.Tensor], row: int) -> dict[str, torch.Tensor]:
    """One item of a padded batch, without its padding (the tokenizer and feature extractor pad on the right)."""
    length = int(inputs["attention_mask"][row].sum())
    return {name: tensor[row : row + 1, :length] for name, tensor in inputs.items()}


def _speech(item: Item) -> SpeechItem:
    if not isinstance(item, SpeechItem):
        raise InvalidRequest("this task takes speech input")
    return item


def _text(item: Item) -> TextItem:
    if not isinstance(item, TextItem):
        raise InvalidRequest("this task takes text input")
    return item


def _engine_error(exc: Exception) -> M4TError:
    """CUDA out-of-memory becomes ``EngineOutOfMemory``; anything else a generic failure (logged here)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return EngineOutOfMemory("the model ran out of memory on this input")
    log.exception("generate failed")
    return InferenceFailed("the model failed on this input")


def resolve_model_source(model: str, *, cache_dir: Path) -> str:
    """A local folder, the tiny model (built once into the cache), or a hub id already cached or reachable."""
    from worker.tiny_model import TINY_MODEL_ID, ensure_tiny_model

    if model == TINY_MODEL_ID:
        folder = ensure_tiny_model(cache_dir)
        log.warning("M4T_MODEL=tiny: a small RANDOM model for demos and tests; its outputs are noise")
        return str(folder)
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} is not a model folder (no config.json in it)")
        return str(path)
    if model.startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {model} does not exist")
    if _hub_cached(model) or _hub_reachable():
        return model
    raise ModelLoadError(_offline_message(model))


def _hub_cached(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "config.json")
    return isinstance(found, str)


def _hub_reachable() -> bool:
    """A quick look, so that a machine without network fails at once instead of retrying for minutes."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        httpx.head(endpoint, timeout=5.0)
    except httpx.HTTPError:
        return False
    return True


def _offline_message(model: str) -> str:
    return (
        f"cannot load model '{model}': it is not in the local Hugging Face cache and the hub cannot be reached. "
        "Point M4T_MODEL at a local checkpoint folder (one saved with save_pretrained, e.g. a downloaded "
        "facebook/seamless-m4t-v2-large), or run with M4T_MODEL=tiny for a no-download demo (random weights)."
    )


def _load_failure_message(model: str, exc: OSError) -> str:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot load model '{model}': {reason}"
