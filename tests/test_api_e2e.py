"""End to end over real HTTP: gateway and worker subprocesses on the tiny model, a real Redis and real S3.
Every task through both endpoint families, with the seed README's exact request shapes."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import soundfile as sf
from services import RedisServer, S3Server
from stack import GatewayProcess, WorkerProcess, stack_env

DATA = Path(__file__).parent / "data"
API = "/api/v1"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, tiny_model_dir: Path) -> Iterator[httpx.Client]:
    workdir = tmp_path_factory.mktemp("e2e")
    with RedisServer(workdir / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url="s3://e2e-results",
            model=tiny_model_dir,
            data_dir=workdir / "data",
            s3=s3_server.settings_env,
        )
        with (
            WorkerProcess(workdir, env),
            GatewayProcess(workdir, env) as gateway,
            httpx.Client(base_url=gateway.url, timeout=60) as client,
        ):
            yield client


def poll(api: httpx.Client, location: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    seen = set()
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(location).json()
        seen.add(job["status"])
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job did not finish: {job} (seen {seen})")


def download_audio(api: httpx.Client, job: dict[str, Any]) -> tuple[np.ndarray, int, httpx.Response]:
    response = api.get(job["result"]["audio"]["url"])
    assert response.status_code == 200
    wave, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    return wave, rate, response


def test_health_shows_the_worker(api: httpx.Client) -> None:
    body = api.get(f"{API}/health").json()
    assert body["status"] == "healthy"
    assert body["model_loaded"] is True
    assert body["device"] == "cpu"
    assert body["gpu_available"] is False
    assert len(body["workers"]) == 1
    worker = body["workers"][0]
    assert worker["job_slots"] == 34  # M4T_WORKER_JOBS 32 + M4T_WORKER_HIGH_SLOTS 2
    assert worker["jobs_in_flight"] >= 0 and worker["units_waiting"] >= 0
    assert "mean_batch_items" in worker
    assert all(service["model_loaded"] for service in body["services"].values())
    languages = api.get(f"{API}/languages").json()
    assert languages["from_model"] is True


# --- the seed README's examples, unchanged -------------------------------------------------------------------


@pytest.mark.parametrize("task", ["s2st", "s2tt"])
def test_seed_speech_endpoints(api: httpx.Client, task: str) -> None:
    # curl -X POST ".../api/v1/s2st" -F "audio_file=@audio_francais.wav" -F "src_lang=fra" -F "tgt_lang=eng"
    with (DATA / "speech_fr.wav").open("rb") as f:
        response = api.post(f"{API}/{task}", files={"audio_file": f}, data={"src_lang": "fra", "tgt_lang": "eng"})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["task"] == task
    assert job["src_lang"] == "fra"
    assert job["result"]["text"]
    if task == "s2st":
        wave, rate, dl = download_audio(api, job)
        assert rate == 16_000
        assert dl.headers["content-type"] == "audio/wav"
        assert len(wave) / rate == pytest.approx(job["result"]["audio"]["duration_s"], abs=0.01)
    else:
        assert job["result"]["audio"] is None


@pytest.mark.parametrize("task", ["t2st", "t2tt"])
def test_seed_text_endpoints(api: httpx.Client, task: str) -> None:
    # curl -X POST ".../api/v1/t2tt" -H "Content-Type: application/json" -d '{"text": "Bonjour le monde", ...}'
    response = api.post(
        f"{API}/{task}",
        content=b'{"text": "Bonjour le monde", "src_lang": "fra", "tgt_lang": "eng"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["result"]["text"]
    assert job["progress"] == {"done": 1, "total": 1, "fraction": 1.0}
    if task == "t2st":
        wave, rate, _ = download_audio(api, job)
        assert rate == 16_000
        assert len(wave) > 0


# --- the async job API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "fmt", "mime"),
    [("s2st", "mp3", "audio/mpeg"), ("t2st", "ogg", "audio/ogg"), ("s2st", "flac", "audio/flac")],
)
def test_jobs_api_submit_poll_download(api: httpx.Client, task: str, fmt: str, mime: str) -> None:
    if task.startswith("s"):
        response = api.post(
            f"{API}/jobs",
            data={"task": task, "tgt_lang": "spa", "output_format": fmt, "speaker_id": "5"},
            files={"audio_file": ("clip.wav", (DATA / "speech_en.wav").read_bytes(), "audio/wav")},
        )
    else:
        response = api.post(
            f"{API}/jobs",
            json={"task": task, "text": "Hello there", "src_lang": "eng", "tgt_lang": "spa", "output_format": fmt},
        )
    assert response.status_code == 202, response.text
    job = poll(api, response.headers["location"])
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["audio"]["format"] == fmt
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    wave, rate, dl = download_audio(api, job)
    assert dl.headers["content-type"] == mime
    assert dl.headers["content-disposition"] == f'attachment; filename="{job["id"]}.{fmt}"'
    assert rate == 16_000
    assert len(wave) / rate == pytest.approx(job["result"]["audio"]["duration_s"], abs=0.08)


# The formats read by libsndfile's neighbours: format -> (content type, file extension).
NEW_FORMATS = {
    "opus": ("audio/ogg; codecs=opus", "opus"),
    "aac": ("audio/mp4", "m4a"),
    "pcm": ("application/octet-stream", "pcm"),
}


def decoded_duration_s(fmt: str, data: bytes, sample_rate: int) -> float:
    """The length of a download, read by a decoder other than the encoder (PyAV reads only the MP4)."""
    if fmt == "pcm":  # raw 16-bit little-endian mono
        assert len(data) % 2 == 0
        return len(data) / 2 / sample_rate
    if fmt == "aac":
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            assert (stream.codec_context.name, stream.codec_context.channels) == ("aac", 1)
            assert stream.codec_context.sample_rate == sample_rate
            assert sum(frame.samples for frame in container.decode(stream)) > 0
            assert stream.duration is not None and stream.time_base is not None
            return float(stream.duration * stream.time_base)
    with sf.SoundFile(io.BytesIO(data)) as snd:
        assert (snd.format, snd.subtype, snd.samplerate, snd.channels) == ("OGG", "OPUS", sample_rate, 1)
        return len(snd.read(dtype="float32")) / sample_rate


def test_t2st_in_opus_aac_and_pcm_through_both_endpoint_families(api: httpx.Client) -> None:
    """Each new format from the job API (JSON), the seed's synchronous /t2st (its JSON body takes output_format
    too) and a speech job's form: downloaded with its content type and file name, and decodable."""
    text = {"text": "Hello there", "src_lang": "eng", "tgt_lang": "spa"}
    locations = []
    for fmt in NEW_FORMATS:
        queued = api.post(f"{API}/jobs", json={"task": "t2st", **text, "output_format": fmt})
        assert queued.status_code == 202, queued.text
        locations.append(queued.headers["location"])
    speech = api.post(
        f"{API}/jobs",
        data={"task": "s2st", "tgt_lang": "spa", "output_format": "opus"},
        files={"audio_file": ("clip.wav", (DATA / "speech_en.wav").read_bytes(), "audio/wav")},
    )
    assert speech.status_code == 202, speech.text
    jobs = [api.post(f"{API}/t2st", json={**text, "output_format": fmt}) for fmt in NEW_FORMATS]
    assert [seed.status_code for seed in jobs] == [200] * len(NEW_FORMATS), [seed.text for seed in jobs]
    finished = [poll(api, location) for location in [*locations, speech.headers["location"]]]
    for job in [*finished, *(seed.json() for seed in jobs)]:
        assert job["status"] == "succeeded", job["error"]
        audio = job["result"]["audio"]
        fmt = audio["format"]
        assert fmt == job["options"]["output_format"]
        mime, extension = NEW_FORMATS[fmt]
        download = api.get(audio["url"])
        assert download.status_code == 200
        assert download.headers["content-type"] == mime
        assert download.headers["content-disposition"] == f'attachment; filename="{job["id"]}.{extension}"'
        assert audio["sample_rate"] == 16_000
        duration = decoded_duration_s(fmt, download.content, audio["sample_rate"])
        assert duration == pytest.approx(audio["duration_s"], abs=0.01)


