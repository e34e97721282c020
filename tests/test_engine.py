"""The inference engine on the tiny model: all four tasks, batches, audio formats, languages, decoding settings."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from shared.audio import decode_audio
from shared.errors import InvalidAudio, InvalidRequest, UnsupportedLanguage
from shared.tasks import Task
from worker.engine import DecodingOptions, ItemResult, SpeechItem, TextItem, TranslationEngine
from worker.token_logprobs import item_tokens

DATA = Path(__file__).parent / "data"
# Greedy and a fixed output bound (max_len_a 0), so batched and single calls generate the same number of tokens.
FAST = DecodingOptions(text_num_beams=1, max_len_a=0, max_len_b=8)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> TranslationEngine:
    return TranslationEngine.load(str(tiny_model_dir), device="cpu", decoding=FAST)


@pytest.fixture(scope="module")
def speech_fr() -> np.ndarray:
    return decode_audio(DATA / "speech_fr.wav")


def assert_tokens_spell_the_text(engine: TranslationEngine, result: ItemResult) -> None:
    assert result.tokens and all(isinstance(t, int) for t in result.tokens)
    assert engine.processor.decode(list(result.tokens), skip_special_tokens=True).strip() == result.text
    assert result.avg_logprob is not None and np.isfinite(result.avg_logprob) and result.avg_logprob < 0


def test_loads_through_from_pretrained_with_the_real_language_tables(engine: TranslationEngine) -> None:
    assert engine.device.type == "cpu"
    assert engine.dtype == torch.float32
    assert len(engine.languages.text) == 98
    assert len(engine.languages.speech_output) == 36
    assert "tam" in engine.languages.text
    assert "tam" not in engine.languages.speech_output
    assert engine.num_speakers == 200


@pytest.mark.parametrize("task", [Task.T2TT, Task.T2ST])
def test_text_tasks_single_and_batched(engine: TranslationEngine, task: Task) -> None:
    items = [TextItem("Bonjour le monde.", "fra"), TextItem("Une phrase nettement plus longue que la première.", "fra")]
    batched = engine.translate(task, items, tgt_lang="eng")
    singles = [engine.translate(task, [item], tgt_lang="eng")[0] for item in items]
    assert len(batched) == 2
    for got, alone in zip(batched, singles, strict=True):
        assert got.text and got.text == alone.text
        if task.speech_output:
            assert got.waveform is not None and alone.waveform is not None
            assert got.waveform.dtype == np.float32 and got.waveform.ndim == 1
            assert np.isfinite(got.waveform).all()
            # Padded items may get one vocoder unit (320 samples) more than alone (see model-notes.md).
            assert abs(len(got.waveform) - len(alone.waveform)) <= 320
            assert 0 < len(got.waveform) < 16_000 * 10
            assert got.tokens == () and got.avg_logprob is None
        else:
            assert got.waveform is None
            assert_tokens_spell_the_text(engine, got)
            assert got.tokens == alone.tokens
            assert got.avg_logprob == pytest.approx(alone.avg_logprob, abs=1e-4)


@pytest.mark.parametrize("task", [Task.S2TT, Task.S2ST])
def test_speech_tasks_single_and_batched(engine: TranslationEngine, speech_fr: np.ndarray, task: Task) -> None:
    items = [SpeechItem(speech_fr), SpeechItem(speech_fr[: len(speech_fr) // 3])]
    results = engine.translate(task, items, tgt_lang="deu")
    assert len(results) == 2
    assert all(r.text for r in results)
    for r in results:
        if task.speech_output:
            assert r.waveform is not None and np.isfinite(r.waveform).all() and len(r.waveform) > 0
            assert r.tokens == () and r.avg_logprob is None
        else:
            assert_tokens_spell_the_text(engine, r)


def test_outputs_depend_on_input_and_target(engine: TranslationEngine) -> None:
    a = engine.translate(Task.T2TT, [TextItem("Bonjour", "fra")], tgt_lang="eng")[0].text
    b = engine.translate(Task.T2TT, [TextItem("Merci beaucoup", "fra")], tgt_lang="eng")[0].text
    c = engine.translate(Task.T2TT, [TextItem("Bonjour", "fra")], tgt_lang="spa")[0].text
    assert len({a, b, c}) == 3


def test_single_item_equals_a_direct_transformers_generate_call(tiny_model_dir: Path) -> None:
    """With Meta's default decoding (beam 5), nothing is lost between the model and the user."""
    engine = TranslationEngine.load(str(tiny_model_dir), device="cpu", decoding=DecodingOptions(max_len_b=10))
    text = "Le chat dort sur le canapé."
    got = engine.translate(Task.T2ST, [TextItem(text, "fra")], tgt_lang="spa", speaker_id=7)[0]

    inputs = engine.processor(text=text, src_lang="fra", return_tensors="pt")
    max_new_tokens = engine.decoding.max_new_tokens_for(int(inputs["input_ids"].shape[1]))
    with torch.inference_mode():
        direct = engine.model.generate(
            **inputs,
            tgt_lang="spa",
            speaker_id=7,
            return_intermediate_token_ids=True,
            max_new_tokens=max_new_tokens,
            text_num_beams=5,
        )
    direct_text = engine.processor.decode(direct.sequences[0], skip_special_tokens=True).strip()
    direct_wave = direct.waveform[0, : int(direct.waveform_lengths.reshape(-1)[0])].numpy()
    assert got.text == direct_text
    assert got.waveform is not None
    np.testing.assert_array_equal(got.waveform, direct_wave)


