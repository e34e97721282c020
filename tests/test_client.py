"""The Python client (``client/``) and its command line (``m4t translate``, ``m4t batch``) against a real stack: Redis,
a worker on the tiny model, the webhook worker and the gateway, as real processes. Only the retry policy is also
checked against scripted answers (a 503 or a 429 on demand), and the webhook verifier against the server's signer."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
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
import redis
import soundfile as sf
from services import LOOPBACK, RedisServer, free_port
from stack import GatewayProcess, running_stack, stack_env

from client import (
    APIError,
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Gone,
    InvalidRequest,
    Job,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    WaitTimeout,
    WebhookVerificationError,
    verify_webhook,
)
from client._base import SSEParser
from client.cli import batch_key
from shared.api_keys import ApiKeyStore
from shared.audio import decode_audio
from shared.webhooks import generate_secret, parse_secrets, signature_headers

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
API = "/api/v1"
SECRET = generate_secret()
MAX_TEXT_CHARS = 2000


# --- helpers -------------------------------------------------------------------------------------------------------


def clip(lang: str = "fr") -> np.ndarray:
    return decode_audio(DATA / f"utt_{lang}.ogg")


def encode(wave: np.ndarray, fmt: str) -> bytes:
    formats = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}
    formats |= {"opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III")}
    container, subtype = formats[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, wave, 16_000, format=container, subtype=subtype)
    return buffer.getvalue()


def long_audio(clips: int) -> bytes:
    """``clips`` copies of a French utterance with 1.5 s pauses: as many segments, run 2 per batch."""
    pause = np.zeros(24_000, dtype=np.float32)
    one = clip("fr")
    return encode(np.concatenate([np.concatenate([one, pause]) for _ in range(clips)]), "flac")


def write_audio_folder(folder: Path, count: int, *, seed: int) -> list[Path]:
    """``count`` distinct short speech files in every input format (different clips, pads and gains)."""
    folder.mkdir(parents=True, exist_ok=True)
    langs = ["de", "en", "es", "fr", "hi", "zh"]
    formats = ["wav", "flac", "ogg", "opus", "mp3"]
    made = []
    for i in range(count):
        wave = clip(langs[i % len(langs)]) * (0.5 + 0.02 * i + 0.01 * seed)
        wave = np.concatenate([np.zeros(800 * (i + 1) + 100 * seed, dtype=np.float32), wave.astype(np.float32)])
        fmt = formats[i % len(formats)]
        path = folder / f"clip{i:02d}.{fmt}"
        path.write_bytes(encode(wave, fmt))
        made.append(path)
    return made


@dataclass
class Receiver:
    """A webhook receiver on loopback that records every request and answers 204."""

    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with receiver.lock:
                receiver.requests.append({"headers": dict(self.headers.items()), "body": body})
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@dataclass
class Stack:
    url: str
    redis_url: str
    receiver: Receiver


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Stack]:
    receiver, server = start_receiver()
    settings = {
        "M4T_BATCH_SIZE": "2",
        "M4T_MAX_TEXT_CHARS": str(MAX_TEXT_CHARS),
        "M4T_WEBHOOK_SECRETS": SECRET,
        "M4T_WEBHOOK_ALLOW_HOSTS": "127.0.0.1/32",
    }
    try:
        with running_stack(tmp_path_factory.mktemp("client"), tiny_model_dir, webhooks=True, **settings) as running:
            yield Stack(running.url, running.redis.url, receiver)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def m4t(stack: Stack) -> Iterator[Client]:
    with Client(stack.url) as client:
        yield client


def all_jobs(m4t: Client) -> list[Job]:
    return list(m4t.list_jobs(limit=100))


def run_cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def running_job(m4t: Client, timeout_s: float = 30) -> Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for job in m4t.list_jobs(status="running", limit=10):
            if job.progress.done > 0:
                return job
        time.sleep(0.05)
    raise AssertionError("no job started running")


# --- no stack: the webhook verifier, the SSE parser, the retry policy ------------------------------------------------


def test_verify_webhook_accepts_what_the_service_signs_and_nothing_else() -> None:
    old = generate_secret()
    body = json.dumps({"type": "job.succeeded", "data": {"id": "abc"}}).encode()
    now = int(time.time())
    headers = signature_headers(parse_secrets(f"{SECRET},{old}"), "msg_1", now, body)
    assert verify_webhook(headers, body, SECRET)["data"]["id"] == "abc"
    assert verify_webhook({k.upper(): v for k, v in headers.items()}, body.decode(), old)["type"] == "job.succeeded"
    assert verify_webhook(headers, body, f"{generate_secret()},{old}")  # rotation: any one secret matches
    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify_webhook(headers, body + b" ", SECRET)
    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify_webhook(headers, body, generate_secret())
    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify_webhook({**headers, "webhook-id": "msg_2"}, body, SECRET)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(headers, body, SECRET, now=now + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_webhook(headers, body, SECRET, now=now - 301)
    assert verify_webhook(headers, body, SECRET, now=now + 299)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook({"webhook-id": "msg_1"}, body, SECRET)
    raw_key = parse_secrets(SECRET)[0]
    assert verify_webhook(headers, body, base64.b64encode(raw_key).decode())  # the prefix may be left out
    with pytest.raises(ValueError, match="base64"):
        verify_webhook(headers, body, "whsec_%%%")


def test_sse_parser_follows_the_event_stream_format() -> None:
    parser = SSEParser()
    lines = [": keep-alive", "", "id: 1-0", "event: status", 'data: {"status":', 'data: "queued"}', "", "retry: 1500"]
    lines += ["data: not json", "", "id: 2-0", "event: progress", 'data: {"done": 1, "total": 2}', ""]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert [(e.id, e.type) for e in events] == [("1-0", "status"), ("1-0", "message"), ("2-0", "progress")]
    assert events[0].status == "queued"
    assert events[1].data == {"data": "not json"}
    assert (events[2].done, events[2].total) == (1, 2)
    assert parser.last_id == "2-0"
    assert parser.retry_s == 1.5


def scripted(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return httpx.MockTransport(handler)


def test_retries_honour_retry_after_and_are_bounded() -> None:
    languages = {"from_model": True, "modalities": {}, "tasks": {}, "aliases": {"zsm": "zlm"}}
    busy = {"error": {"code": "redis_unavailable", "message": "retry shortly"}}
    seen: list[httpx.Request] = []
    answers = [
        httpx.Response(503, json=busy, headers={"Retry-After": "1"}),
        httpx.Response(429, json={"error": {"code": "rate_limited", "message": "slow down"}}),
        httpx.Response(200, json=languages),
    ]
    with Client("http://m4t.test/api/v1/", "m4t_secret", transport=scripted(answers, seen)) as client:
        started = time.monotonic()
        assert client.languages().aliases == {"zsm": "zlm"}
        assert time.monotonic() - started >= 1.0  # waited the Retry-After
    assert len(seen) == 3
    assert all(r.headers["authorization"] == "Bearer m4t_secret" for r in seen)
    assert str(seen[0].url) == "http://m4t.test/api/v1/languages"

    # A wait longer than max_retry_wait (a daily quota) is not waited for: raised at once, with retry_after.
    seen.clear()
    quota = {"error": {"code": "quota_exceeded", "message": "daily audio quota used"}}
    answers = [httpx.Response(429, json=quota, headers={"Retry-After": "3600"})]
    with Client("http://m4t.test", transport=scripted(answers, seen), max_retry_wait=30) as client:
        started = time.monotonic()
        with pytest.raises(RateLimited) as caught:
            client.get("0" * 32)
        assert time.monotonic() - started < 1
    assert (caught.value.code, caught.value.status, caught.value.retry_after) == ("quota_exceeded", 429, 3600)

    # Retries are bounded: the last answer is raised as its typed error.
    seen.clear()
    answers = [httpx.Response(503, json=busy, headers={"Retry-After": "0"}) for _ in range(3)]
    with (
        Client("http://m4t.test", transport=scripted(answers, seen), retries=2) as client,
        pytest.raises(ServiceUnavailable) as unavailable,
    ):
        client.get("0" * 32)
    assert len(seen) == 3
    assert unavailable.value.code == "redis_unavailable"

    # A non-JSON error page still maps by status; a 401 is Unauthorized.
    answers = [httpx.Response(401, text="nope"), httpx.Response(502, text="<html>bad gateway</html>")]
    with Client("http://m4t.test", transport=scripted(answers, seen)) as client:
        with pytest.raises(Unauthorized) as denied:
            client.get("0" * 32)
        assert denied.value.code == "unauthorized"
        with pytest.raises(APIError) as bad_gateway:
            client.get("0" * 32)
        assert bad_gateway.value.status == 502


def test_an_unreachable_service_is_a_connection_error() -> None:
    with Client(f"http://{LOOPBACK}:{free_port()}", retries=1) as client, pytest.raises(ConnectionFailed) as caught:
        client.health()
    assert isinstance(caught.value, ServiceUnavailable)
    assert caught.value.code == "connection_error"


# --- the client against the stack ----------------------------------------------------------------------------------


def test_health_and_languages(m4t: Client) -> None:
    health = m4t.health()
    assert health.healthy
    assert health.model_loaded
    assert health.checks["redis"] == "ok"
    languages = m4t.languages()
    assert languages.from_model
    assert "eng" in languages.targets("s2st")
    assert languages.tasks["t2tt"].source_required
    assert {lang.code for lang in languages.modalities["speech_output"]} == set(languages.targets("s2st"))


def test_text_jobs_submit_get_wait_and_list_following_cursors(m4t: Client) -> None:
    made = [m4t.submit("t2tt", text=f"Bonjour {i}", src_lang="fra", tgt_lang="eng") for i in range(5)]
    assert all(job.status in ("queued", "running") for job in made)
    assert m4t.get(made[0].id).id == made[0].id
    done = [m4t.wait(job) for job in made]
    assert all(job.succeeded and job.text for job in done)
    assert m4t.wait(done[0]) is done[0]  # an ended job: nothing to wait for
    assert done[0].result is not None
    assert done[0].result.segments is None
    newest = list(m4t.list_jobs(limit=2, max_items=5))  # three pages of at most two
    assert [job.id for job in newest] == [job.id for job in made[::-1]]
    succeeded = list(m4t.list_jobs(status="succeeded", limit=3))
    assert {job.id for job in made} <= {job.id for job in succeeded}
    assert all(job.status == "succeeded" for job in succeeded)

    job = m4t.translate_text("Bonjour le monde", src_lang="fra", tgt_lang="spa", speech=True, output_format="ogg")
    assert job.task == "t2st"
    assert job.result is not None
    assert job.result.audio is not None
    assert job.result.audio.format == "ogg"
    assert m4t.download_audio(job)[:4] == b"OggS"

    again = m4t.submit("t2tt", text="Une fois", src_lang="fra", tgt_lang="eng", idempotency_key="client-once")
    replay = m4t.submit("t2tt", text="Une fois", src_lang="fra", tgt_lang="eng", idempotency_key="client-once")
    assert replay.id == again.id
    assert replay.replayed
    assert not again.replayed
    with pytest.raises(InvalidRequest) as reused:
        m4t.submit("t2tt", text="Autre", src_lang="fra", tgt_lang="eng", idempotency_key="client-once")
    assert reused.value.code == "idempotency_key_reused"


def test_speech_jobs_download_audio_and_subtitles(m4t: Client, tmp_path: Path) -> None:
    path = DATA / "speech_fr.wav"
    job = m4t.translate_speech(path, tgt_lang="eng", speech=True, output_format="flac")
    assert job.task == "s2st"
    assert job.result is not None
    assert job.result.segments
    assert job.result.audio is not None
    audio = m4t.download_audio(job.id)
    assert audio[:4] == b"fLaC"
    saved = m4t.download_audio(job, tmp_path / "out.flac")
    assert saved.read_bytes() == audio
    assert [p.name for p in tmp_path.iterdir()] == ["out.flac"]  # no temporary file left behind
    srt = m4t.subtitles(job)
    assert srt.startswith("1\n00:00:0")
    assert " --> " in srt
    vtt = m4t.subtitles(job.id, "vtt")
    assert vtt.startswith("WEBVTT")

    with path.open("rb") as f:  # a file object, and bytes, work as well as a path
        from_file = m4t.submit("s2tt", audio=f, tgt_lang="fra")
    from_bytes = m4t.submit("s2tt", audio=path.read_bytes(), tgt_lang="fra")
    assert m4t.wait(from_file).text == m4t.wait(from_bytes).text


def test_errors_are_typed_with_the_envelope_code(m4t: Client, stack: Stack) -> None:
    with pytest.raises(NotFound) as missing:
        m4t.get("0" * 32)
    assert (missing.value.status, missing.value.code) == (404, "job_not_found")
    with pytest.raises(NotFound):
        m4t.get("not-a-job-id")

    text_job = m4t.translate_text("Bonjour", src_lang="fra", tgt_lang="eng")
    with pytest.raises(NotFound) as no_audio:
        m4t.download_audio(text_job)
    assert no_audio.value.code == "no_audio"
    with pytest.raises(NotFound) as no_subtitles:
        m4t.subtitles(text_job)
    assert no_subtitles.value.code == "no_subtitles"
    with pytest.raises(Conflict) as finished:
        m4t.cancel(text_job)
    assert (finished.value.status, finished.value.code) == (409, "job_finished")

    with pytest.raises(InvalidRequest) as language:
        m4t.submit("s2st", audio=DATA / "utt_fr.ogg", tgt_lang="tam")
    assert (language.value.status, language.value.code) == (422, "unsupported_language")
    assert language.value.field == "tgt_lang"
    assert language.value.valid
    assert "eng" in language.value.valid
    with pytest.raises(InvalidRequest) as empty:
        m4t.submit("t2tt", text="   ", src_lang="fra", tgt_lang="eng")
    assert empty.value.code == "empty_text"
    with pytest.raises(InvalidRequest) as no_src:
        m4t.submit("t2tt", text="Bonjour", tgt_lang="eng")
    assert no_src.value.code == "invalid_request"
    with pytest.raises(PayloadTooLarge) as too_long:
        m4t.submit("t2tt", text="a" * (MAX_TEXT_CHARS + 1), src_lang="fra", tgt_lang="eng")
    assert (too_long.value.status, too_long.value.code) == (413, "payload_too_large")
    with pytest.raises(UnsupportedMediaType) as not_audio:
        m4t.submit("s2tt", audio=b"this is not audio " * 50, tgt_lang="eng")
    assert (not_audio.value.status, not_audio.value.code) == (415, "unsupported_media_type")
    with pytest.raises(InvalidRequest) as truncated:
        m4t.submit("s2tt", audio=(DATA / "utt_fr.ogg").read_bytes()[:3000], tgt_lang="eng")
    assert truncated.value.code == "invalid_audio"

    # 410: a job whose results were deleted (its expiry marker, as the job store leaves it, on an unknown id).
    expired = "e" * 32
    with redis.Redis.from_url(stack.redis_url) as client:
        client.set(f"m4t:gone:{expired}", "60", ex=60)
    with pytest.raises(Gone) as gone:
        m4t.get(expired)
    assert (gone.value.status, gone.value.code) == (410, "job_expired")

    with pytest.raises(ValueError, match="takes audio"):
        m4t.submit("s2tt", text="Bonjour", tgt_lang="eng")
    with pytest.raises(ValueError, match="task"):
        m4t.submit("x2y", text="Bonjour", tgt_lang="eng")


def test_events_run_to_the_end_and_resume_after_last_event_id(m4t: Client) -> None:
    job = m4t.submit("s2tt", audio=long_audio(8), tgt_lang="eng")
    events = list(m4t.events(job))
    assert (events[0].type, events[0].status) == ("status", "queued")
    assert ("status", "running") in [(e.type, e.status) for e in events]
    assert events[-1].terminal
    assert events[-1].status == "succeeded"
    final = events[-1].job
    assert final is not None
    assert final.text
    progress = [e.done for e in events if e.type == "progress"]
    assert progress == sorted(progress)
    assert progress[-1] == 8
    middle = events[len(events) // 2]
    rest = list(m4t.events(job.id, last_event_id=middle.id))
    assert [e.id for e in rest] == [e.id for e in events[len(events) // 2 + 1 :]]


class DroppingProxy:
    """A TCP proxy to the gateway that cuts the first events stream (one without Last-Event-ID) right after its
    ``cut_after``-th event, as a flaky network would."""

    def __init__(self, upstream: str, cut_after: int = 2) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.cut_after = cut_after
        self.heads: list[bytes] = []
        self.listener = socket.create_server((LOOPBACK, 0))
        self.url = f"http://{LOOPBACK}:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self.upstream) as upstream:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            self.heads.append(head)
            upstream.sendall(head[: head.index(b"\r\n\r\n")] + b"\r\nConnection: close\r\n\r\n")
            cut = b"/events" in head.split(b"\r\n", 1)[0] and b"last-event-id" not in head.lower()
            forwarded = b""
            while data := upstream.recv(65536):
                if cut:
                    forwarded += data
                    ends = [i for i in range(len(forwarded)) if forwarded.startswith(b"\n\n", i)]
                    if len(ends) >= self.cut_after:
                        keep = len(data) - (len(forwarded) - ends[self.cut_after - 1] - 2)
                        conn.sendall(data[:keep])
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
                        return  # closed mid-response: the client sees the connection drop
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()


def test_events_reconnect_with_last_event_id_when_the_connection_drops(m4t: Client, stack: Stack) -> None:
    job = m4t.submit("s2tt", audio=long_audio(6), tgt_lang="eng")
    proxy = DroppingProxy(stack.url)
    try:
        with Client(proxy.url) as flaky:
            seen = list(flaky.events(job))
    finally:
        proxy.close()
    streams = [h for h in proxy.heads if b"/events" in h.split(b"\r\n", 1)[0]]
    assert len(streams) == 2
    assert f"last-event-id: {seen[1].id}".encode() in streams[1].lower()
    direct = list(m4t.events(job))
    assert [e.id for e in seen] == [e.id for e in direct]  # nothing missed, nothing repeated
    assert seen[-1].status == "succeeded"


def test_wait_times_out_then_cancel_stops_a_running_long_job(m4t: Client) -> None:
    job = m4t.submit("s2st", audio=long_audio(40), tgt_lang="eng")
    with pytest.raises(WaitTimeout) as timed_out:
        m4t.wait(job, timeout=0.5)
    assert timed_out.value.code == "timeout"
    for event in m4t.events(job):
        if event.type == "progress":
            break  # it is running: a batch is done
    cancelling = m4t.cancel(job)
    assert cancelling.cancel_requested
    assert cancelling.status == "running"
    seen: list[str] = []
    with pytest.raises(JobFailed) as failed:
        m4t.wait(job, on_event=lambda e: seen.append(e.type))
    assert failed.value.code == "cancelled"
    assert failed.value.job.status == "cancelled"
    assert failed.value.job.progress.done < failed.value.job.progress.total
    assert "status" in seen
    ended = m4t.wait(job, raise_on_failure=False)
    assert ended.status == "cancelled"
    with pytest.raises(Conflict) as again:
        m4t.cancel(job)
    assert again.value.code == "job_finished"
    with pytest.raises(Conflict) as not_ready:
        m4t.download_audio(job)
    assert not_ready.value.code == "result_not_ready"


def test_webhooks_are_listed_and_verify(m4t: Client, stack: Stack) -> None:
    job = m4t.translate_text("Bonjour", src_lang="fra", tgt_lang="eng", webhook_url=stack.receiver.url)
    assert job.webhook_url == stack.receiver.url
    deadline = time.monotonic() + 30
    while not (events := m4t.webhooks(job)) or events[0].status == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert events[0].status == "delivered"
    assert events[0].type == "job.succeeded"
    assert events[0].attempts[0].status_code == 204
    with stack.receiver.lock:
        request = next(r for r in stack.receiver.requests if r["headers"].get("webhook-id") == events[0].id)
    payload = verify_webhook(request["headers"], request["body"], SECRET)
    assert payload["data"]["id"] == job.id
    assert payload["data"]["text"] == job.text
    with pytest.raises(WebhookVerificationError):
        verify_webhook(request["headers"], request["body"], generate_secret())


def test_async_client(stack: Stack, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AsyncClient(stack.url) as m4t:
            assert (await m4t.health()).healthy
            assert "eng" in (await m4t.languages()).targets("t2tt")
            job = await m4t.translate_text("Bonjour", src_lang="fra", tgt_lang="eng")
            assert job.succeeded
            assert job.text
            assert job.id in [j.id async for j in m4t.list_jobs(limit=2, max_items=4)]
            speech = await m4t.submit("s2st", audio=DATA / "utt_es.ogg", tgt_lang="eng")
            updates: list[str] = []

            async def on_event(event: Any) -> None:
                updates.append(event.type)

            done = await m4t.wait(speech, on_event=on_event)
            assert updates[-1] == "status"
            assert [e.id async for e in m4t.events(speech)][-1]
            assert (await m4t.download_audio(done, tmp_path / "a.wav")).read_bytes()[:4] == b"RIFF"
            assert (await m4t.download_audio(done))[:4] == b"RIFF"
            assert "-->" in await m4t.subtitles(done)
            assert (await m4t.get(done.id)).succeeded
            assert await m4t.webhooks(done) == []
            with pytest.raises(Conflict):
                await m4t.cancel(done)
            with pytest.raises(NotFound):
                await m4t.get("0" * 32)
            spoken = await m4t.translate_speech(DATA / "utt_de.ogg", tgt_lang="fra")
            assert spoken.result is not None
            assert spoken.result.segments

    asyncio.run(scenario())


def test_an_api_key_is_sent_and_auth_errors_are_typed(tmp_path: Path) -> None:
    """A gateway with M4T_AUTH on (no worker: jobs stay queued)."""
    with RedisServer(tmp_path / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{tmp_path / 'storage'}",
            model="unused",
            data_dir=tmp_path / "data",
            M4T_AUTH="on",
        )
        with redis.Redis.from_url(redis_server.url) as r:
            key, _ = ApiKeyStore(r).create("client-test", rate_limit_per_min=3)
        with GatewayProcess(tmp_path, env) as gateway:
            if time.time() % 60 > 55:  # the limit counts per clock minute: keep the four requests in one
                time.sleep(61 - time.time() % 60)
            with Client(gateway.url) as anonymous, pytest.raises(Unauthorized) as missing:
                anonymous.get("0" * 32)
            assert (missing.value.status, missing.value.code) == (401, "unauthorized")
            with Client(gateway.url, "m4t_not-a-key") as wrong, pytest.raises(Unauthorized):
                list(wrong.list_jobs())
            with Client(gateway.url, key, retries=0) as keyed:
                job = keyed.submit("t2tt", text="Bonjour", src_lang="fra", tgt_lang="eng")  # 1st request
                assert keyed.get(job).status == "queued"  # 2nd
                assert [j.id for j in keyed.list_jobs()] == [job.id]  # 3rd
                with pytest.raises(RateLimited) as limited:  # 4th this minute
                    keyed.get(job)
            assert (limited.value.status, limited.value.code) == (429, "rate_limited")
            assert limited.value.retry_after is not None
            assert 0 < limited.value.retry_after <= 61


# --- the command line ------------------------------------------------------------------------------------------------


def test_cli_asks_for_the_format_of_out_and_names_batch_outputs_by_extension(tmp_path: Path) -> None:
    import argparse

    from client.cli import _translate_request, add_client_commands, plan_batch

    parser = argparse.ArgumentParser()
    add_client_commands(parser.add_subparsers(dest="command", required=True))

    def asked(*argv: str) -> Any:
        request = _translate_request(parser.parse_args(["translate", "Hola", "--tgt", "eng", *argv]))
        assert not isinstance(request, str), request
        return request[1]["output_format"]

    suffixes = {".m4a": "aac", ".opus": "opus", ".pcm": "pcm", ".MP3": "mp3", ".ogg": "ogg", ".aac": None}
    for suffix, fmt in suffixes.items():
        assert asked("--out", f"x{suffix}") == fmt, suffix  # None: the server's default, wav
    assert asked("--out", "x.m4a", "--format", "pcm") == "pcm"  # --format wins
    outputs = {fmt: plan_batch([tmp_path / "a.wav"], tmp_path, "s2st", fmt)[0].outputs["audio"].name
               for fmt in ("aac", "opus", "pcm", "wav")}  # fmt: skip
    assert outputs == {"aac": "a.m4a", "opus": "a.opus", "pcm": "a.pcm", "wav": "a.wav"}


def test_cli_translate_text_and_speech(stack: Stack, tmp_path: Path) -> None:
    done = run_cli("translate", "Bonjour le monde", "--src", "fra", "--tgt", "eng", "--url", stack.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()

    out, srt = tmp_path / "out.mp3", tmp_path / "out.srt"
    env = {"M4T_API_URL": stack.url, "M4T_API_KEY": "ignored-when-auth-is-off"}
    done = run_cli("translate", str(DATA / "utt_fr.ogg"), "--tgt", "eng", "--out", str(out), "--srt", str(srt), **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    mp3 = out.read_bytes()  # the format comes from --out's suffix
    assert mp3[:3] == b"ID3" or mp3[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")
    assert srt.read_text().startswith("1\n")

    done = run_cli("translate", str(DATA / "utt_fr.ogg"), "--tgt", "eng", "--json", "--url", stack.url)
    job = json.loads(done.stdout)
    assert (job["task"], job["status"]) == ("s2tt", "succeeded")

    usage = run_cli("translate", "Bonjour", "--src", "fra", "--tgt", "eng", "--out", "x.wav", "--task", "t2tt")
    assert usage.returncode == 2
    assert "--out needs speech output" in usage.stderr
    no_file = run_cli("translate", "missing.wav", "--task", "s2tt", "--tgt", "eng", "--url", stack.url)
    assert no_file.returncode == 2
    bad_language = run_cli("translate", "Bonjour", "--src", "fra", "--tgt", "xxx", "--url", stack.url)
    assert bad_language.returncode == 2
    assert "unsupported_language" in bad_language.stderr
    no_args = run_cli("translate", "Bonjour")
    assert no_args.returncode == 2  # argparse: --tgt is required
    down = run_cli("translate", "Bonjour", "--src", "fra", "--tgt", "eng", "--url", f"http://{LOOPBACK}:{free_port()}")
    assert down.returncode == 3
    assert "connection_error" in down.stderr


def test_cli_translate_exits_1_when_its_job_is_cancelled(stack: Stack, m4t: Client, tmp_path: Path) -> None:
    long_file = tmp_path / "long.flac"
    long_file.write_bytes(long_audio(40))
    process = subprocess.Popen(
        [sys.executable, "-m", "client.cli", "translate", str(long_file), "--tgt", "eng", "--url", stack.url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        m4t.cancel(running_job(m4t))
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 1, stderr
    assert "cancelled" in stderr
    assert stdout == ""


def summary_counts(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def test_cli_batch_reports_corrupt_files_and_a_rerun_skips_what_is_done(
    stack: Stack, m4t: Client, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    write_audio_folder(inputs, 18, seed=1)
    (inputs / "corrupt_garbage.wav").write_bytes(b"this is not audio " * 50)
    (inputs / "corrupt_truncated.ogg").write_bytes((DATA / "utt_fr.ogg").read_bytes()[:3000])
    (inputs / "notes.txt").write_text("not audio: not picked up")
    out = tmp_path / "out"
    before = len(all_jobs(m4t))

    started = time.monotonic()
    done = run_cli("batch", str(inputs), "--tgt", "eng", "--task", "s2tt", "--out", str(out), "--concurrency", "4",
                   "--url", stack.url)  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert summary_counts(done.stdout) == "done 18, skipped 0, failed 2"
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:-1]}
    assert len(rows) == 20
    assert "failed" in rows["corrupt_garbage.wav"]
    assert "unsupported_media_type" in rows["corrupt_garbage.wav"]
    assert "failed" in rows["corrupt_truncated.ogg"]
    assert "invalid_audio" in rows["corrupt_truncated.ogg"]
    assert "[20/20]" in done.stderr  # the plain progress lines (stderr is not a terminal)
    for i in range(18):
        assert rows[f"clip{i:02d}.{['wav', 'flac', 'ogg', 'opus', 'mp3'][i % 5]}"].split()[1] == "done"
        assert (out / f"clip{i:02d}.txt").read_text().strip()
        assert " --> " in (out / f"clip{i:02d}.srt").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"clip{i:02d}.{ext}" for i in range(18) for ext in ("txt", "srt")
    )
    made = len(all_jobs(m4t)) - before
    assert made == 18  # the corrupt files were refused at submission
    assert took < 60

    again = run_cli("batch", str(inputs), "--tgt", "eng", "--out", str(out), "--url", stack.url)
    assert again.returncode == 1
    assert summary_counts(again.stdout) == "done 0, skipped 18, failed 2"
    assert len(all_jobs(m4t)) - before == made  # nothing resubmitted

    (out / "clip03.txt").unlink()  # an output gone: that file is done again, by replaying its job (no new one)
    third = run_cli("batch", str(inputs), "--tgt", "eng", "--out", str(out), "--url", stack.url, "-q")
    assert summary_counts(third.stdout) == "done 1, skipped 17, failed 2"
    assert third.stderr == ""
    assert len(all_jobs(m4t)) - before == made


def test_cli_batch_interrupted_then_resumed_makes_no_duplicate_jobs(stack: Stack, m4t: Client, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_audio_folder(inputs, 20, seed=2)
    argv = ["batch", str(inputs), "--tgt", "deu", "--task", "s2st", "--format", "flac", "--out", str(out)]
    argv += ["--concurrency", "2", "--url", stack.url]

    def ours() -> list[Job]:
        return [j for j in all_jobs(m4t) if j.task == "s2st" and j.tgt_lang == "deu"]

    assert ours() == []
    process = subprocess.Popen(
        [sys.executable, "-m", "client.cli", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not out.exists() or len(list(out.glob("*.txt"))) < 3:
            assert process.poll() is None, "the batch ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished_before = len(list(out.glob("*.txt")))
    assert 3 <= finished_before < 20
    submitted_before = len(ours())
    assert submitted_before >= finished_before

    resumed = run_cli(*argv)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    last = summary_counts(resumed.stdout)
    assert last == f"done {20 - finished_before}, skipped {finished_before}, failed 0"
    expected = {f"clip{i:02d}.{ext}" for i in range(20) for ext in ("txt", "srt", "flac")}
    assert {p.name for p in out.iterdir()} == expected  # and no partial file left by the killed run
    for i in range(20):
        assert (out / f"clip{i:02d}.flac").read_bytes()[:4] == b"fLaC"
    jobs = ours()
    assert len(jobs) == 20  # one job per file: the jobs of the killed run were picked up, not made again
    assert all(job.succeeded for job in jobs)


def test_cli_batch_redoes_a_file_whose_earlier_job_was_cancelled(stack: Stack, m4t: Client, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    talk = inputs / "talk.flac"
    talk.write_bytes(long_audio(4))
    options = {"task": "s2tt", "src_lang": None, "tgt_lang": "spa", "speaker_id": None, "priority": "low"}
    key = batch_key(talk, options)
    # as a crashed run left it (the worker serves many jobs at once: it may already be running when cancelled)
    earlier = m4t.submit("s2tt", audio=talk, tgt_lang="spa", idempotency_key=key, priority="low")
    m4t.cancel(earlier)
    assert m4t.wait(earlier, 60, raise_on_failure=False).status == "cancelled"

    done = run_cli("batch", str(inputs), "--tgt", "spa", "--out", str(out), "--url", stack.url, "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert summary_counts(done.stdout) == "done 1, skipped 0, failed 0"
    redone = done.stdout.splitlines()[1].split()[-1]
    assert redone != earlier.id
    assert m4t.get(redone).succeeded
    assert (out / "talk.txt").read_text().strip()
