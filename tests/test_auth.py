"""API keys over real HTTP: keys made with the real `m4t keys` command, isolation between keys, admin keys,
revocation at once, per-key limits and the global queue limit, and no secret in logs."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import soundfile as sf
from services import RedisServer
from stack import GatewayProcess, stack_env

API = "/api/v1"
DATA = Path(__file__).parent / "data"


@dataclass
class AuthStack:
    redis: RedisServer
    env: dict[str, str]
    gateway: GatewayProcess
    http: httpx.Client
    workdir: Path

    def keys(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "m4t.cli", "keys", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def new_key(self, name: str, *options: str) -> str:
        done = self.keys("create", name, *options)
        assert done.returncode == 0, done.stderr
        key = done.stdout.strip()
        assert key.startswith("m4t_")
        return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def text_job(**extra: object) -> dict[str, object]:
    return {"task": "t2tt", "text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng", **extra}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    """Auth on, no worker (jobs stay queued, so concurrency limits can be seen)."""
    workdir = tmp_path_factory.mktemp("auth")
    with RedisServer(workdir / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{workdir / 'storage'}",
            model="unused",
            data_dir=workdir / "data",
            M4T_AUTH="on",
            M4T_SYNC_WAIT_S="0.2",
        )
        with GatewayProcess(workdir, env) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
            yield AuthStack(redis_server, env, gateway, http, workdir)


def test_every_job_endpoint_needs_a_key_but_health_languages_and_docs_do_not(stack: AuthStack) -> None:
    for method, path in [
        ("POST", f"{API}/jobs"),
        ("GET", f"{API}/jobs"),
        ("GET", f"{API}/jobs/{'0' * 32}"),
        ("DELETE", f"{API}/jobs/{'0' * 32}"),
        ("GET", f"{API}/jobs/{'0' * 32}/events"),
        ("POST", f"{API}/t2tt"),
        ("POST", f"{API}/s2st"),
    ]:
        response = stack.http.request(method, path, json=text_job())
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    for path in (f"{API}/health", f"{API}/languages", "/docs", "/openapi.json"):
        assert stack.http.get(path).status_code in (200, 503), path
    bad = stack.http.post(f"{API}/jobs", json=text_job(), headers=bearer("m4t_not-a-real-key"))
    assert bad.status_code == 401


def test_jobs_are_private_to_their_key_and_admins_see_all(stack: AuthStack) -> None:
    alice, bob, admin = stack.new_key("alice"), stack.new_key("bob"), stack.new_key("ops", "--admin")
    job = stack.http.post(f"{API}/jobs", json=text_job(), headers=bearer(alice)).json()
    own = stack.http.get(f"{API}/jobs/{job['id']}", headers={"X-API-Key": alice})
    assert own.status_code == 200
    for method, suffix in [
        ("GET", ""),
        ("GET", "/audio"),
        ("GET", "/subtitles"),
        ("GET", "/events"),
        ("GET", "/webhooks"),
        ("DELETE", ""),
    ]:
        response = stack.http.request(method, f"{API}/jobs/{job['id']}{suffix}", headers=bearer(bob))
        assert response.status_code == 404, (method, suffix, response.text)
        assert response.json()["error"]["code"] == "job_not_found"
    bob_jobs = stack.http.get(f"{API}/jobs", headers=bearer(bob)).json()["jobs"]
    assert job["id"] not in {j["id"] for j in bob_jobs}
    alice_jobs = stack.http.get(f"{API}/jobs", headers=bearer(alice)).json()["jobs"]
    assert job["id"] in {j["id"] for j in alice_jobs}
    admin_jobs = stack.http.get(f"{API}/jobs", params={"limit": 100}, headers=bearer(admin)).json()["jobs"]
    assert job["id"] in {j["id"] for j in admin_jobs}
    assert stack.http.get(f"{API}/jobs/{job['id']}", headers=bearer(admin)).status_code == 200
    # The same Idempotency-Key used by two keys makes two jobs: keys are scoped to their caller.
    a = stack.http.post(f"{API}/jobs", json=text_job(), headers={**bearer(alice), "Idempotency-Key": "same"})
    b = stack.http.post(f"{API}/jobs", json=text_job(), headers={**bearer(bob), "Idempotency-Key": "same"})
    assert a.json()["id"] != b.json()["id"]


def test_revoked_keys_stop_working_at_once(stack: AuthStack) -> None:
    key = stack.new_key("temp")
    assert stack.http.get(f"{API}/jobs", headers=bearer(key)).status_code == 200
    listing = stack.keys("list")
    assert "temp" in listing.stdout
    assert key not in listing.stdout
    assert stack.keys("revoke", "temp").returncode == 0
    refused = stack.http.get(f"{API}/jobs", headers=bearer(key))
    assert refused.status_code == 401
    assert "revoked" in stack.keys("list").stdout
    assert stack.keys("revoke", "no-such-key").returncode == 1


def test_rate_limit_per_minute(stack: AuthStack) -> None:
    key = stack.new_key("chatty", "--rate-limit", "5/min")
    codes = [stack.http.get(f"{API}/jobs", headers=bearer(key)).status_code for _ in range(6)]
    if codes[:5] != [200] * 5:  # a minute boundary fell inside the burst: the window restarted once
        codes = [stack.http.get(f"{API}/jobs", headers=bearer(key)).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    refused = stack.http.get(f"{API}/jobs", headers=bearer(key))
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 61


def test_concurrent_job_limit(stack: AuthStack) -> None:
    key = stack.new_key("busy", "--max-concurrent", "2")
    first = stack.http.post(f"{API}/jobs", json=text_job(), headers=bearer(key)).json()
    assert stack.http.post(f"{API}/jobs", json=text_job(), headers=bearer(key)).status_code == 202
    refused = stack.http.post(
        f"{API}/t2tt", json={"text": "x", "src_lang": "fra", "tgt_lang": "eng"}, headers=bearer(key)
    )
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_active_jobs"
    assert "retry-after" in refused.headers
    assert stack.http.delete(f"{API}/jobs/{first['id']}", headers=bearer(key)).status_code == 200
    assert stack.http.post(f"{API}/jobs", json=text_job(), headers=bearer(key)).status_code == 202


def three_seconds() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(48_000, dtype=np.float32), 16_000, format="WAV")
    return buffer.getvalue()


def test_daily_audio_quota(stack: AuthStack) -> None:
    key = stack.new_key("listener", "--audio-seconds-per-day", "5")
    form = {"task": "s2tt", "tgt_lang": "eng"}
    ok = stack.http.post(
        f"{API}/jobs", data=form, files={"audio_file": ("a.wav", three_seconds())}, headers=bearer(key)
    )
    assert ok.status_code == 202
    over = stack.http.post(
        f"{API}/jobs", data=form, files={"audio_file": ("b.wav", three_seconds())}, headers=bearer(key)
    )
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "quota_exceeded"
    assert int(over.headers["retry-after"]) > 0
    # Text costs no audio seconds.
    assert stack.http.post(f"{API}/jobs", json=text_job(), headers=bearer(key)).status_code == 202


def test_audio_quota_is_settled_to_what_the_worker_decoded(redis_url: str) -> None:
    """The gateway charges the probed length; the worker settles the charge to the decoded one (every time it
    decodes the job: a job that runs again is not charged twice); a submission that failed leaves no charge."""
    from datetime import UTC, datetime

    from shared.api_keys import ApiKeyStore

    with redis.Redis.from_url(redis_url) as client:
        store = ApiKeyStore(client)
        _, key = store.create("settled", audio_seconds_per_day=100.0)
        counter = f"m4t:audio:{key.id}:{datetime.now(tz=UTC):%Y%m%d}"
        store.admit_job(key, "job-a", audio_seconds=2.0)
        store.admit_job(key, "job-b", audio_seconds=1.5)
        assert float(client.get(counter) or 0) == pytest.approx(3.5)
        assert store.settle_audio("job-a", 10.0)  # the header understated: 10 s were decoded
        assert float(client.get(counter) or 0) == pytest.approx(11.5)
        assert store.settle_audio("job-a", 10.0)  # run again (handed back at shutdown): the same charge
        assert float(client.get(counter) or 0) == pytest.approx(11.5)
        assert store.settle_audio("job-b", 1.25)  # less than probed: the difference comes back
        assert float(client.get(counter) or 0) == pytest.approx(11.25)
        assert client.ttl(counter) > 86_400
        store.release_job(key, "job-b", audio_seconds=1.25)
        assert not store.settle_audio("job-b", 5.0)  # released: nothing left to settle
        assert not store.settle_audio("never-charged", 5.0)
        assert float(client.get(counter) or 0) == pytest.approx(10.0)


def test_global_queue_limit_answers_503(stack: AuthStack) -> None:
    admin = stack.new_key("queue-admin", "--admin")
    depth = stack.http.get(f"{API}/health").json()["queue_depth"]
    env = {**stack.env, "M4T_MAX_QUEUE": str(depth + 2)}
    with GatewayProcess(stack.workdir / "small-queue", env) as small:
        client = httpx.Client(base_url=small.url, timeout=30)
        with client:
            codes = [client.post(f"{API}/jobs", json=text_job(), headers=bearer(admin)).status_code for _ in range(3)]
            assert codes == [202, 202, 503]
            full = client.post(f"{API}/jobs", json=text_job(), headers=bearer(admin))
            assert full.json()["error"]["code"] == "queue_full"
            assert int(full.headers["retry-after"]) > 0


def test_keys_never_reach_the_logs(stack: AuthStack) -> None:
    key = stack.new_key("secretive")
    stack.http.post(f"{API}/jobs", json=text_job(), headers=bearer(key))
    stack.http.get(f"{API}/jobs", headers=bearer(key + "x"))
    time.sleep(0.2)
    logs = "".join(p.read_text(errors="replace") for p in stack.workdir.rglob("*.log"))
    assert key not in logs
    assert key[4:] not in logs


def test_auth_is_on_unless_the_api_binds_to_loopback_only() -> None:
    from shared.settings import GatewaySettings

    assert GatewaySettings(api_host="127.0.0.1").auth_enabled is False
    assert GatewaySettings(api_host="0.0.0.0").auth_enabled is True
    assert GatewaySettings(api_host="127.0.0.1", auth="on").auth_enabled is True
    assert GatewaySettings(api_host="0.0.0.0", auth="off").auth_enabled is False
