"""The gateway over real HTTP with a real Redis and real S3, and no worker: validation, the error envelope,
limits, nothing half-stored on rejection, and outages of Redis and storage."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from services import RedisServer, S3Server
from stack import GatewayProcess, stack_env

DATA = Path(__file__).parent / "data"
API = "/api/v1"


class Gateway:
    def __init__(self, process: GatewayProcess, redis: RedisServer, s3: S3Server, bucket: str) -> None:
        self.process, self.redis, self.s3, self.bucket = process, redis, s3, bucket
        self.http = httpx.Client(base_url=process.url, timeout=30)

    def stored_objects(self) -> list[str]:
        from shared.storage import S3Storage

        with S3Storage(self.s3.endpoint, self.s3.access_key, self.s3.secret_key, self.bucket) as storage:
            return list(storage.list_keys("jobs/"))

    def queue_depth(self) -> int:
        body = self.http.get(f"{API}/health").json()
        return int(body["queue_depth"])


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Its own Redis and S3, since the outage tests stop them."""
    workdir = tmp_path_factory.mktemp("gateway-only")
    bucket = "gateway-only"
    with RedisServer(workdir / "redis") as redis_server, S3Server(workdir / "s3") as s3_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"s3://{bucket}",
            model="unused",
            data_dir=workdir / "data",
            s3=s3_server.settings_env,
            M4T_SYNC_WAIT_S="1",
            M4T_MAX_TEXT_CHARS="1000",
            M4T_MAX_UPLOAD_MB="1",
            M4T_MAX_AUDIO_S="2.5",
        )
        with GatewayProcess(workdir, env) as process:
            gateway = Gateway(process, redis_server, s3_server, bucket)
            yield gateway
            gateway.http.close()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


