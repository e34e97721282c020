"""Every container the API reads, end to end over real HTTP: gateway and worker subprocesses on the tiny model, a
real Redis and real S3, auth on and API keys with a daily audio quota. One stack serves the whole module.

- Each committed container file (tests/data/make_containers.py) goes through S2TT with ``m4t batch`` (which picks
  files by suffix) and through S2ST with the jobs API.
- The audio quota is charged what the worker decoded.
- An MP3 whose header understates its length: the gateway measures it whole (413 over ``M4T_MAX_AUDIO_S``);
  handed to the worker directly, as a gateway that believed the header would, decoding stops at the limit, the
  job fails with ``audio_too_long`` and the quota is charged what was decoded, not what the header said.
- A hostile playlist handed to the worker directly fails the job (``unsupported_media_type``): nothing opened.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import soundfile as sf
from services import RedisServer, S3Server
from stack import GatewayProcess, WorkerProcess, run_client_cli, stack_env
from watchers import FifoWatch, RecordingServer, hls_playlist

from shared.api_keys import ApiKey, ApiKeyStore
from shared.celery_app import make_celery
from shared.jobs import JobRecord, JobStatus, JobStore, new_job_id
from shared.messages import RUN_JOB_TASK, input_key
from shared.redis_client import sync_redis
from shared.settings import CommonSettings
from shared.storage import S3Storage
from shared.tasks import Task

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
API = "/api/v1"
BUCKET = "containers"
MAX_AUDIO_S = 10.0

# file -> (format the gateway records, seconds of speech it holds)
CONTAINERS: dict[str, tuple[str, float]] = {
    "speech_en.m4a": ("m4a", 1.881),
    "speech_fr_alac.m4a": ("m4a", 1.0),
    "speech_en.mov": ("mov", 1.881),
    "speech_en_video.mp4": ("mp4", 1.881),
    "speech_en.webm": ("webm", 1.881),
    "speech_fr.mkv": ("webm", 2.937),
    "speech_en.aiff": ("aiff", 1.881),
    "speech_fr.caf": ("caf", 1.0),
    "speech_en.wma": ("wma", 1.881),
    "speech_en.amr": ("amr", 1.881),
}


@dataclass
class Stack:
    http: httpx.Client
    url: str
    redis_url: str
    keys: dict[str, tuple[str, ApiKey]]
    s3: S3Server

    def headers(self, name: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[name][0]}

    def decoded_s(self, job_id: str) -> float:
        """The seconds the worker decoded (kept in the job's record; the API shows the probed ``input.duration_s``)."""
        with sync_redis(self.redis_url) as client:
            record = JobStore(client, result_ttl_s=3600).get(job_id)
        assert record is not None and record.result is not None
        return float(record.result["source_duration_s"])

    def audio_charged(self, name: str) -> float:
        """Seconds on the key's audio counter for today (UTC)."""
        day = datetime.now(tz=UTC)
        with redis.Redis.from_url(self.redis_url) as client:
            return float(client.get(f"m4t:audio:{self.keys[name][1].id}:{day:%Y%m%d}") or 0.0)

    def wait(self, job_id: str, key: str, timeout_s: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.http.get(f"{API}/jobs/{job_id}", headers=self.headers(key)).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish: {job}")

    def hand_to_worker(self, data: bytes, key: str, *, charged_s: float) -> str:
        """Store ``data`` and queue a job for it, charging ``charged_s`` to the key, as a gateway that took the
        file's header at its word would have: the worker alone sees the file."""
        job_id = new_job_id()
        stored = input_key(job_id, "audio.mp3")
        with S3Storage(self.s3.endpoint, self.s3.access_key, self.s3.secret_key, BUCKET) as storage:
            storage.put_bytes(stored, data)
        owner = self.keys[key][1]
        record = JobRecord(
            id=job_id,
            task=Task.S2TT,
            status=JobStatus.QUEUED,
            tgt_lang="eng",
            input_key=stored,
            input_meta={"format": "mp3", "duration_s": charged_s},
            created_at=time.time(),
            owner=owner.id,
        )
        with sync_redis(self.redis_url) as client:
            JobStore(client, result_ttl_s=3600).create(record)
            ApiKeyStore(client).admit_job(owner, job_id, audio_seconds=charged_s)
        celery = make_celery(CommonSettings(redis_url=self.redis_url), name="containers-producer")
        try:
            celery.send_task(RUN_JOB_TASK, args=[record.to_message().to_celery()])
        finally:
            celery.close()
        return job_id


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, tiny_model_dir: Path) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("containers")
    with RedisServer(workdir / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"s3://{BUCKET}",
            model=tiny_model_dir,
            data_dir=workdir / "data",
            s3=s3_server.settings_env,
            M4T_AUTH="on",
            M4T_MAX_AUDIO_S=str(MAX_AUDIO_S),
        )
        with redis.Redis.from_url(redis_server.url) as client:
            store = ApiKeyStore(client)
            keys = {name: store.create(name, audio_seconds_per_day=3600.0) for name in ("containers", "lying")}
        with (
            WorkerProcess(workdir, env),
            GatewayProcess(workdir, env) as gateway,
            httpx.Client(base_url=gateway.url, timeout=60) as http,
        ):
            yield Stack(http, gateway.url, redis_server.url, keys, s3_server)


@pytest.fixture(scope="module")
def s2st_jobs(stack: Stack) -> dict[str, str]:
    """One S2ST job per container, all submitted at once (they share the worker's generate calls)."""
    jobs = {}
    for name in CONTAINERS:
        response = stack.http.post(
            f"{API}/jobs",
            data={"task": "s2st", "tgt_lang": "spa"},
            files={"audio_file": (name, (DATA / name).read_bytes())},
            headers=stack.headers("containers"),
        )
        assert response.status_code == 202, response.text
        jobs[name] = response.json()["id"]
    return jobs


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_s2st_from_every_container(stack: Stack, s2st_jobs: dict[str, str], name: str) -> None:
    fmt, seconds = CONTAINERS[name]
    job = stack.wait(s2st_jobs[name], "containers")
    assert job["status"] == "succeeded", job["error"]
    assert job["input"]["format"] == fmt
    assert job["input"]["duration_s"] == pytest.approx(seconds, abs=0.11)
    assert stack.decoded_s(job["id"]) == pytest.approx(seconds, abs=0.06)
    segments = job["result"]["segments"]
    assert segments, "the VAD found no speech in the decoded sentence"
    assert all(0 <= s["start_s"] < s["end_s"] <= seconds + 0.05 for s in segments)
    audio = stack.http.get(job["result"]["audio"]["url"], headers=stack.headers("containers"))
    assert audio.status_code == 200
    wave, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert rate == 16_000 and len(wave) > 0 and np.isfinite(wave).all()
    assert len(wave) / rate == pytest.approx(job["result"]["audio"]["duration_s"], abs=0.01)


def test_s2tt_batch_picks_and_translates_every_container(stack: Stack, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in [*CONTAINERS, "video_only.mp4", "hostile.m3u8"]:
        shutil.copy(DATA / name, inputs / name)
    argv = ["batch", str(inputs), "--task", "s2tt", "--tgt", "eng", "--out", str(out), "--url", stack.url]
    argv += ["--api-key", stack.keys["containers"][0], "--concurrency", "8", "-q"]
    done = run_client_cli(*argv)
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:-1]}
    assert set(rows) == {*CONTAINERS, "video_only.mp4"}, done.stdout  # the playlist is not an audio suffix
    assert "failed" in rows["video_only.mp4"] and "invalid_audio" in rows["video_only.mp4"]
    stems = [Path(name).stem for name in rows]
    for name in CONTAINERS:
        assert rows[name].split()[1] == "done", rows[name]
        base = Path(name).stem if stems.count(Path(name).stem) == 1 else name  # the CLI's rule for shared stems
        assert (out / f"{base}.txt").read_text().strip()
    listing = stack.http.get(f"{API}/jobs", params={"limit": 100}, headers=stack.headers("containers")).json()
    s2tt = {job["input"]["filename"]: job for job in listing["jobs"] if job["task"] == "s2tt"}
    for name, (fmt, seconds) in CONTAINERS.items():
        assert s2tt[name]["input"]["format"] == fmt
        assert stack.decoded_s(s2tt[name]["id"]) == pytest.approx(seconds, abs=0.06)