def test_batched_text_items_keep_their_own_length_bound(tiny_model_dir: Path) -> None:
    engine = TranslationEngine.load(
        str(tiny_model_dir), device="cpu", decoding=DecodingOptions(text_num_beams=1, max_len_a=1.0, max_len_b=2)
    )
    items = [TextItem("Bonjour.", "fra"), TextItem("Une phrase nettement plus longue que la première.", "fra")]
    batched = engine.translate(Task.T2TT, items, tgt_lang="eng")
    singles = [engine.translate(Task.T2TT, [i], tgt_lang="eng")[0] for i in items]
    assert [r.text for r in batched] == [r.text for r in singles]
    assert [r.tokens for r in batched] == [r.tokens for r in singles]
    assert [r.avg_logprob for r in batched] == pytest.approx([r.avg_logprob for r in singles], abs=1e-4)
    tok = engine.processor.tokenizer
    # The tiny model never stops by itself: each item has exactly its own bound of tokens, the short one too.
    bounds = [engine.decoding.max_new_tokens_for(len(tok(i.text, src_lang="fra")["input_ids"])) for i in items]
    assert [len(r.tokens) for r in batched] == bounds and bounds[0] < bounds[1]


def test_beam_search_tokens_and_avg_logprob_match_transformers_own_scores(tiny_model_dir: Path) -> None:
    """Beam scores come log-softmaxed, one row per beam: the engine's average is transformers' own
    ``compute_transition_scores`` averaged (and, at length penalty 1, the beam's ``sequences_scores``)."""
    decoding = DecodingOptions(text_num_beams=4, max_len_a=0, max_len_b=6)
    engine = TranslationEngine.load(str(tiny_model_dir), device="cpu", decoding=decoding)
    items = [TextItem("Bonjour.", "fra"), TextItem("Une phrase nettement plus longue que la première.", "fra")]
    batched = engine.translate(Task.T2TT, items, tgt_lang="eng")
    alone = engine.translate(Task.T2TT, items[:1], tgt_lang="eng")[0]
    for result in batched:
        assert_tokens_spell_the_text(engine, result)
    assert batched[0].tokens == alone.tokens and len(alone.tokens) == 6
    assert batched[0].avg_logprob == pytest.approx(alone.avg_logprob, abs=1e-4)

    inputs = engine.processor(text=items[0].text, src_lang="fra", return_tensors="pt")
    with torch.inference_mode():
        direct = engine.model.generate(
            **inputs, tgt_lang="eng", generate_speech=False, max_new_tokens=6, text_num_beams=4
        )
    scores = engine.model.compute_transition_scores(direct.sequences, direct.scores, direct.beam_indices)
    assert tuple(direct.sequences[0, 2:].tolist()) == alone.tokens
    assert alone.avg_logprob == pytest.approx(float(scores[0].mean()), abs=1e-5)
    assert alone.avg_logprob == pytest.approx(float(direct.sequences_scores[0]), abs=1e-5)


