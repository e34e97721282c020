"""Job priorities over real HTTP, with no worker (jobs stay queued): the field on both endpoint families (JSON and
form), recorded and shown; queue positions that count the jobs that would run before; kombu's Redis priority
lists really holding the messages apart; a key's maximum priority, set and changed with the real `m4t keys`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from services import RedisServer
from stack import GatewayProcess, run_client_cli, stack_env
from test_auth import AuthStack, bearer, text_job

from client import Client
from shared.priority import broker_queue_lists

API = "/api/v1"
DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[AuthStack]:
    with RedisServer(tmp_path / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{tmp_path / 'storage'}",
            model="unused",
            data_dir=tmp_path / "data",
            M4T_AUTH="on",
            M4T_SYNC_WAIT_S="0.2",
        )
        with GatewayProcess(tmp_path, env) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
            yield AuthStack(redis_server, env, gateway, http, tmp_path)


def broker_job_ids(url: str, queue: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    ids = []
    for raw in client.lrange(queue, 0, -1):
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.append(body[0][0]["job_id"])
    return ids


def test_priority_orders_the_queue_and_the_broker_lists(stack: AuthStack) -> None:
    admin = bearer(stack.new_key("ops", "--admin"))
    first = stack.http.post(f"{API}/jobs", json=text_job(), headers=admin).json()
    second = stack.http.post(f"{API}/jobs", json=text_job(priority="normal"), headers=admin).json()
    with (DATA / "speech_fr.wav").open("rb") as audio:
        urgent = stack.http.post(
            f"{API}/jobs",
            data={"task": "s2tt", "tgt_lang": "eng", "priority": "high"},
            files={"audio_file": ("a.wav", audio, "audio/wav")},
            headers=admin,
        ).json()
    assert urgent["priority"] == "high" and first["priority"] == "normal"

    def position(job_id: str) -> int:
        return int(stack.http.get(f"{API}/jobs/{job_id}", headers=admin).json()["queue_position"])

    assert position(urgent["id"]) == 1  # submitted last of the three, runs first
    assert position(first["id"]) == 2 and position(second["id"]) == 3
    top, normal, bottom = broker_queue_lists("m4t.inference")
    assert (top, normal, bottom) == ("m4t.inference", "m4t.inference:5", "m4t.inference:9")
    assert broker_job_ids(stack.redis.url, top) == [urgent["id"]]
    assert sorted(broker_job_ids(stack.redis.url, normal)) == sorted([first["id"], second["id"]])


def test_seed_endpoint_takes_priority_and_a_bad_value_is_a_clear_422(stack: AuthStack) -> None:
    admin = bearer(stack.new_key("ops", "--admin"))
    seed = stack.http.post(
        f"{API}/t2tt", json={"text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng", "priority": "low"}, headers=admin
    )
    assert seed.status_code == 202, seed.text
    job = stack.http.get(seed.headers["location"], headers=admin).json()
    assert job["priority"] == "low" and job["options"]["priority"] == "low"
    bad = stack.http.post(f"{API}/jobs", json=text_job(priority="urgent"), headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_a_key_may_not_exceed_its_maximum_until_an_admin_raises_it(stack: AuthStack) -> None:
    user = bearer(stack.new_key("user"))
    assert stack.http.post(f"{API}/jobs", json=text_job(), headers=user).status_code == 202
    refused = stack.http.post(f"{API}/jobs", json=text_job(priority="high"), headers=user)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "priority_not_allowed" and error["field"] == "priority" and "normal" in error["message"]
    assert error["valid"] == ["normal", "low"]
    done = stack.keys("update", "user", "--max-priority", "high")
    assert done.returncode == 0, done.stderr
    assert stack.http.post(f"{API}/jobs", json=text_job(priority="high"), headers=user).status_code == 202
    listing = {line.split()[1]: line.split() for line in stack.keys("list").stdout.splitlines()[1:]}
    assert listing["user"][-2] == "high"
    assert stack.keys("update", "nobody", "--max-priority", "low").returncode == 1
    lowly = bearer(stack.new_key("batch", "--max-priority", "low"))
    assert stack.http.post(f"{API}/jobs", json=text_job(), headers=lowly).status_code == 422
    assert stack.http.post(f"{API}/jobs", json=text_job(priority="low"), headers=lowly).status_code == 202


def test_priority_is_part_of_the_idempotency_fingerprint(stack: AuthStack) -> None:
    admin = bearer(stack.new_key("ops", "--admin"))
    headers = {**admin, "Idempotency-Key": "same-key-1"}
    first = stack.http.post(f"{API}/jobs", json=text_job(), headers=headers)
    again = stack.http.post(f"{API}/jobs", json=text_job(), headers=headers)
    other = stack.http.post(f"{API}/jobs", json=text_job(priority="high"), headers=headers)
    assert first.json()["id"] == again.json()["id"]
    assert other.status_code == 422


def test_the_python_client_submits_with_a_priority(stack: AuthStack) -> None:
    from client import Client

    with Client(stack.gateway.url, api_key=stack.new_key("ops", "--admin")) as m4t:
        job = m4t.submit("t2tt", text="Bonjour", src_lang="fra", tgt_lang="eng", priority="high")
        assert job.priority == "high" and job.options["priority"] == "high"


@pytest.fixture
def open_stack(tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    """Auth off, no worker."""
    with RedisServer(tmp_path / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{tmp_path / 'storage'}",
            model="unused",
            data_dir=tmp_path / "data",
            M4T_AUTH="off",
            M4T_SYNC_WAIT_S="0.2",
        )
        with GatewayProcess(tmp_path, env) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
            yield gateway.url, http


def test_without_auth_any_priority_goes_through_the_form_the_client_and_the_cli(
    open_stack: tuple[str, httpx.Client], tmp_path: Path
) -> None:
    url, http = open_stack
    with (DATA / "speech_fr.wav").open("rb") as audio:
        seed = http.post(
            f"{API}/s2tt",
            data={"tgt_lang": "eng", "priority": "high"},
            files={"audio_file": ("a.wav", audio, "audio/wav")},
            headers={"Prefer": "respond-async"},
        )
    assert seed.status_code == 202, seed.text
    assert seed.json()["priority"] == "high"
    with (DATA / "speech_fr.wav").open("rb") as audio:
        bad = http.post(
            f"{API}/s2tt", data={"tgt_lang": "eng", "priority": "HIGH"}, files={"audio_file": ("a.wav", audio)}
        )
    assert bad.status_code == 422 and bad.json()["error"] == {
        "code": "invalid_request",
        "message": bad.json()["error"]["message"],
        "field": "priority",
    }

    with Client(url) as m4t:
        job = m4t.submit("t2tt", text="Bonjour", src_lang="fra", tgt_lang="eng", priority="high")
        assert job.priority == "high" and m4t.get(job.id).priority == "high"
        assert m4t.submit("t2tt", text="Salut", src_lang="fra", tgt_lang="eng").priority == "normal"

        # no worker: each command submits, then gives up waiting (exit 3)
        translate = ["translate", "Au revoir", "--src", "fra", "--tgt", "eng", "--url", url, "--timeout", "0.5"]
        translated = run_client_cli(*translate, "--priority", "low", "-q")
        assert translated.returncode == 3, translated.stdout + translated.stderr
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "clip.wav").write_bytes((DATA / "speech_fr.wav").read_bytes())
        batch = ["batch", str(folder), "--tgt", "eng", "--out", str(tmp_path / "out"), "--url", url, "--timeout", "0.5"]
        assert run_client_cli(*batch, "-q").returncode == 1
        assert run_client_cli(*batch, "--priority", "high", "-q").returncode == 1
        jobs = {(j.task, j.priority) for j in m4t.list_jobs(limit=100)}
    assert ("t2tt", "low") in jobs  # m4t translate --priority low
    assert ("s2tt", "low") in jobs  # m4t batch: low by default
    assert ("s2tt", "high") in jobs  # m4t batch --priority high


def test_the_openapi_document_shows_priority_on_every_submission_and_on_the_job() -> None:
    from gateway.app import create_app
    from shared.settings import GatewaySettings

    document = create_app(GatewaySettings()).openapi()
    assert "#/$defs/" not in json.dumps(document)  # request bodies inline the enum: no dangling reference
    bodies = [
        ("/api/v1/jobs", "application/json"),
        ("/api/v1/jobs", "multipart/form-data"),
        ("/api/v1/t2tt", "application/json"),
        ("/api/v1/s2st", "multipart/form-data"),
    ]
    for path, media in bodies:
        schema = document["paths"][path]["post"]["requestBody"]["content"][media]["schema"]
        field = schema["properties"]["priority"]
        assert field["enum"] == ["high", "normal", "low"] and field["default"] == "normal", (path, media)
    job = document["components"]["schemas"]["JobOut"]["properties"]
    assert job["priority"]["$ref"] == "#/components/schemas/Priority"
    assert document["components"]["schemas"]["Priority"]["enum"] == ["high", "normal", "low"]
