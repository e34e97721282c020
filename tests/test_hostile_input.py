"""Hostile input against a real gateway (real HTTP, real Redis, real S3, no worker): every case gets a clear 4xx
in the one error envelope, and leaves nothing behind (no object stored, no job recorded, nothing on the broker
queue). Cases already in ``test_api_errors.py`` are not repeated here.

Unusual but real audio (8 channels, 8 kHz, 192 kHz, exactly the 0.1 s minimum) is accepted, and shown to work end
to end through a real worker on the tiny model. Shorter audio (a 1-sample file) is refused by the gateway with
422 ``invalid_audio``: nothing that short holds speech, so it could only come back as an empty translation; the
worker itself is shown not to crash on a 1-sample file it is handed directly.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import soundfile as sf
import soxr
from services import RedisServer, S3Server
from stack import GatewayProcess, RunningStack, running_stack, stack_env
from watchers import FifoWatch, RecordingServer, hls_playlist

from shared.priority import broker_queue_lists

DATA = Path(__file__).parent / "data"
API = "/api/v1"
MAX_TEXT_CHARS = 1000
MAX_UPLOAD_MB = 4
INFERENCE_QUEUE = "m4t.inference"


# --- the gateway, with no worker --------------------------------------------------------------------------------


@dataclass
class Gateway:
    http: httpx.Client
    redis: redis.Redis
    s3: S3Server
    bucket: str

    def stored_objects(self) -> set[str]:
        from shared.storage import S3Storage

        with S3Storage(self.s3.endpoint, self.s3.access_key, self.s3.secret_key, self.bucket) as storage:
            return set(storage.list_keys("jobs/"))

    def footprint(self) -> tuple[set[str], int, int, int]:
        """What a submission leaves: stored objects, job records, queued jobs (health), broker messages."""
        depth = self.http.get(f"{API}/health").json()["queue_depth"]
        jobs = int(self.redis.zcard("m4t:jobs:index"))
        broker = sum(int(self.redis.llen(name)) for name in broker_queue_lists(INFERENCE_QUEUE))
        return self.stored_objects(), jobs, int(depth), broker


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("hostile")
    bucket = "hostile-input"
    with RedisServer(workdir / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"s3://{bucket}",
            model="unused",
            data_dir=workdir / "data",
            s3=s3_server.settings_env,
            M4T_SYNC_WAIT_S="1",
            M4T_MAX_TEXT_CHARS=str(MAX_TEXT_CHARS),
            M4T_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
        )
        with (
            GatewayProcess(workdir, env) as process,
            httpx.Client(base_url=process.url, timeout=30) as http,
            redis.Redis.from_url(redis_server.url) as client,
        ):
            yield Gateway(http, client, s3_server, bucket)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"].strip()
    for leak in ("Traceback", "libsndfile", "psf_", "pydantic.dev", "Error opening"):
        assert leak not in response.text, response.text
    error: dict[str, Any] = body["error"]
    return error


# --- audio makers -----------------------------------------------------------------------------------------------


def speech(rate: int = 16_000, channels: int = 1) -> np.ndarray:
    """The committed English sentence (1.88 s), resampled and spread over channels (each a bit quieter)."""
    wave, source_rate = sf.read(DATA / "speech_en.wav", dtype="float32")
    if rate != source_rate:
        wave = soxr.resample(wave, source_rate, rate)
    if channels == 1:
        return np.asarray(wave, dtype=np.float32)
    return np.stack([wave * (1 - 0.05 * c) for c in range(channels)], axis=1).astype(np.float32)


def encode(wave: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def tone(seconds: float, rate: int = 16_000) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def float_wav_with(bad: float, subtype: str = "FLOAT", channels: int = 1) -> bytes:
    wave = np.repeat(tone(0.5)[:, None], channels, axis=1)
    wave[1234, channels - 1] = bad
    return encode(wave, 16_000, "WAV", subtype)


def wav_claiming(seconds: float) -> bytes:
    """A 0.1 s WAV whose ``data`` chunk (and RIFF size) claim ``seconds`` of 16-bit mono 16 kHz audio."""
    data = bytearray(encode(tone(0.1), 16_000, "WAV", "PCM_16"))
    claimed = int(seconds * 16_000 * 2)
    data[4:8] = struct.pack("<I", min(claimed + 36, 0xFFFFFFFE))
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", claimed)
    return bytes(data)


def rf64_claiming(seconds: float) -> bytes:
    """A 0.1 s RF64 whose ``ds64`` chunk claims ``seconds`` of audio (the 64-bit size of the data chunk)."""
    data = bytearray(encode(tone(0.1), 16_000, "RF64", "PCM_16"))
    at = data.index(b"ds64") + 8
    data[at + 8 : at + 16] = struct.pack("<Q", int(seconds * 16_000 * 2))
    return bytes(data)


def flac_claiming(seconds: float) -> bytes:
    """A 0.1 s FLAC whose STREAMINFO says it holds ``seconds`` of 16 kHz audio."""
    data = bytearray(encode(tone(0.1), 16_000, "FLAC"))
    start = 8 + 10  # "fLaC", the block header, block and frame sizes; then rate, channels, bits, total samples
    packed = int.from_bytes(data[start : start + 8], "big")
    packed = (packed & ~((1 << 36) - 1)) | int(seconds * 16_000)
    data[start : start + 8] = packed.to_bytes(8, "big")
    return bytes(data)


def empty_flac() -> bytes:
    from shared.audio_encode import encode_audio

    return encode_audio(np.zeros(0, dtype=np.float32), "flac")


def png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 8


M4A = (DATA / "speech_en.m4a").read_bytes()
WEBM = (DATA / "speech_en.webm").read_bytes()
FLAC = encode(speech(), 16_000, "FLAC")
VORBIS = encode(speech(), 16_000, "OGG", "VORBIS")
OPUS = encode(speech(), 16_000, "OGG", "OPUS")
WAV = (DATA / "speech_en.wav").read_bytes()


def bit_flipped(data: bytes, start: int, count: int = 64) -> bytes:
    damaged = bytearray(data)
    damaged[start : start + count] = bytes(b ^ 0xFF for b in damaged[start : start + count])
    return bytes(damaged)


# --- request makers ---------------------------------------------------------------------------------------------


def speech_job(audio: bytes, *, name: str = "a.wav", content_type: str = "audio/wav", **fields: str) -> dict[str, Any]:
    return {
        "data": {"task": "s2tt", "tgt_lang": "eng", **fields},
        "files": {"audio_file": (name, audio, content_type)},
    }


def text_job(**changes: Any) -> dict[str, Any]:
    body = {"task": "t2tt", "text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng", **changes}
    return {"json": body}


def raw(body: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": content_type}}


def multipart(*parts: tuple[str, bytes, str | None], boundary: str = "hostile") -> dict[str, Any]:
    """A hand-built multipart body: (name, value, filename or None) per part."""
    chunks = []
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return raw(body, f"multipart/form-data; boundary={boundary}")


def chunked(*pieces: bytes, content_type: str) -> dict[str, Any]:
    """No Content-Length: the limit has to be enforced while the body streams in."""
    return {"content": iter(pieces), "headers": {"content-type": content_type}}


SPEECH_FORM = [("task", b"s2tt", None), ("tgt_lang", b"eng", None)]


def form_with_audio(audio: bytes, *fields: tuple[str, bytes, str | None]) -> dict[str, Any]:
    return multipart(*SPEECH_FORM, *fields, ("audio_file", audio, "a.wav"))


# --- refused: (id, endpoint, request, status, code) ------------------------------------------------------------

REFUSED: list[tuple[str, str, dict[str, Any], int, str]] = [
    # truncated or corrupt audio
    ("flac cut in half", "jobs", speech_job(FLAC[: len(FLAC) // 2], name="a.flac"), 422, "invalid_audio"),
    ("flac missing its last 10%", "jobs", speech_job(FLAC[: len(FLAC) * 9 // 10], name="a.flac"), 422, "invalid_audio"),
    ("flac header only", "jobs", speech_job(FLAC[:42], name="a.flac"), 422, "invalid_audio"),
    ("vorbis cut in half", "jobs", speech_job(VORBIS[: len(VORBIS) // 2], name="a.ogg"), 422, "invalid_audio"),
    ("opus cut in half", "jobs", speech_job(OPUS[: len(OPUS) // 2], name="a.opus"), 422, "invalid_audio"),
    ("opus with damaged pages", "jobs", speech_job(bit_flipped(OPUS, len(OPUS) // 3)), 422, "invalid_audio"),
    ("wav with 0 channels", "jobs", speech_job(WAV[:22] + b"\x00\x00" + WAV[24:]), 422, "invalid_audio"),
    ("wav at 1 Hz", "jobs", speech_job(WAV[:24] + struct.pack("<I", 1) + WAV[28:]), 422, "invalid_audio"),
    ("wav at 1 GHz", "jobs", speech_job(WAV[:24] + struct.pack("<I", 10**9) + WAV[28:]), 422, "invalid_audio"),
    (
        "riff magic then garbage",
        "jobs",
        speech_job(b"RIFF\x00\x00\x00\x00WAVE" + b"not really audio" * 8),
        422,
        "invalid_audio",
    ),
    ("mp3 frame sync then garbage", "jobs", speech_job(b"\xff\xfb\x90\x00" * 500, name="a.mp3"), 422, "invalid_audio"),
    # a lying extension or content type (real audio with a wrong name is accepted: see ACCEPTED)
    (
        "png named .mp3",
        "jobs",
        speech_job(png(), name="song.mp3", content_type="audio/mpeg"),
        415,
        "unsupported_media_type",
    ),
    (
        "html named .flac",
        "jobs",
        speech_job(b"<!doctype html><title>x</title>" * 40, name="a.flac", content_type="audio/flac"),
        415,
        "unsupported_media_type",
    ),
    (
        "jpeg named .m4a",
        "jobs",
        speech_job(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(4000), name="a.m4a", content_type="audio/mp4"),
        415,
        "unsupported_media_type",
    ),
    (
        "hls playlist",
        "jobs",
        speech_job(
            (DATA / "hostile.m3u8").read_bytes(), name="list.m3u8", content_type="application/vnd.apple.mpegurl"
        ),
        415,
        "unsupported_media_type",
    ),
    (
        "ffconcat list",
        "jobs",
        speech_job(b"ffconcat version 1.0\nfile '/etc/passwd'\n", name="list.txt", content_type="text/plain"),
        415,
        "unsupported_media_type",
    ),
    # a container without audio, or cut short
    (
        "video without audio",
        "jobs",
        speech_job((DATA / "video_only.mp4").read_bytes(), name="v.mp4"),
        422,
        "invalid_audio",
    ),
    ("m4a cut in half", "jobs", speech_job(M4A[: len(M4A) // 2], name="a.m4a"), 422, "invalid_audio"),
    ("webm cut at 80%", "jobs", speech_job(WEBM[: len(WEBM) * 4 // 5], name="a.webm"), 422, "invalid_audio"),
    (
        "json body labelled multipart",
        "jobs",
        raw(b'{"task": "t2tt"}', "multipart/form-data; boundary=x"),
        422,
        "invalid_request",
    ),
    (
        "multipart body labelled json",
        "jobs",
        {**form_with_audio(WAV), "headers": {"content-type": "application/json"}},
        422,
        "invalid_json",
    ),
    # zero-length and zero-frame files
    ("empty file named .mp3", "jobs", speech_job(b"", name="a.mp3", content_type="audio/mpeg"), 422, "invalid_audio"),
    ("wav with 0 frames", "jobs", speech_job(encode(np.zeros(0, np.float32), 16_000)), 422, "invalid_audio"),
    ("flac with 0 frames", "jobs", speech_job(empty_flac(), name="a.flac"), 422, "invalid_audio"),
    (
        "ogg with 0 frames",
        "jobs",
        speech_job(encode(np.zeros(0, np.float32), 16_000, "OGG", "VORBIS")),
        422,
        "invalid_audio",
    ),
    # files claiming hours in a tiny header (a WAV's is read as what it holds: see ACCEPTED)
    ("flac claiming 10 h", "jobs", speech_job(flac_claiming(10 * 3600), name="a.flac"), 422, "invalid_audio"),
    ("flac claiming 1 min", "jobs", speech_job(flac_claiming(60), name="a.flac"), 422, "invalid_audio"),
    # too short: 1 sample, and just under the 0.1 s minimum
    ("1-sample wav", "jobs", speech_job(encode(np.full(1, 0.5, np.float32), 16_000)), 422, "invalid_audio"),
    (
        "1-sample flac at 44.1 kHz",
        "jobs",
        speech_job(encode(np.full(1, 0.5, np.float32), 44_100, "FLAC")),
        422,
        "invalid_audio",
    ),
    ("99 ms of audio", "jobs", speech_job(encode(tone(0.099), 16_000)), 422, "invalid_audio"),
    (
        "1-sample wav, seed s2tt",
        "s2tt",
        {"data": {"tgt_lang": "eng"}, "files": {"audio_file": ("a.wav", encode(np.zeros(1, np.float32), 16_000))}},
        422,
        "invalid_audio",
    ),
    # NaN / Inf samples in float WAV
    ("NaN in a float wav", "jobs", speech_job(float_wav_with(float("nan"))), 422, "invalid_audio"),
    ("+Inf in a float wav", "jobs", speech_job(float_wav_with(float("inf"))), 422, "invalid_audio"),
    (
        "-Inf in a stereo double wav",
        "jobs",
        speech_job(float_wav_with(float("-inf"), "DOUBLE", 2)),
        422,
        "invalid_audio",
    ),
    (
        "NaN in a float wav, seed s2st",
        "s2st",
        {"data": {"tgt_lang": "eng"}, "files": {"audio_file": ("a.wav", float_wav_with(float("nan")))}},
        422,
        "invalid_audio",
    ),
    # huge multipart field counts, and other malformed forms
    (
        "17 form fields",
        "jobs",
        form_with_audio(WAV, *[(f"f{i}", b"x", None) for i in range(15)]),
        422,
        "invalid_request",
    ),
    (
        "10000 form fields",
        "jobs",
        form_with_audio(WAV, *[(f"f{i}", b"x", None) for i in range(10_000)]),
        422,
        "invalid_request",
    ),
    (
        "10000 form fields, seed s2tt",
        "s2tt",
        form_with_audio(WAV, *[(f"f{i}", b"x", None) for i in range(10_000)]),
        422,
        "invalid_request",
    ),
    ("two audio files", "jobs", form_with_audio(WAV, ("audio_file", WAV, "b.wav")), 422, "invalid_request"),
    (
        "a field sent as a file",
        "jobs",
        multipart(("task", b"s2tt", None), ("tgt_lang", b"eng", "lang.txt"), ("audio_file", WAV, "a.wav")),
        422,
        "invalid_request",
    ),
    ("a field given twice", "jobs", form_with_audio(WAV, ("tgt_lang", b"fra", None)), 422, "invalid_request"),
    (
        "a 1.5 MiB form field",
        "jobs",
        form_with_audio(WAV, ("src_lang", b"x" * (3 << 19), None)),
        422,
        "invalid_request",
    ),
    ("multipart without boundary", "jobs", raw(b"--x\r\n", "multipart/form-data"), 422, "invalid_request"),
    ("multipart garbage", "jobs", raw(b"garbage" * 100, "multipart/form-data; boundary=x"), 422, "invalid_request"),
    (
        "unterminated multipart",
        "jobs",
        raw(form_with_audio(WAV)["content"][:-20], "multipart/form-data; boundary=hostile"),
        422,
        "invalid_request",
    ),
    (
        "upload over the limit, streamed",
        "jobs",
        chunked(
            b'--x\r\nContent-Disposition: form-data; name="audio_file"; filename="a.wav"\r\n\r\n',
            *[b"\x00" * (1 << 20)] * (MAX_UPLOAD_MB + 1),
            content_type="multipart/form-data; boundary=x",
        ),
        413,
        "payload_too_large",
    ),
    # oversized or malformed JSON
    ("json over the limit", "jobs", text_job(text="a" * 80_000), 413, "payload_too_large"),
    (
        "json over the limit, streamed",
        "jobs",
        chunked(b'{"text": "', b"a" * 50_000, b"a" * 50_000, b'"}', content_type="application/json"),
        413,
        "payload_too_large",
    ),
    ("json over the limit, seed t2st", "t2st", raw(b'{"text": "' + b"a" * 80_000 + b'"}'), 413, "payload_too_large"),
    ("json nested 5000 deep", "jobs", raw(b"[" * 5_000 + b"]" * 5_000), 422, "invalid_json"),
    (
        "json nested 5000 deep, seed t2tt",
        "t2tt",
        raw(b'{"text": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
        422,
        "invalid_json",
    ),
    (
        "json with a field twice",
        "jobs",
        raw(b'{"task": "t2tt", "task": "t2st", "text": "a", "src_lang": "fra", "tgt_lang": "eng"}'),
        422,
        "invalid_json",
    ),
    ("json null", "jobs", raw(b"null"), 422, "invalid_json"),
    ("json string", "jobs", raw(b'"t2tt"'), 422, "invalid_json"),
    ("empty json body", "jobs", raw(b""), 422, "invalid_json"),
    ("json with a 5000-digit number", "jobs", raw(b'{"speaker_id": ' + b"9" * 5_000 + b"}"), 422, "invalid_json"),
    # invalid UTF-8 (and lone surrogates, which UTF-8 cannot carry) in text
    (
        "overlong utf-8 in text",
        "jobs",
        raw(b'{"task": "t2tt", "text": "a\xc0\xafb", "src_lang": "fra", "tgt_lang": "eng"}'),
        422,
        "invalid_json",
    ),
    (
        "utf-8-encoded surrogate in text",
        "jobs",
        raw(b'{"task": "t2tt", "text": "a\xed\xa0\x80", "src_lang": "fra", "tgt_lang": "eng"}'),
        422,
        "invalid_json",
    ),
    (
        "cut utf-8 sequence in text",
        "jobs",
        raw(b'{"task": "t2tt", "text": "a\xe2\x82", "src_lang": "fra", "tgt_lang": "eng"}'),
        422,
        "invalid_json",
    ),
    (
        "lone surrogate escape in text",
        "jobs",
        raw(b'{"task": "t2tt", "text": "a\\ud800b", "src_lang": "fra", "tgt_lang": "eng"}'),
        422,
        "invalid_json",
    ),
    (
        "lone low surrogate in text, seed t2tt",
        "t2tt",
        raw(b'{"text": "\\udfffa", "src_lang": "fra", "tgt_lang": "eng"}'),
        422,
        "invalid_json",
    ),
    (
        "lone surrogate escape in src_lang",
        "jobs",
        raw(b'{"task": "t2tt", "text": "a", "src_lang": "\\ud800", "tgt_lang": "eng"}'),
        422,
        "invalid_json",
    ),
    (
        "lone surrogate escape in a field name",
        "jobs",
        raw(b'{"task": "t2tt", "text": "a", "src_lang": "fra", "tgt_lang": "eng", "\\udc00": 1}'),
        422,
        "invalid_json",
    ),
    (
        "latin-1 body",
        "t2tt",
        raw('{"text": "été", "src_lang": "fra", "tgt_lang": "eng"}'.encode("latin-1")),
        422,
        "invalid_json",
    ),
    # text of only whitespace or control characters
    ("text of control characters", "jobs", text_job(text="\x01\x02\x07\x1b\x1f\x7f\x85"), 422, "empty_text"),
    ("text of format characters", "jobs", text_job(text="\u200e\u200f\u2060\ufeff\u00ad"), 422, "empty_text"),
    ("text of separators", "jobs", text_job(text="\u00a0\u2028\u2029\u3000\u1680"), 422, "empty_text"),
    ("text of combining marks", "jobs", text_job(text="\u0301\u0302\u20dd"), 422, "empty_text"),
    ("text of private-use characters", "jobs", text_job(text="\ue000\U000f0000"), 422, "empty_text"),
    (
        "text of whitespace, seed t2st",
        "t2st",
        {"json": {"text": "\r\n\t \x0b\x0c", "src_lang": "fra", "tgt_lang": "eng"}},
        422,
        "empty_text",
    ),
    # unknown or ill-formed language codes
    ("empty src_lang", "jobs", text_job(src_lang=""), 422, "invalid_request"),
    ("17-character tgt_lang", "jobs", text_job(tgt_lang="e" * 17), 422, "invalid_request"),
    ("null tgt_lang", "jobs", text_job(tgt_lang=None), 422, "invalid_request"),
    ("numeric src_lang", "jobs", text_job(src_lang=250), 422, "invalid_request"),
    ("upper-case src_lang", "jobs", text_job(src_lang="FRA"), 422, "unsupported_language"),
    ("src_lang with a NUL", "jobs", text_job(src_lang="fra\x00"), 422, "unsupported_language"),
    ("full-width tgt_lang", "jobs", text_job(tgt_lang="ｅｎｇ"), 422, "unsupported_language"),
    ("flores-style tgt_lang", "jobs", text_job(tgt_lang="eng_Latn"), 422, "unsupported_language"),
    ("path in tgt_lang", "jobs", text_job(tgt_lang="../../etc"), 422, "unsupported_language"),
    ("two-letter tgt_lang", "jobs", text_job(tgt_lang="en"), 422, "unsupported_language"),
    ("unknown tgt_lang in a form", "jobs", speech_job(WAV, tgt_lang="xyz"), 422, "unsupported_language"),
    ("unknown src_lang in a form", "jobs", speech_job(WAV, src_lang="zzz"), 422, "unsupported_language"),
    (
        "unknown tgt_lang, seed s2st",
        "s2st",
        {"data": {"tgt_lang": "klingon"}, "files": {"audio_file": ("a.wav", WAV)}},
        422,
        "unsupported_language",
    ),
    # unknown fields
    ("unknown form field", "jobs", speech_job(WAV, urgency="high"), 422, "invalid_request"),
    (
        "unknown json field, seed t2tt",
        "t2tt",
        {"json": {"text": "a", "src_lang": "fra", "tgt_lang": "eng", "model": "large"}},
        422,
        "invalid_request",
    ),
    (
        "unknown form field, seed s2tt",
        "s2tt",
        {"data": {"tgt_lang": "eng", "task": "s2tt"}, "files": {"audio_file": ("a.wav", WAV)}},
        422,
        "invalid_request",
    ),
    # wrong types
    ("boolean speaker_id", "jobs", text_job(task="t2st", speaker_id=True), 422, "invalid_request"),
    ("fractional speaker_id", "jobs", text_job(task="t2st", speaker_id=1.5), 422, "invalid_request"),
    ("speaker_id over the range", "jobs", text_job(task="t2st", speaker_id=10_001), 422, "invalid_request"),
    ("word speaker_id in a form", "jobs", speech_job(WAV, task="s2st", speaker_id="three"), 422, "invalid_request"),
    ("text as a list", "jobs", text_job(text=["Bonjour"]), 422, "invalid_request"),
    ("text as an object", "jobs", text_job(text={"fr": "Bonjour"}), 422, "invalid_request"),
    ("numeric task", "jobs", text_job(task=1), 422, "invalid_request"),
    ("numeric output_format", "jobs", text_job(task="t2st", output_format=3), 422, "invalid_request"),
    ("webhook_url as an object", "jobs", text_job(webhook_url={"url": "https://example.com"}), 422, "invalid_request"),
]


@pytest.mark.parametrize(
    ("endpoint", "request_kwargs", "status", "code"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_hostile_submissions_are_refused_and_leave_nothing_behind(
    gw: Gateway, endpoint: str, request_kwargs: dict[str, Any], status: int, code: str
) -> None:
    before = gw.footprint()
    response = gw.http.post(f"{API}/{endpoint}", **request_kwargs)
    error = assert_error(response, status, code)
    if code == "unsupported_language":
        assert error["field"] in ("src_lang", "tgt_lang")
        assert "eng" in error["valid"]
    assert "job_id" not in error  # refused at the gateway, not a job that failed
    assert gw.footprint() == before


@pytest.mark.timeout(60)
def test_a_playlist_naming_a_local_file_or_a_url_makes_the_gateway_open_nothing(gw: Gateway, tmp_path: Path) -> None:
    """An uploaded HLS playlist whose segments are a local file (a FIFO: opening it is seen) and a URL on a loopback
    HTTP server that records requests. Plain FFmpeg would open both (test_audio_container.py shows it); the
    gateway refuses the upload (415) and neither is touched."""
    fifo, server = FifoWatch(tmp_path), RecordingServer()
    try:
        for target in (str(fifo.path), f"file://{fifo.path}", server.url):
            before = gw.footprint()
            playlist = hls_playlist(target)
            response = gw.http.post(
                f"{API}/jobs",
                **speech_job(playlist, name="playlist.m3u8", content_type="application/vnd.apple.mpegurl"),
            )
            assert_error(response, 415, "unsupported_media_type")
            seed = gw.http.post(
                f"{API}/s2tt", files={"audio_file": ("playlist.m3u8", playlist)}, data={"tgt_lang": "eng"}
            )
            assert_error(seed, 415, "unsupported_media_type")
            assert gw.footprint() == before
        assert not fifo.opened.wait(0.5)
        assert server.requests == []
    finally:
        fifo.close()
        server.close()


def test_too_short_audio_says_how_long_it_is_and_the_minimum(gw: Gateway) -> None:
    response = gw.http.post(f"{API}/jobs", **speech_job(encode(np.full(1, 0.5, np.float32), 16_000)))
    error = assert_error(response, 422, "invalid_audio")
    assert error["field"] == "audio_file"
    assert error["limit"] == pytest.approx(0.1)
    assert "0.1 ms" in error["message"] and "1 samples" in error["message"] and "100 ms" in error["message"]


def test_a_lone_surrogate_never_breaks_the_response(gw: Gateway) -> None:
    """Values are echoed in error messages (e.g. an unknown language code): the response must still render."""
    for body in (b'{"task": "t2tt", "text": "a", "src_lang": "\\ud800", "tgt_lang": "eng"}', b'{"\\ud800": 1}'):
        assert_error(gw.http.post(f"{API}/jobs", **raw(body)), 422, "invalid_json")
    assert gw.http.get(f"{API}/health").status_code == 200


# --- accepted: real audio, however unusual ----------------------------------------------------------------------

ACCEPTED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("wav named .mp3 as audio/mpeg", speech_job(WAV, name="a.mp3", content_type="audio/mpeg"), {"format": "wav"}),
    ("flac named .wav as text/plain", speech_job(FLAC, name="a.wav", content_type="text/plain"), {"format": "flac"}),
    ("8-channel wav", speech_job(encode(speech(channels=8), 16_000)), {"channels": 8, "sample_rate": 16_000}),
    ("8 kHz wav", speech_job(encode(speech(8_000), 8_000)), {"channels": 1, "sample_rate": 8_000}),
    ("192 kHz wav", speech_job(encode(speech(192_000), 192_000)), {"channels": 1, "sample_rate": 192_000}),
    ("exactly 0.1 s", speech_job(encode(tone(0.1), 16_000)), {"duration_s": 0.1}),
    # read by FFmpeg whatever their name (refused with 415 while libsndfile read uploads)
    ("aiff named .wav", speech_job(encode(tone(0.5), 16_000, "AIFF")), {"format": "aiff", "duration_s": 0.5}),
    ("au named .wav", speech_job(encode(tone(0.5), 16_000, "AU")), {"format": "au", "duration_s": 0.5}),
    ("m4a named .wav", speech_job(M4A, content_type="audio/wav"), {"format": "m4a", "sample_rate": 16_000}),
    # a WAV whose data chunk claims more than the file holds is the shorter file it holds (FFmpeg, as players)
    ("wav missing 1 KiB", speech_job(WAV[:-1024]), {"duration_s": round((len(WAV) - 1024 - 44) / 32_000, 3)}),
    ("wav claiming 3 h", speech_job(wav_claiming(3 * 3600)), {"duration_s": 0.1}),
    ("rf64 claiming 100 h", speech_job(rf64_claiming(100 * 3600)), {"duration_s": 0.1}),
    (
        "surrogate pair in text",
        raw(b'{"task": "t2tt", "text": "\\ud83d\\ude00 ok", "src_lang": "fra", "tgt_lang": "eng"}'),
        {"chars": 4},
    ),
]


@pytest.mark.parametrize(("request_kwargs", "meta"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_real_input_however_unusual_is_accepted(
    gw: Gateway, request_kwargs: dict[str, Any], meta: dict[str, Any]
) -> None:
    objects, jobs, depth, broker = gw.footprint()
    response = gw.http.post(f"{API}/jobs", **request_kwargs)
    assert response.status_code == 202, response.text
    job = response.json()
    assert {k: job["input"][k] for k in meta} == meta
    new = gw.stored_objects() - objects
    suffix = f"audio.{job['input']['format']}" if "format" in job["input"] else "text.txt"
    assert new == {f"jobs/{job['id']}/input/{suffix}"}
    assert gw.footprint()[1:] == (jobs + 1, depth + 1, broker + 1)


# --- end to end: unusual audio through a real worker on the tiny model --------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[RunningStack]:
    with running_stack(tmp_path_factory.mktemp("hostile-e2e"), tiny_model_dir) as running:
        yield running


def wait_for(http: httpx.Client, job_id: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"{API}/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


END_TO_END = [
    ("8 channels, s2st", "s2st", encode(speech(channels=8), 16_000), True),
    ("8 kHz, s2tt", "s2tt", encode(speech(8_000), 8_000), True),
    ("192 kHz, s2tt", "s2tt", encode(speech(192_000), 192_000, "FLAC"), True),
    ("exactly 0.1 s, s2st", "s2st", encode(speech()[8_000:9_600], 16_000), False),
]


@pytest.mark.parametrize(("task", "audio", "has_speech"), [c[1:] for c in END_TO_END], ids=[c[0] for c in END_TO_END])
def test_unusual_audio_end_to_end(stack: RunningStack, task: str, audio: bytes, has_speech: bool) -> None:
    response = stack.http.post(
        f"{API}/jobs", data={"task": task, "tgt_lang": "fra"}, files={"audio_file": ("in", audio)}
    )
    assert response.status_code == 202, response.text
    job = wait_for(stack.http, response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    segments = job["result"]["segments"]
    if has_speech:
        assert segments, "the VAD found no speech in the converted sentence"
        assert all(0 <= s["start_s"] < s["end_s"] <= 1.9 for s in segments)
    else:  # shorter than any speech the VAD keeps: an empty translation, as for silence
        assert segments == [] and job["result"]["text"] == ""
    if task == "s2st":
        audio_out = stack.http.get(job["result"]["audio"]["url"])
        assert audio_out.status_code == 200
        wave, rate = sf.read(io.BytesIO(audio_out.content), dtype="float32")
        assert rate == 16_000 and np.isfinite(wave).all()
        assert len(wave) / rate == pytest.approx(job["result"]["audio"]["duration_s"], abs=0.01)


def test_the_worker_survives_a_1_sample_file_the_gateway_would_refuse(stack: RunningStack) -> None:
    """Handed to the worker directly (as an older gateway, or one with another minimum, could): no crash, no retry
    loop; it succeeds with an empty translation, like silence."""
    from shared.celery_app import make_celery
    from shared.jobs import JobRecord, JobStatus, JobStore, new_job_id
    from shared.messages import RUN_JOB_TASK, input_key
    from shared.redis_client import sync_redis
    from shared.settings import CommonSettings
    from shared.storage import LocalStorage
    from shared.tasks import Task

    job_id = new_job_id()
    key = input_key(job_id, "audio.wav")
    LocalStorage(stack.storage_root).put_bytes(key, encode(np.full(1, 0.5, np.float32), 44_100))
    record = JobRecord(
        id=job_id, task=Task.S2ST, status=JobStatus.QUEUED, tgt_lang="eng", input_key=key, created_at=time.time()
    )
    with sync_redis(stack.redis.url) as client:
        JobStore(client, result_ttl_s=3600).create(record)
    celery = make_celery(CommonSettings(redis_url=stack.redis.url), name="hostile-producer")
    try:
        celery.send_task(RUN_JOB_TASK, args=[record.to_message().to_celery()])
    finally:
        celery.close()
    job = wait_for(stack.http, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["text"] == "" and job["result"]["segments"] == []
    assert job["result"]["audio"]["duration_s"] == 0
    health = stack.http.get(f"{API}/health").json()
    assert health["workers"][0]["jobs_failed"] == 0
