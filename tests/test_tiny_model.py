"""The tiny SeamlessM4T v2 checkpoint: deterministic, loads like the real one, serves all four tasks."""

from __future__ import annotations

import logging
import threading
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from transformers import AutoProcessor, SeamlessM4Tv2Model

import worker.tiny_model as tiny_model
from shared.languages import CHECKPOINT_T2U_LANGS, CHECKPOINT_TEXT_LANGS, CHECKPOINT_VOCODER_LANGS
from worker.tiny_model import TINY_MODEL_ID, build_tiny_model, ensure_tiny_model

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def model(tiny_dir: Path) -> Any:
    return SeamlessM4Tv2Model.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def processor(tiny_dir: Path) -> Any:
    return AutoProcessor.from_pretrained(tiny_dir)


def _audio(seed: int, seconds: float) -> npt.NDArray[np.float32]:
    """Noise shaped by a tone: mono float32 at 16 kHz, different for every seed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    tone = np.sin(np.arange(n) * rng.uniform(0.02, 0.3))
    samples: npt.NDArray[np.float32] = (0.1 * tone * rng.standard_normal(n)).astype(np.float32)
    return samples


def _text(processor: Any, texts: str | list[str], src_lang: str = "fra") -> Any:
    return processor(text=texts, src_lang=src_lang, return_tensors="pt", padding=True)


def _speech(processor: Any, audios: list[npt.NDArray[np.float32]]) -> Any:
    return processor(audio=audios, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True)


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


# --- building -----------------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tiny_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again")
    assert again == tmp_path / "again"
    first, second = _files(tiny_dir), _files(again)
    assert "model.safetensors" in first
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name


def test_other_seed_gives_other_weights_and_keeps_the_callers_rng(tiny_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    other = build_tiny_model(tmp_path / "seed1", seed=1)
    assert torch.equal(torch.rand(3), expected)
    assert (other / "model.safetensors").read_bytes() != (tiny_dir / "model.safetensors").read_bytes()


def test_folder_is_small(tiny_dir: Path) -> None:
    size = sum(len(data) for data in _files(tiny_dir).values())
    assert size < 10 * 1024 * 1024
    assert TINY_MODEL_ID == "tiny"


# --- loading like the real checkpoint -----------------------------------------------------------------------


def test_loads_through_the_real_code_path(model: Any, processor: Any) -> None:
    assert type(model).__name__ == "SeamlessM4Tv2Model"
    assert type(processor).__name__ == "SeamlessM4TProcessor"
    tokenizer = processor.tokenizer
    specials = ("pad_token_id", "unk_token_id", "bos_token_id", "eos_token_id")
    assert [getattr(tokenizer, name) for name in specials] == [0, 1, 2, 3]
    lang_ids = tokenizer.convert_tokens_to_ids([f"__{code}__" for code in CHECKPOINT_TEXT_LANGS])
    assert len(set(lang_ids)) == 98
    assert tokenizer.unk_token_id not in lang_ids
    assert model.config.vocab_size == len(tokenizer)


def test_config_keeps_the_real_shapes_that_matter(model: Any) -> None:
    config = model.config
    assert config.t2u_variance_predictor_embed_dim == config.hidden_size
    assert config.feature_projection_input_dim == 160
    assert int(np.prod(config.upsample_rates)) == 320
    assert config.sampling_rate == SAMPLE_RATE
    assert config.vocoder_num_spkrs == 200
    assert config.vocoder_num_langs == 36
    assert config.encoder_layerdrop == config.decoder_layerdrop == config.speech_encoder_layerdrop == 0
    assert sum(p.numel() for p in model.parameters()) < 3_000_000


def test_generation_config_has_the_checkpoint_language_tables(model: Any, processor: Any) -> None:
    generation = model.generation_config
    tokenizer = processor.tokenizer
    text = generation.text_decoder_lang_to_code_id
    assert list(text) == list(CHECKPOINT_TEXT_LANGS)
    assert all(text[code] == tokenizer.convert_tokens_to_ids(f"__{code}__") for code in text)
    t2u = generation.t2u_lang_code_to_id
    assert list(t2u) == list(CHECKPOINT_T2U_LANGS)
    assert len(set(t2u.values())) == 38
    assert min(t2u.values()) >= model.config.vocoder_offset + model.config.unit_hifi_gan_vocab_size
    assert max(t2u.values()) < model.config.t2u_vocab_size
    vocoder = generation.vocoder_lang_code_to_id
    assert list(vocoder) == list(CHECKPOINT_VOCODER_LANGS)
    assert sorted(vocoder.values()) == list(range(36))
    id_to_text = {str(i): tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))}
    assert generation.id_to_text == id_to_text
    char_to_id = generation.char_to_id
    assert len(char_to_id) == model.config.char_vocab_size
    assert sorted(char_to_id.values()) == list(range(len(char_to_id)))
    assert {"▁", "a", "é", "中", "न", "ع"} <= char_to_id.keys()


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("fra", "Bonjour le monde, où est la gare ? Je voudrais un café."),
        ("cmn", "你好，世界。今天天气很好。"),
        ("hin", "नमस्ते दुनिया, आप कैसे हैं?"),
        ("arb", "مرحبا بالعالم، كيف حالك؟"),
        ("rus", "Привет, как дела?"),
        ("jpn", "こんにちは世界"),
        ("kor", "안녕하세요 세계"),
        ("tha", "สวัสดีครับ"),
        ("vie", "Xin chào thế giới"),
        ("amh", "ሰላም ዓለም"),
    ],
)
def test_text_tokenises_to_real_pieces(processor: Any, lang: str, text: str) -> None:
    tokenizer = processor.tokenizer
    ids = _text(processor, text, src_lang=lang)["input_ids"][0].tolist()
    assert ids[0] == tokenizer.convert_tokens_to_ids(f"__{lang}__")
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFKC", text)


# --- the four tasks -----------------------------------------------------------------------------------------


def _check_speech(output: Any, batch: int) -> None:
    waveform, lengths = output.waveform, output.waveform_lengths.reshape(-1)
    assert waveform.shape[0] == lengths.shape[0] == batch
    assert torch.isfinite(waveform).all()
    assert (lengths > 0).all()
    assert (lengths <= waveform.shape[1] + 320).all()
    assert waveform.shape[1] <= 8 * SAMPLE_RATE


@pytest.mark.parametrize("task", ["t2tt", "s2tt", "t2st", "s2st"])
def test_four_tasks_through_one_model(model: Any, processor: Any, task: str) -> None:
    speech_in, speech_out = task.startswith("s"), task.endswith("st")
    inputs = _speech(processor, [_audio(0, 2.0)]) if speech_in else _text(processor, "Bonjour le monde")
    output = model.generate(
        **inputs,
        tgt_lang="eng",
        generate_speech=speech_out,
        max_new_tokens=30,
        **({"return_intermediate_token_ids": True} if speech_out else {}),
    )
    # decoder start (</s>), __eng__, then 30 tokens: random weights never stop by themselves
    assert output.sequences.shape == (1, 32)
    assert output.sequences[0, 1] == model.generation_config.text_decoder_lang_to_code_id["eng"]
    assert processor.tokenizer.decode(output.sequences[0], skip_special_tokens=True).strip()
    if speech_out:
        _check_speech(output, 1)
        units = output.unit_sequences
        offset = model.config.vocoder_offset
        assert ((units == model.config.t2u_pad_token_id) | (units >= offset)).all()
        assert (units < offset + model.config.unit_hifi_gan_vocab_size).all()


def test_speech_output_in_every_vocoder_language(model: Any, processor: Any) -> None:
    """Batches of different lengths, every speech language, speakers up to 199, greedy and beam search."""
    texts = ["Bonjour", "Où est la gare ? Je voudrais un billet pour Paris.", "Merci beaucoup"]
    for i, lang in enumerate(CHECKPOINT_VOCODER_LANGS):
        if i % 3 == 2:
            inputs = _speech(processor, [_audio(i, 0.5 + i % 4), _audio(100 + i, 1.5)])
        else:
            inputs = _text(processor, texts[: 1 + i % 3], src_lang=CHECKPOINT_TEXT_LANGS[i])
        output = model.generate(
            **inputs,
            tgt_lang=lang,
            speaker_id=(i * 37) % 200 if i else 199,
            num_beams=5 if i % 2 else 1,
            max_new_tokens=2 + i % 7,
            return_intermediate_token_ids=True,
        )
        _check_speech(output, len(output.sequences))


def test_outputs_depend_on_the_input(model: Any, processor: Any) -> None:
    def text_out(text: str, tgt_lang: str = "eng") -> tuple[int, ...]:
        inputs = _text(processor, text)
        output = model.generate(**inputs, tgt_lang=tgt_lang, generate_speech=False, max_new_tokens=10)
        return tuple(output.sequences[0].tolist()[2:])

    texts = ["Bonjour le monde", "Où est la gare ?", "Je voudrais un café", "Merci", "你好，世界", "नमस्ते"]
    assert len({text_out(text) for text in texts}) >= len(texts) - 1
    assert text_out("Bonjour le monde", "eng") != text_out("Bonjour le monde", "deu")

    speech_outputs = {
        tuple(
            model.generate(
                **_speech(processor, [_audio(seed, 1.0 + seed)]),
                tgt_lang="eng",
                generate_speech=False,
                max_new_tokens=10,
            )
            .sequences[0]
            .tolist()
        )
        for seed in range(3)
    }
    assert len(speech_outputs) >= 2

    inputs = _text(processor, "Bonjour le monde")
    waveforms = [model.generate(**inputs, tgt_lang="eng", speaker_id=s, max_new_tokens=5)[0] for s in (0, 1)]
    assert waveforms[0].shape == waveforms[1].shape
    assert not torch.equal(waveforms[0], waveforms[1])


# --- ensure_tiny_model --------------------------------------------------------------------------------------


def test_ensure_builds_once_and_then_reuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.tiny_model"):
        first = ensure_tiny_model(tmp_path)
    assert first == tmp_path / f"seamless-m4t-v2-tiny-v{tiny_model.TINY_RECIPE_VERSION}"
    assert any("noise" in record.getMessage() for record in caplog.records)
    weights = first / "model.safetensors"
    built_at = weights.stat().st_mtime_ns
    second = ensure_tiny_model(tmp_path)
    assert second == first
    assert weights.stat().st_mtime_ns == built_at
    assert [path.name for path in tmp_path.iterdir()] == [first.name]


def test_ensure_drops_its_copy_when_another_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / tiny_model.TINY_MODEL_DIRNAME
    real_write = tiny_model._write_checkpoint

    winner: list[int] = []

    def write_then_lose_the_race(out_dir: Path, seed: int) -> None:
        real_write(out_dir, seed)
        real_write(tmp_path / "winner", seed)
        (tmp_path / "winner").rename(target)
        winner.append(target.stat().st_ino)

    monkeypatch.setattr(tiny_model, "_write_checkpoint", write_then_lose_the_race)
    assert ensure_tiny_model(tmp_path) == target
    assert winner == [target.stat().st_ino]
    assert [path.name for path in tmp_path.iterdir()] == [target.name]
    assert SeamlessM4Tv2Model.from_pretrained(target).config.vocoder_num_spkrs == 200


def test_ensure_from_concurrent_threads(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(ensure_tiny_model(tmp_path))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [tmp_path / tiny_model.TINY_MODEL_DIRNAME] * 3
    assert [path.name for path in tmp_path.iterdir()] == [tiny_model.TINY_MODEL_DIRNAME]


def test_ensure_refuses_an_incomplete_folder(tmp_path: Path) -> None:
    (tmp_path / tiny_model.TINY_MODEL_DIRNAME).mkdir()
    (tmp_path / tiny_model.TINY_MODEL_DIRNAME / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="not a complete tiny checkpoint"):
        ensure_tiny_model(tmp_path)
