"""Long audio and long text end to end: a real worker (tiny model), a real gateway, real Redis, local storage.

Long inputs are built from the committed speech clips with silences of known length at known places, so the
expected segments are known exactly."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from stack import running_stack

from shared.audio import decode_audio

DATA = Path(__file__).parent / "data"
API = "/api/v1"
RATE = 16_000
CLIPS = ["utt_en.ogg", "utt_fr.ogg", "utt_de.ogg", "utt_es.ogg", "utt_hi.ogg", "utt_zh.ogg"]
MAX_AUDIO_S = 700.0
MAX_TEXT_CHARS = 8_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[httpx.Client]:
    settings = {"M4T_BATCH_SIZE": "4", "M4T_MAX_AUDIO_S": str(MAX_AUDIO_S), "M4T_MAX_TEXT_CHARS": str(MAX_TEXT_CHARS)}
    with running_stack(tmp_path_factory.mktemp("long"), tiny_model_dir, **settings) as stack:
        yield stack.http


def clips() -> list[np.ndarray]:
    return [decode_audio(DATA / name) for name in CLIPS]


def build_long_audio(total_s: float, pause_s: float = 1.5) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Clips separated by ``pause_s`` of silence until ``total_s``; returns the audio and where each clip is."""
    pieces, spans, position = [], [], 0
    sources = clips()
    index = 0
    while True:
        clip = sources[index % len(sources)]
        if (position + len(clip)) / RATE > total_s - pause_s:
            break
        spans.append((position / RATE, (position + len(clip)) / RATE))
        pieces += [clip, np.zeros(int(pause_s * RATE), dtype=np.float32)]
        position += len(clip) + int(pause_s * RATE)
        index += 1
    pieces.append(np.zeros(int(total_s * RATE) - position, dtype=np.float32))
    return np.concatenate(pieces), spans


