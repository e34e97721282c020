"""The OpenAI-compatible API (/v1) driven by the official ``openai`` SDK, sync and async, over real HTTP against a
running gateway and worker (tiny model), with API keys on: every response format, streaming, speech in every
format decoded by an independent decoder, models, a multi-minute file, retries, and each error class the SDK
raises."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import openai
import pytest
import redis
import soundfile as sf
import soxr
import srt
import webvtt
from stack import GatewayProcess, RunningStack, running_stack

from shared.api_keys import ApiKeyStore
from shared.audio_encode import encode_audio

DATA = Path(__file__).parent / "data"
SPEECH_EN = DATA / "speech_en.wav"
OOM_MARKER = "OOM-13-MARKER"

pytestmark = pytest.mark.timeout(240)


class OpenAIStack:
    def __init__(self, stack: RunningStack, key: str) -> None:
        self.stack = stack
        self.key = key
        self.url = stack.url + "/v1"

    def client(self, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=options.pop("api_key", self.key), **options)

    def async_client(self, **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url, api_key=self.key, **options)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.stack.http.get(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {self.key}"})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def job_count(self) -> int:
        response = self.stack.http.get(
            "/api/v1/jobs", params={"limit": 100}, headers={"Authorization": f"Bearer {self.key}"}
        )
        assert response.status_code == 200, response.text
        return len(response.json()["jobs"])

    def new_key(self, **limits: Any) -> str:
        with redis.Redis.from_url(self.stack.redis.url) as client:
            key, _ = ApiKeyStore(client).create("openai-test", **limits)
        return key


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[OpenAIStack]:
    workdir = tmp_path_factory.mktemp("openai")
    with running_stack(
        workdir,
        tiny_model_dir,
        M4T_AUTH="on",
        M4T_DETECT_ACCURACY="low",
        M4T_FAULT_OOM_MARKER=OOM_MARKER,
        M4T_MAX_UPLOAD_MB="2",
    ) as stack:
        with redis.Redis.from_url(stack.redis.url) as client:
            key, _ = ApiKeyStore(client).create("openai")
        yield OpenAIStack(stack, key)


def _transcribe(client: openai.OpenAI, path: Path = SPEECH_EN, **params: Any) -> Any:
    with path.open("rb") as audio:
        return client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=audio, **params)


# --- transcriptions and translations ----------------------------------------------------------------------------


def test_transcription_in_every_response_format(api: OpenAIStack) -> None:
    client = api.client()
    raw = _transcribe(client, language="en")
    job_id = raw.headers["x-m4t-job-id"]
    plain = raw.parse()
    assert plain.text
    assert plain.usage.seconds == pytest.approx(1.881, abs=0.01)
    job = api.job(job_id)  # the call is a job of the job API, under the caller's key
    assert (job["task"], job["status"], job["tgt_lang"]) == ("s2tt", "succeeded", "eng")
    assert job["result"]["text"] == plain.text

    # One job for one audio: the same request again (another format) is another job, since the first one ended.
    text = _transcribe(client, language="en", response_format="text").parse()
    assert text == plain.text + "\n"

    verbose = _transcribe(client, language="eng", response_format="verbose_json").parse()
    assert (verbose.language, verbose.text) == ("english", plain.text)
    assert verbose.duration == pytest.approx(1.881, abs=0.01)
    assert [s.id for s in verbose.segments] == list(range(len(verbose.segments)))
    for segment in verbose.segments:
        assert 0 <= segment.start < segment.end <= verbose.duration
        assert segment.seek == round(segment.start * 100)
        assert segment.tokens, "the generated token ids"
        assert -100 < segment.avg_logprob < 0
        assert segment.compression_ratio > 0
        assert (segment.no_speech_prob, segment.temperature) == (0.0, 0.0)
    assert " ".join(s.text for s in verbose.segments) == plain.text

    subtitles = list(srt.parse(_transcribe(client, language="en", response_format="srt").parse()))
    assert [cue.content for cue in subtitles] == [s.text for s in verbose.segments]
    assert subtitles[0].start.total_seconds() == pytest.approx(verbose.segments[0].start, abs=0.001)
    vtt = webvtt.from_string(_transcribe(client, language="en", response_format="vtt").parse())
    assert [cue.text for cue in vtt] == [s.text for s in verbose.segments]
    hours, minutes, seconds = vtt[-1].end.split(":")
    assert int(hours) * 3600 + int(minutes) * 60 + float(seconds) == pytest.approx(verbose.segments[-1].end, abs=0.001)


def test_transcription_language_comes_from_iso_or_server_default(api: OpenAIStack) -> None:
    client = api.client()
    for code, expected in (("fr", "fra"), ("zh-TW", "cmn_Hant"), ("ms", "zlm")):
        job_id = _transcribe(client, language=code).headers["x-m4t-job-id"]
        assert api.job(job_id)["tgt_lang"] == expected
    one_of_languages = _transcribe(client, languages=["de"])  # the SDK's `languages[]`: used when it names one
    assert api.job(one_of_languages.headers["x-m4t-job-id"])["tgt_lang"] == "deu"
    assert one_of_languages.headers["x-m4t-model"] == "whisper-1", "the model named is echoed"
    with pytest.raises(openai.BadRequestError) as unheard:
        _transcribe(client, language="sat")  # Santali: written by the model, not heard
    assert unheard.value.body["param"] == "language"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as missing:
        _transcribe(client)
    assert (missing.value.body["param"], missing.value.body["code"]) == ("language", "invalid_request")  # type: ignore[index]


def test_translation_in_every_response_format_with_the_async_sdk(api: OpenAIStack) -> None:
    async def translate(**params: Any) -> Any:
        async with api.async_client() as client:
            with (DATA / "speech_fr.wav").open("rb") as audio:
                return await client.audio.translations.with_raw_response.create(model="whisper-1", file=audio, **params)

    english = asyncio.run(translate(response_format="verbose_json")).parse()
    assert (english.task, english.language) == ("translate", "english")
    assert english.segments and english.segments[0].tokens
    assert english.segments[-1].end <= english.duration == pytest.approx(2.937, abs=0.01)
    assert asyncio.run(translate()).parse().text == english.text
    assert asyncio.run(translate(response_format="text")).parse() == english.text + "\n"
    cues = list(srt.parse(asyncio.run(translate(response_format="srt")).parse()))
    assert [cue.content for cue in cues] == [s.text for s in english.segments]
    vtt = webvtt.from_string(asyncio.run(translate(response_format="vtt")).parse())
    assert [cue.text for cue in vtt] == [s.text for s in english.segments]
    german = asyncio.run(translate(response_format="text", extra_body={"target_language": "de"}))
    assert german.parse().strip()
    assert api.job(german.headers["x-m4t-job-id"])["tgt_lang"] == "deu"


def test_streaming_sends_one_delta_per_segment_before_done(api: OpenAIStack) -> None:
    client = api.client()
    with (DATA / "monologue_en.ogg").open("rb") as audio:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=audio, language="en", stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [e.type for e in events] == ["transcript.text.delta"] * len(deltas) + ["transcript.text.done"]
    done = events[-1]
    assert len(deltas) >= 3, "the monologue has several segments"
    assert "".join(d.delta for d in deltas) == done.text


def test_async_sdk_transcribes_and_streams(api: OpenAIStack) -> None:
    async def run() -> tuple[str, list[str]]:
        async with api.async_client() as client:
            with SPEECH_EN.open("rb") as audio:
                text = await client.audio.transcriptions.create(
                    model="whisper-1", file=audio, language="en", response_format="text"
                )
            with SPEECH_EN.open("rb") as audio:
                stream = await client.audio.transcriptions.create(
                    model="whisper-1", file=audio, language="en", stream=True
                )
                kinds = [event.type async for event in stream]
            return text, kinds

    text, kinds = asyncio.run(run())
    assert text.strip()
    assert kinds[-1] == "transcript.text.done"
    assert kinds.count("transcript.text.delta") >= 1


def test_a_multi_minute_file_through_client_timeouts_and_retries_is_one_job(api: OpenAIStack, tmp_path: Path) -> None:
    """Six minutes of speech (the monologue four times) as MP3. A client that gives up after 1.5 s retries twice by
    itself (the SDK's default), uploading the file each time: the retries wait for the job the first attempt made.
    A patient streaming call of the same request attaches to that job too, and gets one delta per segment, the
    first while the job is still running (segments are released as their generate call ends)."""
    wave, rate = sf.read(DATA / "monologue_en.ogg", dtype="float32")
    long_mp3 = tmp_path / "long.mp3"
    long_mp3.write_bytes(encode_audio(np.concatenate([wave] * 4), "mp3", sample_rate=rate))
    before = api.job_count()
    impatient = api.client(timeout=1.5, max_retries=2)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        _transcribe(impatient, long_mp3, language="en")
    assert time.monotonic() - started > 4.5, "three attempts of 1.5 s"
    assert api.job_count() == before + 1, "three attempts, one job"

    status_at_first_delta = None
    deltas: list[str] = []
    with (
        long_mp3.open("rb") as audio,
        api.client().audio.transcriptions.with_streaming_response.create(
            model="whisper-1", file=audio, language="en", stream=True
        ) as response,
    ):
        job_id = response.headers["x-m4t-job-id"]
        for event in response.parse():
            if event.type == "transcript.text.delta":
                status_at_first_delta = status_at_first_delta or api.job(job_id)["status"]
                deltas.append(event.delta)
            else:
                done = event.text
    assert api.job_count() == before + 1, "the patient call waited for the same job"
    assert status_at_first_delta == "running"
    job = api.job(job_id)
    assert job["input"]["duration_s"] == pytest.approx(4 * len(wave) / rate, abs=0.1)
    segments = [s for s in job["result"]["segments"] if s["text"]]
    assert len(segments) >= 12
    assert segments[-1]["end_s"] > job["input"]["duration_s"] - 10
    assert len(deltas) == len(segments)
    assert "".join(deltas) == " ".join(s["text"] for s in segments), "each segment's text, in order"
    assert done == job["result"]["text"]


# --- speech -----------------------------------------------------------------------------------------------------


def _speech(client: openai.OpenAI, *, language: str | None = None, **params: Any) -> Any:
    """``language`` is an extension field: the SDK sends it in ``extra_body``."""
    params = {"model": "tts-1", "voice": "alloy", "input": "Hello there. How are you today?", **params}
    extra = {"language": language} if language else None
    return client.audio.speech.with_raw_response.create(**params, extra_body=extra)


def _decode_with_libsndfile(data: bytes) -> tuple[np.ndarray, int]:
    wave, rate = sf.read(io.BytesIO(data), dtype="float32")
    return wave, rate


def _decode_adts(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data), format="aac") as container:
        frames = [frame.to_ndarray() for frame in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    return np.concatenate(frames, axis=1)[0], rate


def test_speech_in_every_format(api: OpenAIStack) -> None:
    client = api.client()
    wav = _speech(client, response_format="wav", language="en")
    reference, rate = _decode_with_libsndfile(wav.content)
    assert wav.headers["content-type"] == "audio/wav"
    seconds = len(reference) / rate
    assert seconds > 0.2
    expected_types = {"mp3": "audio/mpeg", "flac": "audio/flac", "opus": "audio/ogg; codecs=opus", "aac": "audio/aac"}
    for fmt, content_type in expected_types.items():
        raw = _speech(client, response_format=fmt, language="en")
        assert raw.headers["content-type"] == content_type
        wave, out_rate = _decode_adts(raw.content) if fmt == "aac" else _decode_with_libsndfile(raw.content)
        assert len(wave) / out_rate == pytest.approx(seconds, abs=0.12), fmt
    pcm = np.frombuffer(_speech(client, response_format="pcm", language="en").content, dtype="<i2") / 32768
    assert len(pcm) / 24_000 == pytest.approx(seconds, abs=0.01), "raw 16-bit mono at 24 kHz"
    at_24k = soxr.resample(reference, rate, 24_000)[: len(pcm)]
    assert np.corrcoef(pcm[: len(at_24k)], at_24k)[0, 1] > 0.99, "the same speech as the WAV"
    default = _speech(client, language="en")
    assert default.headers["content-type"] == "audio/mpeg", "mp3 by default"


def test_speech_speed_voice_and_language(api: OpenAIStack) -> None:
    client = api.client()
    normal, _ = _decode_with_libsndfile(_speech(client, response_format="wav", language="en").content)
    fast, _ = _decode_with_libsndfile(_speech(client, response_format="wav", language="en", speed=2.0).content)
    assert len(fast) / len(normal) == pytest.approx(0.5, abs=0.05)
    coral = _speech(client, response_format="wav", language="en", voice="coral").content
    by_number = _speech(client, response_format="wav", language="en", voice="3").content
    assert coral == by_number, "coral is vocoder speaker 3"
    assert coral != _speech(client, response_format="wav", language="en", voice="echo").content
    # No language: the text's own (detected) language is spoken.
    raw = _speech(client, response_format="wav", input="Bonjour à tous, comment allez-vous aujourd'hui ?")
    job = api.job(raw.headers["x-m4t-job-id"])
    assert (job["detected_src_lang"], job["tgt_lang"]) == ("fra", "fra")


def test_speech_refuses_what_it_cannot_do(api: OpenAIStack) -> None:
    client = api.client()
    cases = {
        "language": {"language": "af"},  # Afrikaans: read, never spoken
        "speed": {"speed": 5.0},
        "voice": {"voice": "nobody"},
        "stream_format": {"stream_format": "sse"},
    }
    for odd_voice in ("²", "9" * 5000, "10001", True, -1):
        with pytest.raises(openai.BadRequestError) as refused:
            _speech(client, voice=odd_voice)
        assert refused.value.body["param"] == "voice", odd_voice  # type: ignore[index]
    for param, params in cases.items():
        with pytest.raises(openai.BadRequestError) as refused:
            _speech(client, **params)
        assert refused.value.body["param"] == param, params  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as unspeakable:
        _speech(client, language="af")
    assert "eng" in unspeakable.value.body["message"] and "afr" not in unspeakable.value.body["message"]  # type: ignore[index]


# --- models and errors ------------------------------------------------------------------------------------------


def test_models(api: OpenAIStack) -> None:
    client = api.client()
    ids = [model.id for model in client.models.list()]
    assert {"whisper-1", "tts-1", "seamless-m4t-v2"} <= set(ids)
    assert client.models.retrieve("whisper-1").owned_by == "seamlessm4t-api"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_each_error_class_the_sdk_raises(api: OpenAIStack, tmp_path: Path) -> None:
    client = api.client(max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        api.client(api_key="m4t_wrong").models.list()
    with pytest.raises(openai.BadRequestError) as word:
        _transcribe(client, language="en", timestamp_granularities=["word"])
    assert word.value.body["param"] == "timestamp_granularities[]"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as stream_srt:
        _transcribe(client, language="en", response_format="srt", stream=True)
    assert stream_srt.value.body["param"] == "stream"  # type: ignore[index]
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("not audio at all")
    with pytest.raises(openai.BadRequestError) as unsupported:
        _transcribe(client, not_audio, language="en")
    assert unsupported.value.body["code"] == "unsupported_media_type"  # type: ignore[index]
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(16_000 * 70, dtype=np.float32), 16_000)  # 2.1 MiB: over M4T_MAX_UPLOAD_MB=2
    with pytest.raises(openai.APIStatusError) as too_large:
        _transcribe(client, big, language="en")
    assert (too_large.value.status_code, too_large.value.body["code"]) == (413, "payload_too_large")  # type: ignore[index]

    limited = api.client(api_key=api.new_key(rate_limit_per_min=1), max_retries=0)
    limited.models.list()
    with pytest.raises(openai.RateLimitError) as rate:
        limited.models.list()
    assert int(rate.value.response.headers["retry-after"]) >= 1

    # A failure a retry cannot fix says so: the SDK (default: two retries) makes one attempt.
    out_of_quota = api.client(api_key=api.new_key(audio_seconds_per_day=1.0))
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as quota:
        _transcribe(out_of_quota, language="en")
    assert quota.value.body["code"] == "quota_exceeded"  # type: ignore[index]
    assert quota.value.response.headers["x-should-retry"] == "false"
    assert time.monotonic() - started < 5

    before = api.job_count()
    with pytest.raises(openai.InternalServerError) as failed:
        _speech(api.client(), language="en", input=f"Say {OOM_MARKER} now.")
    assert failed.value.body["code"] == "out_of_memory"  # type: ignore[index]
    assert failed.value.response.headers["x-should-retry"] == "false"
    assert api.job_count() == before + 1, "not retried"


def test_a_call_still_running_after_the_wait_is_504_with_its_job(api: OpenAIStack, tmp_path: Path) -> None:
    """A second gateway on the same stack, with auth off (the bearer token the SDK always sends is then ignored),
    that waits 0.2 s: the job goes on, and its id comes back to fetch it later. It also assumes French when a call
    names no language (``M4T_DEFAULT_TRANSCRIBE_LANG``, as the Open WebUI recipe sets it)."""
    env = {**api.stack.env, "M4T_AUTH": "off", "M4T_OPENAI_WAIT_S": "0.2", "M4T_DEFAULT_TRANSCRIBE_LANG": "fr"}
    with GatewayProcess(tmp_path, env) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-anything")
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as waited:
            _transcribe(client, DATA / "monologue_en.ogg")
        assert time.monotonic() - started < 5, "x-should-retry: false: no retries"
        error = waited.value
        job_id = error.body["job_id"]  # type: ignore[index]
        job = httpx.get(f"{gateway.url}/api/v1/jobs/{job_id}").json()
        assert (job["status"], job["tgt_lang"]) in {("queued", "fra"), ("running", "fra")}
        assert httpx.delete(f"{gateway.url}/api/v1/jobs/{job_id}").status_code in (200, 202)
    assert (error.status_code, error.body["code"]) == (504, "wait_timeout")  # type: ignore[index]
    assert error.response.headers["x-m4t-job-id"] == job_id
    assert error.response.headers["x-should-retry"] == "false"


def test_queue_unreachable_is_503_and_a_cancelled_job_is_409(api: OpenAIStack, tmp_path: Path) -> None:
    """A gateway whose Redis is down answers 503 with Retry-After (the SDK's InternalServerError; it would retry);
    a call whose job is cancelled through the job API meanwhile gets 409 ConflictError, not retried."""
    env = {**api.stack.env, "M4T_AUTH": "off", "M4T_REDIS_URL": "redis://127.0.0.1:9/0"}
    with GatewayProcess(tmp_path, env) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-anything", max_retries=0)
        with pytest.raises(openai.InternalServerError) as down:
            _transcribe(client, language="en")
    assert (down.value.status_code, down.value.body["code"]) == (503, "redis_unavailable")  # type: ignore[index]
    assert down.value.response.headers["retry-after"] == "5"

    newest_before = _newest_job(api)
    outcome: dict[str, BaseException] = {}

    def call() -> None:
        try:
            _transcribe(api.client(), DATA / "monologue_en.ogg", language="en")
        except openai.APIStatusError as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 30
    while (job_id := _newest_job(api)) == newest_before and time.monotonic() < deadline:
        time.sleep(0.05)
    headers = {"Authorization": f"Bearer {api.key}"}
    assert api.stack.http.delete(f"/api/v1/jobs/{job_id}", headers=headers).status_code in (200, 202)
    caller.join(timeout=60)
    error = outcome["error"]
    assert isinstance(error, openai.ConflictError)
    assert error.body["code"] == "job_cancelled"  # type: ignore[index]
    assert error.response.headers["x-should-retry"] == "false"


def _newest_job(api: OpenAIStack) -> str | None:
    jobs = api.stack.http.get(
        "/api/v1/jobs", params={"limit": 1}, headers={"Authorization": f"Bearer {api.key}"}
    ).json()["jobs"]
    return jobs[0]["id"] if jobs else None


def test_a_field_sent_both_plain_and_as_a_list_is_400(api: OpenAIStack) -> None:
    """What no SDK sends, but a hand-made form can: refused, never a server error."""
    response = api.stack.http.post(
        "/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {api.key}"},
        data={"model": "whisper-1", "language": "fr", "language[]": "de"},
        files={"file": ("a.wav", SPEECH_EN.read_bytes())},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "language[]"


def test_idempotency_key_gives_back_the_same_job(api: OpenAIStack) -> None:
    client = api.client()
    first = _speech(client, response_format="wav", language="en", extra_headers={"Idempotency-Key": "speech-13"})
    again = _speech(client, response_format="wav", language="en", extra_headers={"Idempotency-Key": "speech-13"})
    assert first.headers["x-m4t-job-id"] == again.headers["x-m4t-job-id"]
    assert first.content == again.content
    other = _speech(client, response_format="wav", language="en")
    assert other.headers["x-m4t-job-id"] != first.headers["x-m4t-job-id"], "a finished job is not attached to"
