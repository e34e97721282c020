"""Schemathesis against the gateway's own OpenAPI document (``/openapi.json``), over real HTTP to a real gateway
process with a real Redis and real S3 (no worker: no job ever finishes, so results are 409/404 and the seed
endpoints answer 202 at once).

Every operation of the document, with data that fits its schema (positive) and data that does not (negative):
no 5xx, every status code documented, every response body valid against its documented schema, every content
type documented. Deterministic (``derandomize=True``, no example database) and bounded (a few dozen examples per
operation and mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from services import RedisServer, S3Server
from stack import GatewayProcess, stack_env

API = "/api/v1"
WAV = (Path(__file__).parent / "data" / "speech_en.wav").read_bytes()


def not_a_server_error_but_the_wait(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except the documented 504 of a /v1 call whose job is still queued after ``M4T_OPENAI_WAIT_S``
    (no worker runs here: every job stays queued)."""
    if response.status_code == 504 and case.path.startswith("/v1/"):
        assert response.json()["error"]["code"] == "wait_timeout"
        return None
    return not_a_server_error(ctx, response, case)  # type: ignore[no-any-return]


CHECKS = [
    not_a_server_error_but_the_wait,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 25}


def _operations() -> list[tuple[str, str, bool]]:
    """(method, path, negatable) of every operation of the document, read at collection time from the app itself
    (building the document needs no Redis or storage); the test then fuzzes the document the running gateway
    serves. An operation is negatable when it has a body or query parameters: a plain string path parameter
    (``job_id``) has no value that violates its schema, so negative mode has nothing to generate there."""
    from gateway.app import create_app
    from shared.settings import GatewaySettings

    paths: dict[str, dict[str, Any]] = create_app(GatewaySettings()).openapi()["paths"]
    return sorted(
        (
            method.upper(),
            path,
            "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", [])),
        )
        for path, item in paths.items()
        for method, operation in item.items()
    )


OPERATIONS = _operations()

# Known mismatches that only a route decorator can fix (gateway/routes/*): (method, path) -> reason.
# Operations where the document is known to be wrong (each an xfail, strict): none at present.
ROUTE_MISMATCHES: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("openapi-fuzz")
    bucket = "openapi-fuzz"
    with RedisServer(workdir / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"s3://{bucket}",
            model="unused",
            data_dir=workdir / "data",
            s3=s3_server.settings_env,
            M4T_SYNC_WAIT_S="0",
            M4T_OPENAI_WAIT_S="0.01",  # no worker: /v1 calls answer 504 with their job at once
            M4T_MAX_UPLOAD_MB="2",
        )
        with GatewayProcess(workdir, env) as process:
            yield process.url


@pytest.fixture(scope="module")
def api_schema(gateway_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{gateway_url}/openapi.json", timeout=10)


@dataclass(frozen=True)
class Jobs:
    """Real jobs, so that job operations also answer 200/202 (and their bodies are checked), not only 404."""

    all: list[str]
    finished: list[str]  # cancelled: their event stream ends (a queued job's stream stays open without a worker)


@pytest.fixture(scope="module")
def jobs(gateway_url: str) -> Jobs:
    with httpx.Client(base_url=gateway_url, timeout=30) as http:
        made = [
            http.post(f"{API}/jobs", json={"task": "t2tt", "text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng"}),
            http.post(f"{API}/jobs", json={"task": "t2st", "text": "Hallo", "src_lang": "deu", "tgt_lang": "spa"}),
            http.post(f"{API}/jobs", data={"task": "s2tt", "tgt_lang": "fra"}, files={"audio_file": ("a.wav", WAV)}),
            http.post(f"{API}/jobs", data={"task": "s2st", "tgt_lang": "deu"}, files={"audio_file": ("b.wav", WAV)}),
        ]
        assert all(r.status_code == 202 for r in made), [r.text for r in made]
        ids = [r.json()["id"] for r in made]
        finished = ids[::2]
        for job_id in finished:
            assert http.delete(f"{API}/jobs/{job_id}").status_code == 200
    return Jobs(ids, finished)


def _realistic(case: Any) -> None:
    """Valid language codes (and real audio): random ones are almost always refused before anything else is looked
    at, so without this the fuzzing would never reach audio probing, job creation and 202 bodies."""
    body = case.body
    if not isinstance(body, dict):
        return
    speech_output = case.path.endswith(("/s2st", "/t2st")) or body.get("task") in ("s2st", "t2st")
    if isinstance(body.get("src_lang"), str):
        body["src_lang"] = "fra"
    if isinstance(body.get("tgt_lang"), str):
        body["tgt_lang"] = "spa" if speech_output else "eng"
    if "audio_file" in body:
        body["audio_file"] = WAV
    # The OpenAI-compatible routes' own names.
    for name, value in (("language", "en"), ("target_language", "fr"), ("source_language", "en"), ("voice", "alloy")):
        if name in body:
            body[name] = value
    if "file" in body:
        body["file"] = WAV


def _bounded(case: Any) -> None:
    """No worker runs here, so a transcription stream would stay open (with keep-alives) for as long as its job
    waits: streaming is checked against a worker in tests/test_openai_api.py."""
    if isinstance(case.body, dict):
        case.body.pop("stream", None)


def _params() -> list[Any]:
    params = []
    for method, path, negatable in OPERATIONS:
        for mode in EXAMPLES if negatable else [GenerationMode.POSITIVE]:
            marks = []
            reason = ROUTE_MISMATCHES.get((method, path))
            if reason:
                marks.append(pytest.mark.xfail(reason=reason, strict=True))
            params.append(pytest.param(method, path, mode, id=f"{method} {path} {mode.value}", marks=marks))
    return params


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("method", "path", "mode"), _params())
def test_operation_conforms_to_the_document(
    api_schema: Any, jobs: Jobs, gateway_url: str, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    if "{job_id}" in path and mode is GenerationMode.POSITIVE:
        ids = jobs.finished if path.endswith("/events") else jobs.all
        real = st.sampled_from(ids).flatmap(lambda job_id: operation.as_strategy(path_parameters={"job_id": job_id}))
        strategy = st.one_of(strategy, real)

    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        database=None,
        deadline=timedelta(seconds=10),
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy, realistic=st.booleans())
    def run(case: Any, realistic: bool) -> None:
        _bounded(case)
        if realistic:
            _realistic(case)
        case.call_and_validate(base_url=gateway_url, checks=CHECKS, timeout=15)

    run()


def test_every_operation_is_fuzzed() -> None:
    """Nothing is left out: the operations include the job API, its lifecycle, the seed endpoints and the service."""
    paths = {path for _, path, _ in OPERATIONS}
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/s2st", "/api/v1/t2tt", "/api/v1/health"} <= paths
    assert {"/v1/audio/transcriptions", "/v1/audio/translations", "/v1/audio/speech", "/v1/models"} <= paths
    assert len(_params()) >= len(OPERATIONS) + 5  # the job API and the seed endpoints get negative runs too