def test_an_item_ends_at_its_end_token_which_is_scored_and_padding_is_not() -> None:
    """The tiny model never ends by itself, so the end of an item is shown on ids a real model would give."""
    logprobs = torch.tensor([-1.0, -2.0, -3.0, 0.0, 0.0])
    ended = item_tokens([17, 42, 3, 0, 0], logprobs, eos_ids={3}, pad_id=0)
    assert ended.tokens == (17, 42) and ended.avg_logprob == pytest.approx(-2.0)
    assert item_tokens([17, 42], logprobs, eos_ids={3}, pad_id=0).avg_logprob == pytest.approx(-1.5)
    assert item_tokens([3, 0], logprobs, eos_ids={3}, pad_id=0) == item_tokens([3], logprobs[:1], eos_ids={3}, pad_id=0)
    assert item_tokens([0, 0], logprobs, eos_ids={3}, pad_id=0).avg_logprob is None


def test_max_new_tokens_follows_the_input_length(tiny_model_dir: Path) -> None:
    """The tiny model never stops by itself, so its output length is exactly the bound a * n + b."""
    engine = TranslationEngine.load(
        str(tiny_model_dir), device="cpu", decoding=DecodingOptions(text_num_beams=1, max_len_a=1.0, max_len_b=3)
    )
    short, long = "Bonjour.", " ".join(["Bonjour le monde entier."] * 6)
    tok = engine.processor.tokenizer
    for text in (short, long):
        n_in = len(tok(text, src_lang="fra")["input_ids"])
        out = engine.translate(Task.T2TT, [TextItem(text, "fra")], tgt_lang="eng")[0].text
        n_out = len(tok(out, add_special_tokens=False)["input_ids"])
        assert abs(n_out - (n_in + 3)) <= 2, (n_in, n_out)
    capped = DecodingOptions(max_len_a=1.0, max_len_b=200, max_new_tokens=50)
    assert capped.max_new_tokens_for(10_000) == 50


def test_unspeakable_text_gives_empty_audio_not_a_crash(tiny_model_dir: Path) -> None:
    """One generated token leaves nothing for the text-to-unit model (as an empty translation does)."""
    engine = TranslationEngine.load(
        str(tiny_model_dir), device="cpu", decoding=DecodingOptions(text_num_beams=1, max_len_a=0, max_len_b=1)
    )
    results = engine.translate(Task.T2ST, [TextItem("Bonjour", "fra"), TextItem("Salut", "fra")], tgt_lang="eng")
    assert [len(r.waveform) for r in results if r.waveform is not None] == [0, 0]


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "channels"),
    [
        ("WAV", "PCM_16", 16_000, 1),
        ("WAV", "FLOAT", 48_000, 2),
        ("FLAC", "PCM_16", 44_100, 2),
        ("OGG", "VORBIS", 44_100, 1),
        ("OGG", "OPUS", 48_000, 2),
        ("MP3", "MPEG_LAYER_III", 44_100, 2),
        ("WAV", "PCM_16", 8_000, 1),
    ],
)
def test_every_input_format_rate_and_layout_translates(
    engine: TranslationEngine, speech_fr: np.ndarray, fmt: str, subtype: str, rate: int, channels: int
) -> None:
    wave = soxr.resample(speech_fr, 16_000, rate)
    # Speech in the right channel only: a decoder that drops channels would hear silence.
    frames = np.zeros((len(wave), channels), dtype=np.float32)
    frames[:, -1] = wave
    buffer = io.BytesIO()
    sf.write(buffer, frames, rate, format=fmt, subtype=subtype)
    decoded = decode_audio(buffer.getvalue())
    assert abs(len(decoded) / 16_000 - len(speech_fr) / 16_000) < 0.1
    assert float(np.abs(decoded).max()) > 0.05
    result = engine.translate(Task.S2TT, [SpeechItem(decoded)], tgt_lang="eng")[0]
    assert result.text