def flac(wave: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def submit_audio(api: httpx.Client, data: bytes, task: str = "s2tt", **fields: str) -> httpx.Response:
    return api.post(
        f"{API}/jobs",
        data={"task": task, "tgt_lang": "eng", **fields},
        files={"audio_file": ("long.flac", data, "audio/flac")},
    )


def wait(api: httpx.Client, location: str, timeout_s: float = 300) -> tuple[dict[str, Any], list[int]]:
    """The finished job, and every distinct progress.done value seen while polling."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(location).json()
        done = job["progress"]["done"]
        if not seen or seen[-1] != done:
            seen.append(done)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job, seen
        time.sleep(0.02)
    raise AssertionError(f"job did not finish: {job}")


CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d{3}) --> (\d\d):(\d\d):(\d\d)[,.](\d{3})")


def parse_cues(body: str) -> list[tuple[float, float, str]]:
    cues = []
    lines = body.splitlines()
    for i, line in enumerate(lines):
        match = CUE.fullmatch(line.strip())
        if match:
            h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
            cues.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000, lines[i + 1]))
    return cues


def test_ten_minutes_of_speech_end_to_end_with_progress_segments_and_subtitles(api: httpx.Client) -> None:
    wave, spans = build_long_audio(600.0)
    response = submit_audio(api, flac(wave))
    assert response.status_code == 202, response.text
    job, progress_seen = wait(api, response.headers["location"])
    assert job["status"] == "succeeded", job["error"]
    segments = job["result"]["segments"]
    assert len(segments) == len(spans)
    assert job["progress"]["total"] == len(spans)
    assert len(progress_seen) >= 3, f"progress never seemed to move: {progress_seen}"
    assert progress_seen == sorted(progress_seen)
    for segment, (start, end) in zip(segments, spans, strict=True):
        assert abs(segment["start_s"] - start) < 0.3
        assert abs(segment["end_s"] - end) < 0.3
        assert segment["text"]
    assert job["result"]["text"]

    srt = api.get(f"{API}/jobs/{job['id']}/subtitles", params={"format": "srt"})
    assert srt.status_code == 200
    assert srt.headers["content-type"].startswith("application/x-subrip")
    vtt = api.get(f"{API}/jobs/{job['id']}/subtitles", params={"format": "vtt"})
    assert vtt.text.startswith("WEBVTT")
    for body in (srt.text, vtt.text):
        cues = parse_cues(body)
        assert len(cues) == len(spans)
        previous_end = 0.0
        for start, end, text in cues:
            assert previous_end <= start < end <= 600.0
            assert text
            previous_end = end
    numbers = [line for line in srt.text.splitlines() if line.isdigit()]
    assert numbers == [str(i) for i in range(1, len(spans) + 1)]


def test_speech_output_keeps_the_pauses_bounded(api: httpx.Client) -> None:
    wave, spans = build_long_audio(40.0, pause_s=3.0)
    response = submit_audio(api, flac(wave), task="s2st")
    job, _ = wait(api, response.headers["location"])
    assert job["status"] == "succeeded", job["error"]
    segments = job["result"]["segments"]
    assert len(segments) == len(spans)
    audio = api.get(job["result"]["audio"]["url"])
    out, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert rate == RATE
    previous_end = 0.0
    for segment in segments:
        start, end = segment["output_start_s"], segment["output_end_s"]
        assert start >= previous_end
        if previous_end:
            assert start - previous_end == pytest.approx(2.0, abs=0.01)  # 3 s source pause, bounded to 2 s
        previous_end = end
    assert len(out) / rate == pytest.approx(previous_end, abs=0.01)


@pytest.mark.parametrize("task", ["s2tt", "s2st"])
@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_audio_without_speech_succeeds_with_nothing(api: httpx.Client, task: str, kind: str) -> None:
    rng = np.random.default_rng(0)
    samples = 30 * RATE
    wave = np.zeros(samples, dtype=np.float32) if kind == "silence" else rng.normal(0, 0.05, samples).astype(np.float32)
    response = submit_audio(api, flac(wave), task=task)
    job, _ = wait(api, response.headers["location"])
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["text"] == ""
    assert job["result"]["segments"] == []
    if task == "s2st":
        assert job["result"]["audio"]["duration_s"] == 0
        assert api.get(job["result"]["audio"]["url"]).status_code == 200


PARAGRAPHS = {
    "fra": [
        " ".join(f"Voici la phrase numéro {i} du paragraphe {p}, qui parle du temps qu'il fait." for i in range(10))
        for p in range(3)
    ],
    "cmn": ["".join(f"这是第{p}段的第{i}句话，今天天气很好。" for i in range(10)) for p in range(3)],
    "hin": [" ".join(f"यह अनुच्छेद {p} का वाक्य {i} है, आज मौसम अच्छा है।" for i in range(10)) for p in range(3)],
}


@pytest.mark.parametrize("lang", sorted(PARAGRAPHS))
def test_a_thirty_sentence_document_keeps_its_paragraphs(api: httpx.Client, lang: str) -> None:
    text = "\n\n".join(PARAGRAPHS[lang])
    response = api.post(f"{API}/jobs", json={"task": "t2tt", "text": text, "src_lang": lang, "tgt_lang": "fra"})
    job, _ = wait(api, response.headers["location"])
    assert job["status"] == "succeeded", job["error"]
    translated = job["result"]["text"]
    assert translated.count("\n\n") == 2
    assert all(part.strip() for part in translated.split("\n\n"))
    assert job["progress"]["total"] >= 3
    assert job["progress"]["done"] == job["progress"]["total"]


def test_a_long_sentence_without_punctuation_is_split(api: httpx.Client) -> None:
    words = ["bonjour", "monde", "voiture", "maison", "soleil", "chat"]
    text = " ".join(words[i % len(words)] for i in range(1000))[:6000]
    assert len(text) == 6000
    response = api.post(f"{API}/jobs", json={"task": "t2st", "text": text, "src_lang": "fra", "tgt_lang": "eng"})
    job, _ = wait(api, response.headers["location"])
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["total"] > 1
    assert job["result"]["audio"]["duration_s"] > 0


def test_limits_exactly_at_and_just_over(api: httpx.Client) -> None:
    at_limit = np.zeros(int(MAX_AUDIO_S * RATE), dtype=np.float32)
    assert submit_audio(api, flac(at_limit)).status_code == 202
    over = np.zeros(int((MAX_AUDIO_S + 0.1) * RATE), dtype=np.float32)
    refused = submit_audio(api, flac(over))
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "audio_too_long"
    body = {"task": "t2tt", "src_lang": "fra", "tgt_lang": "eng"}
    assert api.post(f"{API}/jobs", json={**body, "text": "a" * MAX_TEXT_CHARS}).status_code == 202
    too_long = api.post(f"{API}/jobs", json={**body, "text": "a" * (MAX_TEXT_CHARS + 1)})
    assert too_long.status_code == 413
    assert too_long.json()["error"]["code"] == "payload_too_large"
