"""A real ``m4t worker`` subprocess on the tiny model, fed through a real Redis: a job message goes in, the
result and the job's state come out; redeliveries are no-ops; a worker killed mid-job does not lose the job."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import soundfile as sf
from services import RedisServer
from stack import WorkerProcess, stack_env

from shared.audio import decode_audio
from shared.celery_app import make_celery
from shared.jobs import JobRecord, JobStatus, JobStore, events_key, new_job_id
from shared.messages import RUN_JOB_TASK, input_key
from shared.redis_client import sync_redis
from shared.settings import CommonSettings
from shared.storage import LocalStorage
from shared.tasks import Task
from shared.workers import WorkerRegistry

DATA = Path(__file__).parent / "data"


class Harness:
    """What a gateway would do: store the input, record the job, send the message by name."""

    def __init__(self, redis_url: str, storage_root: Path) -> None:
        self.redis = sync_redis(redis_url)
        self.store = JobStore(self.redis, result_ttl_s=3600)
        self.storage = LocalStorage(storage_root)
        self.celery = make_celery(CommonSettings(redis_url=redis_url), name="test-producer")

    def submit(self, task: Task, *, text: str | None = None, audio: bytes | None = None, **fields: object) -> str:
        job_id = new_job_id()
        if text is not None:
            key = input_key(job_id, "text.txt")
            self.storage.put_bytes(key, text.encode())
        else:
            assert audio is not None
            key = input_key(job_id, "audio.wav")
            self.storage.put_bytes(key, audio)
        record = JobRecord.model_validate(
            {
                "id": job_id,
                "task": task,
                "status": JobStatus.QUEUED,
                "tgt_lang": "eng",
                "src_lang": "fra" if text is not None else None,
                "input_key": key,
                "created_at": time.time(),
                **fields,
            }
        )
        self.store.create(record)
        self.send(record)
        return job_id

    def send(self, record: JobRecord) -> None:
        self.celery.send_task(RUN_JOB_TASK, args=[record.to_message().to_celery()])

    def wait(self, job_id: str, timeout_s: float = 60) -> JobRecord:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            record = self.store.get(job_id)
            if record is not None and record.status.terminal:
                return record
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {self.store.get(job_id)}")

    def terminal_events(self, job_id: str) -> list[str]:
        events = self.redis.xrange(events_key(job_id))
        return [f["data"] for _, f in events if f["event"] == "status" and "succeeded" in f["data"]]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[Harness, WorkerProcess]]:
    workdir = tmp_path_factory.mktemp("worker-e2e")
    with RedisServer(workdir / "redis") as server:
        env = stack_env(
            redis_url=server.url,
            storage_url=f"file://{workdir / 'storage'}",
            model=tiny_model_dir,
            data_dir=workdir / "data",
        )
        with WorkerProcess(workdir, env) as worker:
            yield Harness(server.url, workdir / "storage"), worker


def test_worker_publishes_heartbeat_and_languages(e2e: tuple[Harness, WorkerProcess]) -> None:
    harness, worker = e2e
    registry = WorkerRegistry(harness.redis)
    beats = [b for b in registry.alive() if b.name == worker.worker_name]
    assert beats and beats[0].model_loaded and beats[0].device == "cpu" and beats[0].dtype == "fp32"
    support = registry.languages()
    assert support is not None and len(support.text) == 98 and len(support.speech_output) == 36


@pytest.mark.parametrize("task", list(Task))
def test_each_task_runs_end_to_end(e2e: tuple[Harness, WorkerProcess], task: Task) -> None:
    harness, _ = e2e
    if task.speech_input:
        job_id = harness.submit(task, audio=(DATA / "speech_fr.wav").read_bytes(), output_format="flac")
    else:
        job_id = harness.submit(task, text="Bonjour le monde.", output_format="flac")
    record = harness.wait(job_id)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert record.result is not None and record.result["text"]
    assert record.progress_done == record.progress_total == 1
    assert record.attempts == 1 and record.started_at and record.finished_at
    if task.speech_output:
        audio = record.result["audio"]
        assert audio["format"] == "flac" and audio["sample_rate"] == 16_000
        wave = decode_audio(harness.storage.get_bytes(audio["key"]))
        assert abs(len(wave) / 16_000 - audio["duration_s"]) < 0.01
        assert len(wave) > 0 and np.isfinite(wave).all()
    else:
        assert "audio" not in record.result
    if task is Task.S2TT:  # what OpenAI's verbose_json segments carry
        assert record.result["segments"]
        for segment in record.result["segments"]:
            assert segment["tokens"] and all(isinstance(t, int) for t in segment["tokens"])
            assert isinstance(segment["avg_logprob"], float) and segment["avg_logprob"] < 0
    elif task is Task.S2ST:
        assert all("tokens" not in segment for segment in record.result["segments"])


def test_speed_changes_the_length_of_the_speech_and_nothing_else(e2e: tuple[Harness, WorkerProcess]) -> None:
    """The tiny model's speech is noise, but the same text gives the same noise: speed 2 halves it."""
    harness, _ = e2e
    records = [
        harness.wait(harness.submit(Task.T2ST, text="Bonjour le monde.", output_format="flac", speed=speed))
        for speed in (1.0, 2.0)
    ]
    assert all(r.status is JobStatus.SUCCEEDED and r.result is not None for r in records), [r.error for r in records]
    normal, fast = (r.result for r in records if r.result is not None)
    assert normal["text"] == fast["text"]
    waves = [decode_audio(harness.storage.get_bytes(r["audio"]["key"])) for r in (normal, fast)]
    assert len(waves[0]) > 16_000 // 4
    assert len(waves[1]) == pytest.approx(len(waves[0]) / 2, rel=0.01)
    assert fast["audio"]["duration_s"] == pytest.approx(len(waves[1]) / 16_000, abs=0.01)