def test_the_audio_quota_is_charged_what_was_decoded(stack: Stack, s2st_jobs: dict[str, str]) -> None:
    """After the jobs above: the key's counter holds the decoded seconds of its jobs, not their probed ones (the
    probe of an AAC or Vorbis file differs from what decodes by up to a codec frame)."""
    listing = stack.http.get(f"{API}/jobs", params={"limit": 100}, headers=stack.headers("containers")).json()
    finished = [job for job in listing["jobs"] if job["status"] == "succeeded"]
    assert len(finished) == 2 * len(CONTAINERS)
    decoded = sum(stack.decoded_s(job["id"]) for job in finished)
    probed = sum(job["input"]["duration_s"] for job in finished)
    assert stack.audio_charged("containers") == pytest.approx(decoded, abs=1e-3)
    assert abs(decoded - probed) > 0.1  # the two differ: the test can tell which one was charged


def lying_mp3() -> bytes:
    """1 s of MP3 whose Xing header says 1 s, followed by 20 s more (a naive concatenation)."""
    t = np.arange(16_000 * 21) / 16_000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    parts = []
    for piece in (tone[:16_000], tone[16_000:]):
        buffer = io.BytesIO()
        sf.write(buffer, piece, 16_000, format="MP3")
        parts.append(buffer.getvalue())
    return b"".join(parts)