def test_text_jobs_in_several_languages(api: httpx.Client) -> None:
    locations = []
    for src, text in [("cmn", "你好世界"), ("hin", "नमस्ते दुनिया"), ("arb", "مرحبا بالعالم"), ("rus", "Привет, мир")]:
        response = api.post(f"{API}/jobs", json={"task": "t2tt", "text": text, "src_lang": src, "tgt_lang": "fra"})
        assert response.status_code == 202
        locations.append(response.headers["location"])
    for location in locations:
        job = poll(api, location)
        assert job["status"] == "succeeded"
        assert job["result"]["text"]


def test_audio_that_passes_the_header_probe_but_not_decoding_fails_the_job_clearly(api: httpx.Client) -> None:
    """A FLAC with frames damaged mid-stream keeps an intact header and end: the gateway's probe accepts it, the
    worker refuses it. (A FLAC cut short is refused by the gateway's probe already.)"""
    buffer = io.BytesIO()
    wave, rate = sf.read(DATA / "speech_fr.wav", dtype="float32")
    sf.write(buffer, wave, rate, format="FLAC")
    data = bytearray(buffer.getvalue())
    middle = len(data) * 3 // 5  # (damage at a third makes FFmpeg's seek to the end fail: refused at submission)
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    response = api.post(f"{API}/s2tt", files={"audio_file": ("broken.flac", bytes(data))}, data={"tgt_lang": "eng"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_audio"
    job = api.get(f"{API}/jobs/{error['job_id']}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_audio"