def test_bad_input_fails_the_job_with_a_clear_code(e2e: tuple[Harness, WorkerProcess]) -> None:
    harness, _ = e2e
    job_id = harness.submit(Task.S2TT, audio=b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    record = harness.wait(job_id)
    assert record.status is JobStatus.FAILED
    assert record.error is not None and record.error.code in ("invalid_audio", "unsupported_media_type")
    assert "Traceback" not in record.error.message


def test_redelivered_message_of_a_finished_job_is_a_no_op(e2e: tuple[Harness, WorkerProcess]) -> None:
    harness, _ = e2e
    job_id = harness.submit(Task.T2TT, text="Une fois suffit.")
    first = harness.wait(job_id)
    harness.send(first)
    harness.send(first)
    time.sleep(1.5)
    again = harness.store.get(job_id)
    assert again is not None
    assert again.status is JobStatus.SUCCEEDED
    assert again.attempts == 1
    assert again.result == first.result
    assert len(harness.terminal_events(job_id)) == 1


def test_a_job_survives_kill_9_of_its_worker(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> None:
    workdir = tmp_path_factory.mktemp("worker-kill")
    with RedisServer(workdir / "redis") as server:
        env = stack_env(
            redis_url=server.url,
            storage_url=f"file://{workdir / 'storage'}",
            model=tiny_model_dir,
            data_dir=workdir / "data",
            # A job of a few seconds: the tiny model never stops, so it generates exactly this many tokens.
            M4T_MAX_LEN_B="1200",
            M4T_MAX_NEW_TOKENS="1200",
        )
        harness = Harness(server.url, workdir / "storage")
        worker = WorkerProcess(workdir, env, worker_name="doomed")
        worker.start()
        try:
            job_id = harness.submit(Task.T2TT, text="Un travail assez long.")
            deadline = time.monotonic() + 30
            while (record := harness.store.get(job_id)) is None or record.status is not JobStatus.RUNNING:
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.02)
            worker.kill()
            harness.redis.delete("m4t:worker:doomed")  # its heartbeat would linger a few seconds
            restarted_at = time.monotonic()
            worker.start()
            record = harness.wait(job_id, timeout_s=60)
            took = time.monotonic() - restarted_at
        finally:
            worker.stop()
        assert record.status is JobStatus.SUCCEEDED
        assert record.attempts == 2
        assert len(harness.terminal_events(job_id)) == 1
        assert took < 60


def test_worker_refuses_to_start_without_a_model(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        env = stack_env(
            redis_url=server.url,
            storage_url=f"file://{tmp_path / 'storage'}",
            model=tmp_path / "no-such-model",
            data_dir=tmp_path / "data",
        )
        worker = WorkerProcess(tmp_path, env)
        with pytest.raises(RuntimeError, match="exited during start-up"):
            worker.start()
        log = worker.log_path.read_text()
        assert "does not exist" in log and "Traceback" not in log
        with redis.Redis.from_url(server.url) as client:
            assert client.keys("m4t:worker:*") == []


def test_a_running_job_stops_at_a_batch_boundary_when_cancelled(e2e: tuple[Harness, WorkerProcess]) -> None:
    harness, _ = e2e
    clip = decode_audio(DATA / "utt_fr.ogg")
    pause = np.zeros(24_000, dtype=np.float32)
    wave = np.concatenate([np.concatenate([clip, pause]) for _ in range(120)])
    buffer = io.BytesIO()
    sf.write(buffer, wave, 16_000, format="FLAC")
    job_id = harness.submit(Task.S2ST, audio=buffer.getvalue())
    deadline = time.monotonic() + 120
    while (record := harness.store.get(job_id)) is None or record.progress_done == 0:
        assert time.monotonic() < deadline, "the job never made progress"
        time.sleep(0.01)
    assert harness.store.request_cancel(job_id).value == "cancelling"
    record = harness.wait(job_id)
    assert record.status is JobStatus.CANCELLED
    assert 0 < record.progress_done < record.progress_total == 120
    assert list(harness.storage.list_keys(f"jobs/{job_id}/output/")) == []