def test_an_mp3_understating_its_length_is_never_decoded_past_the_limit(stack: Stack) -> None:
    data = lying_mp3()
    assert sf.info(io.BytesIO(data)).duration == pytest.approx(1.0)  # what its header says
    refused = stack.http.post(
        f"{API}/jobs",
        data={"task": "s2tt", "tgt_lang": "eng"},
        files={"audio_file": ("lying.mp3", data)},
        headers=stack.headers("lying"),
    )
    assert refused.status_code == 413, refused.text  # the gateway counted its packets: 21 s
    assert refused.json()["error"]["code"] == "audio_too_long"
    assert stack.audio_charged("lying") == 0.0

    job_id = stack.hand_to_worker(data, "lying", charged_s=1.0)
    assert stack.audio_charged("lying") == pytest.approx(1.0)
    job = stack.wait(job_id, "lying")
    assert job["status"] == "failed"
    assert job["error"]["code"] == "audio_too_long"
    assert f"{MAX_AUDIO_S:g} s" in job["error"]["message"]
    # Charged what was decoded before decoding stopped: the limit (and less than one MP3 frame more).
    assert MAX_AUDIO_S <= stack.audio_charged("lying") < MAX_AUDIO_S + 0.1


@pytest.mark.timeout(120)
def test_a_hostile_playlist_handed_to_the_worker_opens_nothing(stack: Stack, tmp_path: Path) -> None:
    fifo, server = FifoWatch(tmp_path), RecordingServer()
    try:
        for target in (str(fifo.path), server.url):
            job = stack.wait(stack.hand_to_worker(hls_playlist(target), "lying", charged_s=2.0), "lying")
            assert job["status"] == "failed"
            assert job["error"]["code"] == "unsupported_media_type"
        assert not fifo.opened.wait(0.5)
        assert server.requests == []
    finally:
        fifo.close()
        server.close()
