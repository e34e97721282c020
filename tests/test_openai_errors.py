"""One mapping of errors, two renderers: every error code the service can answer with (raised by any module, or
stored on a failed job) has its OpenAI status and type, and the same error renders as our envelope on /api/v1 and
as OpenAI's body on /v1."""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest

import gateway
import shared
from gateway.errors import _HTTP_CODES, OPENAI_ERRORS, ErrorReply, render_envelope, render_openai, renderer_for
from shared.errors import M4TError

JOB_FAILURE_CODES = {"too_many_attempts", "job_cancelled", "wait_timeout", "job_expired"}
"""Codes that are no exception class: written on jobs by the store's Lua, or by the OpenAI routes."""


def _all_error_classes() -> set[type[M4TError]]:
    for package in (shared, gateway):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    found: set[type[M4TError]] = set()
    pending: list[type[M4TError]] = [M4TError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_code_has_an_openai_status_and_type() -> None:
    codes = {cls.code for cls in _all_error_classes()} | set(_HTTP_CODES.values()) | JOB_FAILURE_CODES
    assert "unsupported_language" in codes and "quota_exceeded" in codes and "webhook_url_refused" in codes
    missing = sorted(codes - set(OPENAI_ERRORS))
    assert not missing, f"add these to gateway.errors.OPENAI_ERRORS: {missing}"
    openai_statuses = {400, 401, 403, 404, 405, 409, 413, 429, 500, 503, 504}
    assert {mapped.status for mapped in OPENAI_ERRORS.values()} <= openai_statuses


@pytest.mark.parametrize(
    ("code", "ours", "theirs", "kind", "retry"),
    [
        ("unsupported_media_type", 415, 400, "invalid_request_error", None),
        ("invalid_audio", 422, 400, "invalid_request_error", None),
        ("audio_too_long", 413, 413, "invalid_request_error", None),
        ("quota_exceeded", 429, 429, "insufficient_quota", "false"),
        ("out_of_memory", 500, 500, "server_error", "false"),
        ("queue_full", 503, 503, "server_error", None),
    ],
)
def test_one_error_two_renderings(code: str, ours: int, theirs: int, kind: str, retry: str | None) -> None:
    reply = ErrorReply(ours, code, "what went wrong", {"Retry-After": "7"}, {"field": "file", "job_id": "ab12"})
    envelope = render_envelope(reply)
    assert envelope.status_code == ours
    assert json.loads(envelope.body) == {
        "error": {"code": code, "message": "what went wrong", "field": "file", "job_id": "ab12"}
    }
    assert "x-should-retry" not in envelope.headers
    openai = render_openai(reply)
    assert openai.status_code == theirs
    assert json.loads(openai.body) == {
        "error": {"message": "what went wrong", "type": kind, "param": "file", "code": code, "job_id": "ab12"}
    }
    assert openai.headers.get("x-should-retry") == retry
    assert openai.headers["retry-after"] == "7"


def test_the_path_picks_the_renderer() -> None:
    assert renderer_for("/v1/audio/speech") is render_openai
    assert renderer_for("/v1") is render_openai
    assert renderer_for("/api/v1/jobs") is render_envelope
    assert renderer_for("/v10/x") is render_envelope