def wav_bytes(seconds: float, rate: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# --- accepted submissions ------------------------------------------------------------------------------------


def test_text_job_is_accepted_with_location(gw: Gateway) -> None:
    response = gw.http.post(
        f"{API}/jobs", json={"task": "t2tt", "text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng"}
    )
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == job["links"]["self"]
    assert job["status"] == "queued"
    assert job["task"] == "t2tt"
    assert job["input"] == {"chars": 7}
    polled = gw.http.get(response.headers["location"])
    assert polled.status_code == 200
    assert polled.json()["id"] == job["id"]


def test_speech_job_is_accepted_and_its_audio_stored(gw: Gateway) -> None:
    before = set(gw.stored_objects())
    audio = (DATA / "speech_en.wav").read_bytes()
    response = gw.http.post(
        f"{API}/jobs",
        data={"task": "s2tt", "tgt_lang": "fra"},
        files={"audio_file": ("hello.wav", audio, "audio/wav")},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["input"]["filename"] == "hello.wav"
    assert job["input"]["duration_s"] == pytest.approx(1.88, abs=0.01)
    assert job["src_lang"] is None
    new = set(gw.stored_objects()) - before
    assert new == {f"jobs/{job['id']}/input/audio.wav"}


def test_seed_endpoint_answers_202_when_the_job_outlives_the_wait(gw: Gateway) -> None:
    started = time.monotonic()
    response = gw.http.post(f"{API}/t2tt", json={"text": "Bonjour le monde", "src_lang": "fra", "tgt_lang": "eng"})
    waited = time.monotonic() - started
    assert response.status_code == 202
    assert response.headers["location"].endswith(f"/api/v1/jobs/{response.json()['id']}")
    assert 0.9 < waited < 5


def test_prefer_respond_async_answers_at_once(gw: Gateway) -> None:
    started = time.monotonic()
    response = gw.http.post(
        f"{API}/t2st",
        json={"text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng"},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202
    assert response.headers["preference-applied"] == "respond-async"
    assert time.monotonic() - started < 0.8


# --- refused submissions: envelope, status, nothing stored, nothing enqueued -----------------------------------


_DROP = object()


def text_job(**changes: object) -> dict[str, Any]:
    body: dict[str, Any] = {"task": "t2tt", "text": "a", "src_lang": "fra", "tgt_lang": "eng"}
    body.update(changes)
    return {"json": {k: v for k, v in body.items() if v is not _DROP}}


def speech_job(audio: bytes, **fields: str) -> dict[str, Any]:
    return {
        "data": {"task": "s2tt", "tgt_lang": "eng", **fields},
        "files": {"audio_file": ("a.wav", audio, "audio/wav")},
    }


def raw(body: bytes, content_type: str) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": content_type}}


BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown task", text_job(task="t2xx"), 422, "invalid_request"),
    ("missing field", text_job(tgt_lang=_DROP), 422, "invalid_request"),
    ("unknown field", text_job(x=1), 422, "invalid_request"),
    ("wrong type", text_job(text=5), 422, "invalid_request"),
    ("empty text", text_job(text=""), 422, "empty_text"),
    ("blank text", text_job(text=" \n\t\u200b\x00"), 422, "empty_text"),
    ("text too long", text_job(text="a" * 1001), 413, "payload_too_large"),
    ("bad target", text_job(task="t2st", tgt_lang="tam"), 422, "unsupported_language"),
    ("bad source", text_job(src_lang="xx"), 422, "unsupported_language"),
    ("speech task as json", text_job(task="s2tt"), 422, "invalid_request"),
    ("negative speaker", text_job(task="t2st", speaker_id=-1), 422, "invalid_request"),
    ("not json", raw(b"{not json", "application/json"), 422, "invalid_json"),
    ("invalid utf-8", raw(b'{"task": "t2tt", "text": "\xff\xfe"}', "application/json"), 422, "invalid_json"),
    ("json array", {"json": ["t2tt"]}, 422, "invalid_json"),
    ("plain text body", raw(b"hello", "text/plain"), 415, "unsupported_media_type"),
    (
        "no audio file",
        {"data": {"task": "s2tt", "tgt_lang": "eng"}, "files": {"other": ("a", b"x")}},
        422,
        "invalid_request",
    ),
    ("not audio", speech_job(b"hello world" * 10), 415, "unsupported_media_type"),
    ("empty file", speech_job(b""), 422, "invalid_audio"),
    ("truncated m4a", speech_job((DATA / "speech_en.m4a").read_bytes()[:4000]), 422, "invalid_audio"),
    ("audio too long", speech_job(wav_bytes(3.0)), 413, "audio_too_long"),
    ("upload too big", speech_job(wav_bytes(40.0)), 413, "payload_too_large"),
    ("text task as form", speech_job(wav_bytes(1.0), task="t2tt"), 422, "invalid_request"),
    ("bad output format", speech_job(wav_bytes(1.0), task="s2st", output_format="aiff"), 422, "invalid_request"),
    ("speech target not spoken", speech_job(wav_bytes(1.0), task="s2st", tgt_lang="kan"), 422, "unsupported_language"),
]


@pytest.mark.parametrize(("case", "request_kwargs", "status", "code"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_submissions_get_the_envelope_and_leave_nothing_behind(
    gw: Gateway, case: str, request_kwargs: dict[str, Any], status: int, code: str
) -> None:
    objects, depth = set(gw.stored_objects()), gw.queue_depth()
    response = gw.http.post(f"{API}/jobs", **request_kwargs)
    error = assert_error(response, status, code)
    if code == "unsupported_language":
        assert error["field"] in ("src_lang", "tgt_lang")
        assert "eng" in error["valid"]
    assert set(gw.stored_objects()) == objects
    assert gw.queue_depth() == depth


def test_seed_endpoints_refuse_the_wrong_body_kind(gw: Gateway) -> None:
    assert_error(
        gw.http.post(f"{API}/s2tt", json={"src_lang": "fra", "tgt_lang": "eng"}), 415, "unsupported_media_type"
    )
    assert_error(gw.http.post(f"{API}/t2tt", data={"text": "a"}), 415, "unsupported_media_type")
    assert_error(gw.http.post(f"{API}/t2tt", json={"text": "a", "src_lang": "fra"}), 422, "invalid_request")


def test_unknown_jobs_are_404(gw: Gateway) -> None:
    for job_id in ("0" * 32, "not-an-id", "%2e%2e"):
        assert_error(gw.http.get(f"{API}/jobs/{job_id}"), 404, "job_not_found")
    assert_error(gw.http.get(f"{API}/jobs/%2e%2e%2fetc%2fpasswd"), 404, "not_found")
    assert_error(gw.http.get(f"{API}/jobs/{'0' * 32}/audio"), 404, "job_not_found")
    assert_error(gw.http.get(f"{API}/nowhere"), 404, "not_found")
    assert_error(gw.http.delete(f"{API}/health"), 405, "method_not_allowed")


def test_audio_of_an_unfinished_job_is_409(gw: Gateway) -> None:
    job = gw.http.post(
        f"{API}/jobs", json={"task": "t2st", "text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng"}
    ).json()
    assert_error(gw.http.get(f"{API}/jobs/{job['id']}/audio"), 409, "result_not_ready")
    text_job = gw.http.post(
        f"{API}/jobs", json={"task": "t2tt", "text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng"}
    ).json()
    assert_error(gw.http.get(f"{API}/jobs/{text_job['id']}/audio"), 404, "no_audio")


# --- service endpoints -----------------------------------------------------------------------------------------


def test_health_is_degraded_without_workers_and_counts_the_queue(gw: Gateway) -> None:
    before = gw.queue_depth()
    gw.http.post(f"{API}/jobs", json={"task": "t2tt", "text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng"})
    body = gw.http.get(f"{API}/health").json()
    assert body["status"] == "degraded"
    assert body["model_loaded"] is False
    assert body["workers"] == []
    assert body["queue_depth"] == before + 1
    assert set(body["services"]) == {"s2st", "s2tt", "t2st", "t2tt"}
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["storage"] == "ok"


def test_languages_before_any_worker_are_the_published_checkpoint_lists(gw: Gateway) -> None:
    body = gw.http.get(f"{API}/languages").json()
    assert body["from_model"] is False
    assert len(body["modalities"]["speech_output"]) == 36
    assert len(body["modalities"]["text_output"]) == 98
    assert {"code": "fra", "name": "French"} in body["modalities"]["text_input"]
    assert body["tasks"]["s2st"]["source_required"] is False
    assert "tam" not in body["tasks"]["t2st"]["targets"]
    assert "tam" in body["tasks"]["t2tt"]["targets"]
    assert body["aliases"] == {"zsm": "zlm"}


def test_docs_and_openapi(gw: Gateway) -> None:
    for page in ("/docs", "/redoc"):
        response = gw.http.get(page)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
    spec = gw.http.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/audio",
        "/api/v1/s2st",
        "/api/v1/t2tt",
    ):
        assert path in paths
    body = paths["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}


# --- outages ---------------------------------------------------------------------------------------------------


def test_redis_outage_is_503_and_the_gateway_recovers(gw: Gateway) -> None:
    job = gw.http.post(
        f"{API}/jobs", json={"task": "t2tt", "text": "Avant", "src_lang": "fra", "tgt_lang": "eng"}
    ).json()
    gw.redis.stop()
    try:
        submitted = gw.http.post(
            f"{API}/jobs", json={"task": "t2tt", "text": "Pendant", "src_lang": "fra", "tgt_lang": "eng"}
        )
        assert_error(submitted, 503, "redis_unavailable")
        assert int(submitted.headers["retry-after"]) > 0
        assert_error(gw.http.get(f"{API}/jobs/{job['id']}"), 503, "redis_unavailable")
        health = gw.http.get(f"{API}/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert health.json()["checks"]["redis"] == "unreachable"
        languages = gw.http.get(f"{API}/languages")
        assert languages.status_code == 200
    finally:
        gw.redis.start()
    deadline = time.monotonic() + 15
    while True:
        response = gw.http.post(
            f"{API}/jobs", json={"task": "t2tt", "text": "Après", "src_lang": "fra", "tgt_lang": "eng"}
        )
        if response.status_code == 202 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 202, response.text
    assert gw.http.get(f"{API}/health").json()["checks"]["redis"] == "ok"


def test_storage_outage_is_503_with_nothing_enqueued(gw: Gateway) -> None:
    depth = gw.queue_depth()
    gw.s3.stop()
    try:
        response = gw.http.post(
            f"{API}/jobs", json={"task": "t2tt", "text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng"}
        )
        assert_error(response, 503, "storage_unavailable")
        assert "retry-after" in response.headers
        assert gw.queue_depth() == depth
        assert gw.http.get(f"{API}/health").json()["checks"]["storage"] == "unreachable"
    finally:
        gw.s3.start()
    response = gw.http.post(
        f"{API}/jobs", json={"task": "t2tt", "text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng"}
    )
    assert response.status_code == 202, response.text
    assert json.loads(response.text)["status"] == "queued"


# --- several gateway processes -------------------------------------------------------------------------------


def test_several_gateway_processes_share_one_port_and_stop_together(tmp_path: Path) -> None:
    """``M4T_API_PROCESSES=2``: two uvicorn processes behind one port serve the same jobs; stopping the gateway
    stops both."""
    with RedisServer(tmp_path / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{tmp_path / 'storage'}",
            model="unused",
            data_dir=tmp_path / "data",
            M4T_API_PROCESSES="2",
        )
        gateway = GatewayProcess(tmp_path, env)
        with gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
            assert gateway._proc is not None
            parent = gateway._proc.pid
            children = [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
            serving = [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            assert len(serving) == 2, children
            ids = set()
            for i in range(30):  # new connections: the kernel spreads them over both processes
                with httpx.Client(base_url=gateway.url, timeout=30) as fresh:
                    job = fresh.post(f"{API}/jobs", **text_job(text=f"Bonjour {i}"))
                assert job.status_code == 202, job.text
                ids.add(job.json()["id"])
            assert len(ids) == 30
            for job_id in ids:
                assert http.get(f"{API}/jobs/{job_id}").json()["status"] == "queued"
            assert http.get(f"{API}/health").json()["queue_depth"] == 30
        deadline = time.monotonic() + 10  # multiprocessing's resource tracker may take a moment after its parent
        while alive := [pid for pid in children if _alive(pid)]:
            assert time.monotonic() < deadline, f"still running after the gateway stopped: {alive}"
            time.sleep(0.1)


def test_several_gateway_processes_refuse_the_mounted_ui(tmp_path: Path) -> None:
    env = stack_env(
        redis_url="redis://127.0.0.1:1/0",
        storage_url=f"file://{tmp_path / 'storage'}",
        model="unused",
        data_dir=tmp_path / "data",
        M4T_API_PROCESSES="2",
        M4T_UI_MOUNT="true",
    )
    ended = subprocess.run(
        [sys.executable, "-m", "m4t.cli", "gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert ended.returncode == 2
    assert "M4T_UI_MOUNT needs M4T_API_PROCESSES=1" in ended.stderr
    assert "Traceback" not in ended.stderr


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


# --- the gateway stays free of the model's libraries ------------------------------------------------------------


def test_the_running_gateway_never_loads_torch_or_transformers(gw: Gateway) -> None:
    """After serving submissions, health and languages, the gateway process has neither torch's native library
    mapped nor transformers imported (``m4t gateway`` builds the same app as ``create_app``)."""
    for path in ("/api/v1/health", "/api/v1/languages", "/openapi.json"):
        assert gw.http.get(path).status_code == 200
    assert gw.http.post(f"{API}/jobs", **text_job(text="Bonjour")).status_code == 202
    assert gw.http.post(f"{API}/jobs", **speech_job(wav_bytes(1.0))).status_code == 202  # the audio probe too
    assert gw.process._proc is not None
    maps = Path(f"/proc/{gw.process._proc.pid}/maps").read_text()
    assert "libtorch" not in maps
    assert "torch/_C" not in maps
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from gateway.app import create_app; from shared.settings import GatewaySettings; "
            "create_app(GatewaySettings()); import m4t.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'worker'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    ).stdout.strip()
    assert imported == "[]"
