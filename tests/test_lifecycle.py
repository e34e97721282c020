"""A job's life over real HTTP: signed webhooks with retries (checked by an independent implementation of the
spec), the SSRF guard, cancellation, idempotency keys, live events (SSE), listing and expiry.

Real processes: Redis, a worker on the tiny model, the webhook worker, the gateway, and a local HTTP receiver."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from services import free_port
from stack import running_stack
from standardwebhooks.webhooks import Webhook

from shared.audio import decode_audio
from shared.webhooks import generate_secret

DATA = Path(__file__).parent / "data"
API = "/api/v1"
SECRET = generate_secret()
OLD_SECRET = generate_secret()


@dataclass
class Receiver:
    """A webhook receiver: answers by path; records every request it gets."""

    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, scenario: str) -> str:
        return f"http://127.0.0.1:{self.port}/{scenario}"

    def received(self, scenario: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == f"/{scenario}"]


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver(free_port())
    counts: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            path = self.path.split("?")[0]
            with receiver.lock:
                counts[path] = counts.get(path, 0) + 1
                attempt = counts[path]
                receiver.requests.append({"path": path, "headers": dict(self.headers.items()), "body": body})
            if path.startswith("/flaky") and attempt == 1:
                status = 500
            elif path.startswith("/flaky") and attempt == 2:
                time.sleep(2.5)  # longer than the webhook timeout: a timed-out attempt
                status = 200
            elif path.startswith("/gone"):
                status = 410
            else:
                status = 204
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@dataclass
class Stack:
    http: httpx.Client
    receiver: Receiver
    storage_root: Path
    url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Stack]:
    receiver, server = start_receiver()
    settings = {
        "M4T_BATCH_SIZE": "2",
        # One job at a time, as a saturated worker would be: the cancellation tests need a job that stays queued.
        "M4T_WORKER_JOBS": "1",
        "M4T_WORKER_HIGH_SLOTS": "0",
        "M4T_MAX_LEN_B": "30",
        "M4T_WEBHOOK_SECRETS": f"{SECRET},{OLD_SECRET}",
        "M4T_WEBHOOK_ALLOW_HOSTS": "127.0.0.1/32",
        "M4T_WEBHOOK_RETRY_SCHEDULE_S": "0.3,0.3,0.3",
        "M4T_WEBHOOK_TIMEOUT_S": "1",
    }
    try:
        with running_stack(tmp_path_factory.mktemp("lifecycle"), tiny_model_dir, webhooks=True, **settings) as running:
            yield Stack(running.http, receiver, running.storage_root, running.url)
    finally:
        server.shutdown()
        server.server_close()


def long_audio(clips: int = 40) -> bytes:
    clip = decode_audio(DATA / "utt_fr.ogg")
    pause = np.zeros(24_000, dtype=np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate([np.concatenate([clip, pause]) for _ in range(clips)]), 16_000, format="FLAC")
    return buffer.getvalue()


def text_job(**extra: Any) -> dict[str, Any]:
    return {"task": "t2tt", "text": "Bonjour le monde", "src_lang": "fra", "tgt_lang": "eng", **extra}


def wait(http: httpx.Client, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"{API}/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def wait_webhooks(http: httpx.Client, job_id: str, done: Any, timeout_s: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events: list[dict[str, Any]] = http.get(f"{API}/jobs/{job_id}/webhooks").json()["events"]
        if done(events):
            return events
        time.sleep(0.1)
    raise AssertionError(f"webhooks of {job_id} never settled: {events}")


# --- webhooks --------------------------------------------------------------------------------------------------


def test_webhook_is_retried_until_delivered_and_signed_per_the_spec(stack: Stack) -> None:
    job = stack.http.post(f"{API}/jobs", json=text_job(webhook_url=stack.receiver.url("flaky"))).json()
    wait(stack.http, job["id"])
    events = wait_webhooks(stack.http, job["id"], lambda ev: ev and ev[0]["status"] != "pending")
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "delivered"
    assert event["type"] == "job.succeeded"
    attempts = event["attempts"]
    assert len(attempts) == 3
    assert attempts[0]["status_code"] == 500
    assert attempts[1]["status_code"] is None
    assert attempts[1]["error"] == "timeout"
    assert attempts[2]["status_code"] == 204
    time.sleep(3)  # the timed-out attempt's handler finishes meanwhile
    got = stack.receiver.received("flaky")
    assert len(got) == 3
    assert {r["headers"]["webhook-id"] for r in got} == {event["id"]}
    assert len({r["body"] for r in got}) == 1  # every retry sends the same bytes
    for request in got:
        for secret in (SECRET, OLD_SECRET):  # signed with both secrets: rotation
            Webhook(secret).verify(request["body"], request["headers"])
    body = json.loads(got[-1]["body"])
    assert body["type"] == "job.succeeded"
    assert body["data"]["id"] == job["id"]
    assert body["data"]["status"] == "succeeded"
    assert body["data"]["text"]
    assert body["data"]["links"]["self"].endswith(f"/api/v1/jobs/{job['id']}")


def test_410_gone_stops_the_retries(stack: Stack) -> None:
    job = stack.http.post(f"{API}/jobs", json=text_job(webhook_url=stack.receiver.url("gone"))).json()
    wait(stack.http, job["id"])
    events = wait_webhooks(stack.http, job["id"], lambda ev: ev and ev[0]["status"] != "pending")
    assert events[0]["status"] == "stopped"
    assert len(events[0]["attempts"]) == 1
    time.sleep(1.0)
    assert len(stack.receiver.received("gone")) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "http://[::1]:9/hook",
        "http://127.0.0.2:9/hook",  # loopback, but outside the allowlisted 127.0.0.1/32
        "http://0x7f000002/hook",  # the same, written in hex
        "ftp://127.0.0.1/hook",
    ],
)
def test_webhook_urls_to_private_places_are_refused_at_submission(stack: Stack, url: str) -> None:
    response = stack.http.post(f"{API}/jobs", json=text_job(webhook_url=url))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "webhook_url_refused"
    seed_body = {"text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng", "webhook_url": url}
    seed = stack.http.post(f"{API}/t2tt", json=seed_body)
    assert seed.status_code == 422
    assert seed.json()["error"]["code"] == "webhook_url_refused"


def test_seed_endpoints_take_a_webhook_too(stack: Stack) -> None:
    with (DATA / "speech_en.wav").open("rb") as f:
        response = stack.http.post(
            f"{API}/s2tt",
            files={"audio_file": f},
            data={"tgt_lang": "fra", "webhook_url": stack.receiver.url("seed")},
        )
    assert response.status_code == 200, response.text
    job = response.json()
    events = wait_webhooks(stack.http, job["id"], lambda ev: ev and ev[0]["status"] == "delivered")
    assert events[0]["type"] == "job.succeeded"
    assert len(stack.receiver.received("seed")) == 1


# --- cancellation ----------------------------------------------------------------------------------------------


def test_cancel_running_and_queued_jobs(stack: Stack) -> None:
    audio = long_audio()
    running = stack.http.post(
        f"{API}/jobs",
        data={"task": "s2st", "tgt_lang": "eng", "webhook_url": stack.receiver.url("cancelled")},
        files={"audio_file": ("long.flac", audio)},
    ).json()
    queued = stack.http.post(f"{API}/jobs", json=text_job()).json()
    deadline = time.monotonic() + 60
    while stack.http.get(f"{API}/jobs/{running['id']}").json()["progress"]["done"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    waiting = stack.http.get(f"{API}/jobs/{queued['id']}").json()
    assert waiting["status"] == "queued"
    assert waiting["queue_position"] == 1

    response = stack.http.delete(f"{API}/jobs/{queued['id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    response = stack.http.delete(f"{API}/jobs/{running['id']}")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    ended = wait(stack.http, running["id"])
    assert ended["status"] == "cancelled"
    assert ended["progress"]["done"] < ended["progress"]["total"]
    assert not (stack.storage_root / "jobs" / running["id"] / "output").exists()

    never = wait(stack.http, queued["id"])
    assert never["started_at"] is None

    finished = stack.http.delete(f"{API}/jobs/{running['id']}")
    assert finished.status_code == 409
    assert finished.json()["error"]["code"] == "job_finished"
    events = wait_webhooks(stack.http, running["id"], lambda ev: ev and ev[0]["status"] == "delivered")
    assert [e["type"] for e in events] == ["job.cancelled"]
    time.sleep(0.5)
    assert len(stack.receiver.received("cancelled")) == 1
    assert stack.http.delete(f"{API}/jobs/{'0' * 32}").status_code == 404


# --- idempotency -----------------------------------------------------------------------------------------------


def test_twenty_concurrent_submits_with_one_key_make_one_job(stack: Stack) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{API}/jobs", json=text_job(text="Une seule fois"), headers={"Idempotency-Key": "k-20"}
                    )
                    for _ in range(20)
                )
            )

    before = len(list((stack.storage_root / "jobs").iterdir()))
    responses = asyncio.run(burst())
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    assert len(list((stack.storage_root / "jobs").iterdir())) == before + 1

    reused = stack.http.post(f"{API}/jobs", json=text_job(text="Autre chose"), headers={"Idempotency-Key": "k-20"})
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


def test_idempotent_uploads_store_nothing_new(stack: Stack) -> None:
    audio = (DATA / "speech_en.wav").read_bytes()

    def send() -> httpx.Response:
        return stack.http.post(
            f"{API}/jobs",
            data={"task": "s2tt", "tgt_lang": "fra"},
            files={"audio_file": ("a.wav", audio)},
            headers={"Idempotency-Key": "upload-1"},
        )

    first, second = send(), send()
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    inputs = list((stack.storage_root / "jobs" / first.json()["id"] / "input").iterdir())
    assert len(inputs) == 1
    bad = stack.http.post(f"{API}/jobs", json=text_job(), headers={"Idempotency-Key": "bad key with spaces"})
    assert bad.status_code == 422


# --- live events -----------------------------------------------------------------------------------------------


def read_sse(http: httpx.Client, job_id: str, last_event_id: str | None = None) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with http.stream("GET", f"{API}/jobs/{job_id}/events", headers=headers, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif line.startswith(("id:", "event:", "data:")):
                name, _, value = line.partition(":")
                current[name] = json.loads(value) if name == "data" else value.strip()
    return events


def test_sse_stream_runs_to_the_end_and_resumes_with_last_event_id(stack: Stack) -> None:
    job = stack.http.post(
        f"{API}/jobs", data={"task": "s2tt", "tgt_lang": "eng"}, files={"audio_file": ("l.flac", long_audio(12))}
    ).json()
    events = read_sse(stack.http, job["id"])
    kinds = [(e["event"], e["data"].get("status")) for e in events]
    assert kinds[0] == ("status", "queued")
    assert ("status", "running") in kinds
    assert kinds[-1] == ("status", "succeeded")
    progress = [e["data"]["done"] for e in events if e["event"] == "progress"]
    assert progress == sorted(progress)
    assert progress[-1] == 12
    assert events[-1]["data"]["job"]["result"]["text"]

    middle = events[len(events) // 2]
    resumed = read_sse(stack.http, job["id"], last_event_id=middle["id"])
    assert [e["id"] for e in resumed] == [e["id"] for e in events[len(events) // 2 + 1 :]]


# --- listing -----------------------------------------------------------------------------------------------------


def test_listing_is_newest_first_with_cursors_and_a_status_filter(stack: Stack) -> None:
    made = [stack.http.post(f"{API}/jobs", json=text_job(text=f"Liste {i}")).json()["id"] for i in range(5)]
    for job_id in made:
        wait(stack.http, job_id)
    page = stack.http.get(f"{API}/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["jobs"]] == made[::-1][:2]
    second = stack.http.get(f"{API}/jobs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in second["jobs"]] == made[::-1][2:4]
    cancelled = stack.http.get(f"{API}/jobs", params={"status": "cancelled", "limit": 100}).json()["jobs"]
    assert cancelled
    assert all(j["status"] == "cancelled" for j in cancelled)
    assert stack.http.get(f"{API}/jobs", params={"cursor": "garbage!"}).status_code == 422
    assert stack.http.get(f"{API}/jobs", params={"limit": 0}).status_code == 422


# --- expiry ------------------------------------------------------------------------------------------------------


def test_expired_jobs_answer_410_then_404_and_their_files_are_swept(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = {"M4T_RESULT_TTL_S": "4", "M4T_GONE_TTL_S": "3", "M4T_SWEEP_INTERVAL_S": "0.5"}
    with running_stack(tmp_path, tiny_model_dir, webhooks=True, **settings) as running:
        http = running.http
        job = http.post(f"{API}/jobs", json={**text_job(), "task": "t2st"}).json()
        done = wait(http, job["id"])
        assert done["status"] == "succeeded"
        folder = running.storage_root / "jobs" / job["id"]
        assert folder.exists()
        deadline = time.monotonic() + 30
        while http.get(f"{API}/jobs/{job['id']}").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        gone = http.get(f"{API}/jobs/{job['id']}")
        assert gone.status_code == 410
        assert gone.json()["error"]["code"] == "job_expired"
        while folder.exists():
            assert time.monotonic() < deadline, "the files of the expired job were never swept"
            time.sleep(0.1)
        while http.get(f"{API}/jobs/{job['id']}").status_code == 410:
            assert time.monotonic() < deadline + 10
            time.sleep(0.1)
        assert http.get(f"{API}/jobs/{job['id']}").status_code == 404