def test_corrupt_audio_is_a_typed_error() -> None:
    data = (DATA / "speech_fr.wav").read_bytes()
    with pytest.raises(InvalidAudio):
        decode_audio(data[:22] + b"\x00\x00" + data[24:])  # 0 channels (a WAV cut short is just shorter)
    with pytest.raises(InvalidAudio):
        decode_audio(b"")


@pytest.mark.parametrize(
    ("task", "src", "tgt", "field"),
    [
        (Task.T2ST, "fra", "tam", "tgt_lang"),  # text-to-unit id but no vocoder: no speech output
        (Task.S2ST, None, "cmn_Hant", "tgt_lang"),  # text-only language
        (Task.T2TT, "xxx", "eng", "src_lang"),  # the tokenizer would silently use <unk>
        (Task.T2TT, "fra", "kam", "tgt_lang"),  # speech-input-only language
        (Task.S2TT, "qqq", "eng", "src_lang"),
        (Task.T2TT, "", "eng", "src_lang"),
    ],
)
def test_unsupported_languages_are_refused_per_task(
    engine: TranslationEngine, speech_fr: np.ndarray, task: Task, src: str | None, tgt: str, field: str
) -> None:
    item = SpeechItem(speech_fr) if task.speech_input else TextItem("Bonjour", src or "")
    if task.speech_input and src:
        with pytest.raises(UnsupportedLanguage) as caught:
            engine.languages.validate(task, src, tgt)
    else:
        with pytest.raises(UnsupportedLanguage) as caught:
            engine.translate(task, [item], tgt_lang=tgt)
    assert caught.value.details["field"] == field


def test_language_aliases_and_speech_source_are_accepted(engine: TranslationEngine, speech_fr: np.ndarray) -> None:
    assert engine.translate(Task.T2TT, [TextItem("Selamat pagi", "zsm")], tgt_lang="eng")[0].text
    assert engine.translate(Task.T2TT, [TextItem("Good morning", "eng")], tgt_lang="zsm")[0].text
    # Speech input needs no source language, and takes speech-only ones (e.g. Asturian).
    assert engine.languages.validate(Task.S2TT, "ast", "eng") == ("ast", "eng")
    assert engine.translate(Task.S2TT, [SpeechItem(speech_fr)], tgt_lang="eng")[0].text


def test_bad_items_are_typed_errors(engine: TranslationEngine) -> None:
    with pytest.raises(InvalidRequest):
        engine.translate(Task.T2ST, [TextItem("Bonjour", "fra")], tgt_lang="eng", speaker_id=200)
    with pytest.raises(InvalidRequest):
        engine.translate(Task.S2TT, [TextItem("Bonjour", "fra")], tgt_lang="eng")
    with pytest.raises(InvalidRequest):
        engine.translate(Task.S2TT, [SpeechItem(np.zeros(0, dtype=np.float32))], tgt_lang="eng")
    assert engine.translate(Task.T2TT, [], tgt_lang="eng") == []


def test_bf16_runs_on_cpu(tiny_model_dir: Path, speech_fr: np.ndarray) -> None:
    engine = TranslationEngine.load(str(tiny_model_dir), device="cpu", dtype="bf16", decoding=FAST)
    assert engine.dtype == torch.bfloat16
    result = engine.translate(Task.S2ST, [SpeechItem(speech_fr)], tgt_lang="fra")[0]
    assert result.waveform is not None and result.waveform.dtype == np.float32 and np.isfinite(result.waveform).all()
