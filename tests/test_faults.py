"""Fault tolerance, each proven by doing it for real: a worker killed mid-job, a job outliving the broker's
visibility timeout, CUDA out-of-memory (injected through the engine's test hooks), an input that kills its worker
every time, Redis restarted under load, storage down while a worker writes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from services import RedisServer, S3Server, free_port, free_ports
from stack import GatewayProcess, WorkerProcess, running_stack, stack_env

from shared.audio import decode_audio
from shared.webhooks import generate_secret

DATA = Path(__file__).parent / "data"
API = "/api/v1"


def long_audio(clips: int) -> bytes:
    clip = decode_audio(DATA / "utt_fr.ogg")
    pause = np.zeros(24_000, dtype=np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate([np.concatenate([clip, pause]) for _ in range(clips)]), 16_000, format="FLAC")
    return buffer.getvalue()


def submit_audio(http: httpx.Client, clips: int, **fields: str) -> dict[str, Any]:
    response = http.post(
        f"{API}/jobs",
        data={"task": "s2tt", "tgt_lang": "eng", **fields},
        files={"audio_file": ("l.flac", long_audio(clips))},
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def text_job(text: str = "Bonjour le monde", **extra: Any) -> dict[str, Any]:
    return {"task": "t2tt", "text": text, "src_lang": "fra", "tgt_lang": "eng", **extra}


def wait(http: httpx.Client, job_id: str, timeout_s: float = 120, until: tuple[str, ...] = ()) -> dict[str, Any]:
    ends = until or ("succeeded", "failed", "cancelled")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            job: dict[str, Any] = http.get(f"{API}/jobs/{job_id}").json()
        except (httpx.HTTPError, ValueError):
            time.sleep(0.2)
            continue
        if job.get("status") in ends:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {ends}")


def status_events(redis_url: str, job_id: str) -> list[str]:
    import json

    import redis

    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        entries = client.xrange(f"m4t:job:{job_id}:events")
    return [json.loads(f["data"])["status"] for _, f in entries if f["event"] == "status"]


# --- out of memory ---------------------------------------------------------------------------------------------


def test_out_of_memory_splits_the_batch_then_fails_only_that_job(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = {"M4T_BATCH_SIZE": "4", "M4T_FAULT_OOM_OVER_ITEMS": "1", "M4T_FAULT_OOM_MARKER": "OOM!"}
    with running_stack(tmp_path, tiny_model_dir, **settings) as stack:
        split = submit_audio(stack.http, 8)
        done = wait(stack.http, split["id"])
        assert done["status"] == "succeeded", done["error"]
        assert len(done["result"]["segments"]) == 8

        doomed = stack.http.post(f"{API}/jobs", json=text_job("Trop grand OOM! pour la carte")).json()
        failed = wait(stack.http, doomed["id"])
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == "out_of_memory"

        after = stack.http.post(f"{API}/t2tt", json={"text": "Encore", "src_lang": "fra", "tgt_lang": "eng"})
        assert after.status_code == 200  # the worker keeps serving
        deadline = time.monotonic() + 10  # heartbeats come every 0.5 s
        while stack.http.get(f"{API}/health").json()["workers"][0]["jobs_failed"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert "splitting the batch" in logs


# --- a worker killed mid-job -----------------------------------------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.requests.append(dict(self.headers.items()))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def test_kill_9_mid_job_then_restart_gives_one_result_and_one_webhook(
    tmp_path: Path, tiny_model_dir: Path, receiver: Receiver
) -> None:
    with RedisServer(tmp_path / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{tmp_path / 'storage'}",
            model=tiny_model_dir,
            data_dir=tmp_path / "data",
            M4T_BATCH_SIZE="1",
            M4T_WEBHOOK_SECRETS=generate_secret(),
            M4T_WEBHOOK_ALLOW_HOSTS="127.0.0.1/32",
        )
        worker = WorkerProcess(tmp_path, env, worker_name="victim")
        with (
            worker,
            WorkerProcess(tmp_path, env, worker_name="webhooks", role="webhooks"),
            GatewayProcess(tmp_path, env) as gateway,
            httpx.Client(base_url=gateway.url, timeout=60) as http,
        ):
            job = submit_audio(http, 40, webhook_url=receiver.url)
            deadline = time.monotonic() + 60
            while http.get(f"{API}/jobs/{job['id']}").json()["progress"]["done"] < 3:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            worker.kill()
            restarted = time.monotonic()
            worker.start()
            done = wait(http, job["id"])
            took = time.monotonic() - restarted
            assert done["status"] == "succeeded"
            assert len(done["result"]["segments"]) == 40
            assert took < 60
            events = http.get(f"{API}/jobs/{job['id']}/webhooks").json()["events"]
            deadline = time.monotonic() + 30
            while not events or events[0]["status"] == "pending":
                assert time.monotonic() < deadline
                time.sleep(0.1)
                events = http.get(f"{API}/jobs/{job['id']}/webhooks").json()["events"]
            time.sleep(1)
        assert [e["status"] for e in events] == ["delivered"]
        assert len(receiver.requests) == 1
        assert status_events(redis_server.url, job["id"]).count("succeeded") == 1
        assert done["timings"]["queued_s"] >= 0


# --- a job longer than the broker's visibility timeout ------------------------------------------------------------


def test_a_job_outliving_the_visibility_timeout_never_runs_twice_at_once(tmp_path: Path, tiny_model_dir: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{tmp_path / 'storage'}",
            model=tiny_model_dir,
            data_dir=tmp_path / "data",
            M4T_BATCH_SIZE="1",
            M4T_VISIBILITY_TIMEOUT_S="2",
            M4T_FAULT_SLOW_BATCH_S="0.25",  # 40 batches: at least 10 s however fast the machine
        )
        with (
            WorkerProcess(tmp_path, env, worker_name="first"),
            WorkerProcess(tmp_path, env, worker_name="second"),
            GatewayProcess(tmp_path, env) as gateway,
            httpx.Client(base_url=gateway.url, timeout=60) as http,
        ):
            job = submit_audio(http, 40)
            done = wait(http, job["id"], timeout_s=240)
        assert done["status"] == "succeeded"
        assert done["timings"]["run_s"] > 8, (
            "the job must outlive the visibility timeout (2 s) and kombu's restore scan (5 s)"
        )
        assert status_events(redis_server.url, job["id"]).count("running") == 1
        logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
        assert f"job {job['id']}: busy, nothing to do" in logs  # the broker did hand it out again


# --- an input that kills its worker every time ----------------------------------------------------------------


def test_an_input_that_kills_every_worker_fails_after_bounded_attempts(tmp_path: Path, tiny_model_dir: Path) -> None:
    api_port, flower_port = free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("M4T_")}
    env.update(
        M4T_DATA_DIR=str(tmp_path / "data"),
        M4T_MODEL=str(tiny_model_dir),
        M4T_API_PORT=str(api_port),
        M4T_FLOWER_PORT=str(flower_port),
        M4T_DEVICE="cpu",
        M4T_NUM_THREADS="1",
        M4T_TEXT_NUM_BEAMS="1",
        M4T_MAX_LEN_B="10",
        M4T_JOB_LEASE_S="2",
        M4T_HEARTBEAT_INTERVAL_S="0.5",
        M4T_MAX_ATTEMPTS="2",
        M4T_FAULT_CRASH_MARKER="CRASH!",
        M4T_UI_PORT="0",
        M4T_DETECT_ACCURACY="off",  # no src_lang "auto" here: spare the gateway the detector's start-up
    )
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "m4t.cli", "serve", "--no-flower"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{api_port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if http.get(f"{API}/health").json()["status"] == "healthy":
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.3)
            poison = http.post(f"{API}/jobs", json=text_job("Ceci va CRASH! le worker")).json()
            failed = wait(http, poison["id"], timeout_s=180)
            assert failed["status"] == "failed"
            assert failed["error"]["code"] == "too_many_attempts"
            healthy = http.post(f"{API}/t2tt", json={"text": "Après", "src_lang": "fra", "tgt_lang": "eng"})
            assert healthy.status_code == 200
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=60)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "restarting it" in output


# --- Redis restarted under load --------------------------------------------------------------------------------


def test_redis_restart_under_load_loses_no_queued_job(tmp_path: Path, tiny_model_dir: Path) -> None:
    with RedisServer(tmp_path / "redis", appendonly=True) as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{tmp_path / 'storage'}",
            model=tiny_model_dir,
            data_dir=tmp_path / "data",
            M4T_BATCH_SIZE="1",
        )
        with (
            WorkerProcess(tmp_path, env) as worker,
            GatewayProcess(tmp_path, env) as gateway,
            httpx.Client(base_url=gateway.url, timeout=60) as http,
        ):
            jobs = [submit_audio(http, 6) for _ in range(8)]
            deadline = time.monotonic() + 60
            while http.get(f"{API}/jobs/{jobs[0]['id']}").json()["status"] == "queued":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            redis_server.stop()
            try:
                refused = http.post(f"{API}/jobs", json=text_job())
                assert refused.status_code == 503
                assert refused.json()["error"]["code"] == "redis_unavailable"
            finally:
                redis_server.start()
            ends = [wait(http, job["id"], timeout_s=180) for job in jobs]
            assert [job["status"] for job in ends] == ["succeeded"] * 8
            # The same worker process goes on taking jobs: it reconnected instead of shutting down.
            after = http.post(f"{API}/jobs", json=text_job())
            assert after.status_code == 202
            assert wait(http, after.json()["id"], timeout_s=60)["status"] == "succeeded"
            assert worker.running
        log = worker.log_path.read_text()
        assert "Unrecoverable error" not in log, log[-4000:]


# --- storage down while a worker writes ------------------------------------------------------------------------


@pytest.mark.parametrize("comes_back", [True, False], ids=["storage-returns", "storage-stays-down"])
def test_storage_down_while_the_worker_works(tmp_path: Path, tiny_model_dir: Path, comes_back: bool) -> None:
    with RedisServer(tmp_path / "redis") as redis_server, S3Server(tmp_path / "s3") as s3:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url="s3://faults",
            model=tiny_model_dir,
            data_dir=tmp_path / "data",
            s3=s3.settings_env,
            M4T_BATCH_SIZE="1",
            M4T_RETRY_DELAY_S="1",
            # Retries wait 1, 2, 4, 8, 16... s: when storage returns, the window (over a minute) is wide enough for a
            # slow restart on a busy machine.
            M4T_MAX_ATTEMPTS="8" if comes_back else "3",
        )
        with (
            WorkerProcess(tmp_path, env),
            GatewayProcess(tmp_path, env) as gateway,
            httpx.Client(base_url=gateway.url, timeout=60) as http,
        ):
            job = http.post(
                f"{API}/jobs",
                data={"task": "s2st", "tgt_lang": "eng"},
                files={"audio_file": ("l.flac", long_audio(20))},
            ).json()
            deadline = time.monotonic() + 60
            while http.get(f"{API}/jobs/{job['id']}").json()["progress"]["done"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            s3.stop()
            if comes_back:
                # Bring storage back only once the worker has hit the outage and rescheduled the job.
                deadline = time.monotonic() + 60
                while status_events(redis_server.url, job["id"]).count("running") < 2:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                s3.start()
            done = wait(http, job["id"], timeout_s=120)
        if comes_back:
            assert done["status"] == "succeeded", done["error"]
            assert done["result"]["audio"]["duration_s"] > 0
        else:
            assert done["status"] == "failed"
            assert done["error"]["code"] == "storage_unavailable"
        assert status_events(redis_server.url, job["id"]).count("running") >= 2
