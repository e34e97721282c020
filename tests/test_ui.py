"""The web UI (``client/ui.py``) as a visitor uses it: headless Chromium (Debian's ``chromium``) driven by Playwright
against ``m4t serve`` on the tiny model, with the UI talking to the API over HTTP like any client. Screenshots go
to ``tests/artifacts/``. Browser tests are skipped (with the reason) where Gradio, Playwright or Chromium is missing;
the rest needs only Gradio (the ``ui`` extra)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from browser import CHROMIUM, CHROMIUM_ARGS, browser_missing
from services import free_ports, log_tail

from client import Client
from client.models import Event, Job, Language, Languages, Progress, TaskLanguages
from client.ui import error_message, job_row, language_choices, pick, progress_update, ui_available

DATA = Path(__file__).parent / "data"
ARTIFACTS = Path(__file__).parent / "artifacts"
START_TIMEOUT_S = 120.0
UI_TIMEOUT_MS = 30_000

needs_gradio = pytest.mark.skipif(not ui_available(), reason="the UI needs Gradio: pip install -e '.[ui]'")


def _browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not ui_available():
        return "the UI needs Gradio: pip install -e '.[ui]'"
    return browser_missing()


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


# --- what the page shows, without a browser -------------------------------------------------------------------------


def _languages() -> Languages:
    return Languages(
        from_model=True,
        modalities={
            "text_input": [Language("eng", "English"), Language("fra", "French")],
            "text_output": [Language("eng", "English"), Language("fra", "French"), Language("tam", "Tamil")],
            "speech_output": [Language("eng", "English"), Language("fra", "French")],
        },
        tasks={
            "t2st": TaskLanguages("text_input", "speech_output", True, ["eng", "fra"], ["eng", "fra"]),
            "t2tt": TaskLanguages("text_input", "text_output", True, ["eng", "fra"], ["eng", "fra", "tam"]),
        },
        aliases={},
    )


def test_dropdowns_offer_only_a_tasks_valid_targets_with_their_names() -> None:
    languages = _languages()
    assert language_choices(languages, "t2tt", "target") == [
        ("English (eng)", "eng"),
        ("French (fra)", "fra"),
        ("Tamil (tam)", "tam"),
    ]
    assert language_choices(languages, "t2st", "target") == [("English (eng)", "eng"), ("French (fra)", "fra")]
    assert language_choices(languages, "t2st", "source") == [("English (eng)", "eng"), ("French (fra)", "fra")]
    assert language_choices(languages, "s2st", "target") == []  # a task the server did not list
    choices = language_choices(languages, "t2st", "target")
    assert pick(choices, "fra", "eng") == "fra"  # a refresh keeps the visitor's choice
    assert pick(choices, "tam", "eng") == "eng"  # ... unless it is no longer valid
    assert pick(choices, None, "xxx") == "eng"
    assert pick([], None, "eng") is None


def test_text_sources_start_with_detect_where_the_server_detects() -> None:
    detecting = replace(_languages(), detectable=[Language("fra", "French")])
    assert language_choices(detecting, "t2tt", "source") == [
        ("Detect", "auto"),
        ("English (eng)", "eng"),
        ("French (fra)", "fra"),
    ]
    assert pick(language_choices(detecting, "t2tt", "source"), None, "auto", "fra") == "auto"
    assert pick(language_choices(_languages(), "t2tt", "source"), None, "auto", "fra") == "fra"  # no detection
    assert ("Detect", "auto") not in language_choices(detecting, "t2tt", "target")


def _job(**changes: Any) -> Job:
    data: dict[str, Any] = {
        "id": "abc123",
        "task": "t2tt",
        "status": "succeeded",
        "src_lang": "fra",
        "tgt_lang": "eng",
        "created_at": "2026-11-26T07:00:00.12Z",
        "progress": {"done": 2, "total": 2, "fraction": 1.0},
        "result": {"text": "Hello world"},
        **changes,
    }
    return Job.from_api(data)


def test_jobs_rows_and_progress_captions() -> None:
    assert job_row(_job()) == ["abc123", "t2tt", "succeeded", "2026-11-26 07:00:00", "fra → eng", "2/2", "Hello world"]
    assert job_row(_job(src_lang="auto", detected_src_lang="deu"))[4] == "deu (detected) → eng"
    failed = _job(status="failed", result=None, error={"code": "invalid_audio", "message": "not audio"})
    assert job_row(failed)[-1] == "invalid_audio: not audio"
    assert job_row(_job(result={"text": "x" * 200}))[-1].endswith("…")

    assert progress_update(Event("1", "progress", {"done": 1, "total": 4}), "segments") == (
        0.25,
        "1/4 segments translated",
    )
    queued = _job(status="queued", queue_position=2, progress={"done": 0, "total": 0}).raw
    assert progress_update(Event("2", "status", {"status": "queued", "job": queued}), "chunks") == (
        0.0,
        "Queued (position 3)",
    )
    running = _job(status="running", progress={"done": 1, "total": 2, "fraction": 0.5}).raw
    assert progress_update(Event("3", "status", {"status": "running", "job": running}), "chunks") == (
        0.5,
        "1/2 chunks translated",
    )
    assert progress_update(Event("4", "cancel_requested", {}), "chunks") is None
    assert Progress.from_api(None).total == 0


def test_errors_show_the_envelope_message_not_a_traceback() -> None:
    from client.errors import ConnectionFailed, InvalidRequest, JobFailed, Unauthorized

    refused = InvalidRequest("tgt_lang 'xx' is not supported", code="unsupported_language", status=422)
    assert error_message(refused, "http://api") == "tgt\\_lang 'xx' is not supported (`unsupported_language`)"
    assert "API key" in error_message(Unauthorized("missing API key", code="unauthorized", status=401), "u")
    assert "Cannot reach the API at http://api" in error_message(ConnectionFailed("refused"), "http://api")
    failed = JobFailed(_job(status="failed", result=None, error={"code": "inference_failed", "message": "boom"}))
    assert error_message(failed, "u") == "The job failed: boom (`inference_failed`, job `abc123`)"
    assert "Traceback" not in error_message(RuntimeError("x"), "u")


@needs_gradio
def test_mount_ui_serves_the_page_under_ui() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from client.ui import mount_ui

    app = FastAPI()

    @app.get("/api/v1/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    mount_ui(app, "http://127.0.0.1:9", api_key=None)
    with TestClient(app) as http:
        page = http.get("/ui/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert "gradio" in page.text.lower()
        config = http.get("/ui/config").json()
        assert config["title"] == "SeamlessM4T v2"
        assert config["analytics_enabled"] is False
        ids = {c["props"].get("elem_id") for c in config["components"]}
        assert {"t2tt-input", "t2st-audio", "s2tt-subtitles", "s2st-tgt", "jobs-table"} <= ids
        formats = next(c["props"] for c in config["components"] if c["props"].get("elem_id") == "t2st-format")
        # every output format a browser plays; raw pcm (no header) is for the API and the CLI only
        assert [choice[0] for choice in formats["choices"]] == ["wav", "flac", "ogg", "mp3", "opus", "aac"]
        assert http.get("/api/v1/ping").json() == {"pong": "yes"}  # the app's own routes are untouched


# --- the browser ----------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    api: str
    ui: str
    made: list[str]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("M4T_", "GRADIO_"))}
    env.update(
        {
            "M4T_DATA_DIR": str(tmp / "data"),
            "M4T_DEVICE": "cpu",
            "M4T_NUM_THREADS": "1",
            "M4T_TEXT_NUM_BEAMS": "1",
            "M4T_MAX_LEN_B": "10",
            "M4T_HEARTBEAT_INTERVAL_S": "0.5",
            # The text tabs' default source is "Detect": lingua's low-accuracy mode loads in 1 s (high: 7-25 s) and
            # knows the French of these tests; tests/test_language_detection.py checks the default mode.
            "M4T_DETECT_ACCURACY": "low",
            "GRADIO_TEMP_DIR": str(tmp / "gradio"),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def _serve_starts_the_ui() -> bool:
    """Whether ``m4t serve`` runs the UI itself (``M4T_UI_PORT``); until it does, the test starts it."""
    from shared.settings import ServeSettings

    return "ui_port" in ServeSettings.model_fields


def _wait_until(ready: Any, processes: list[tuple[subprocess.Popen[bytes], Path]], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        for process, log in processes:
            assert process.poll() is None, f"{what}: a process exited:\n{log_tail(log)}"
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{what} did not start:\n" + "\n".join(
            log_tail(log) for _, log in processes
        )
        time.sleep(0.3)


def _stop(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ui")
    api_port, flower_port, ui_port = free_ports(3)
    env = _env(
        tmp,
        M4T_MODEL=str(tiny_model_dir),
        M4T_API_PORT=str(api_port),
        M4T_FLOWER_PORT=str(flower_port),
        M4T_UI_PORT=str(ui_port),
    )
    api, ui = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}"
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    serve_log = tmp / "serve.log"
    with serve_log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "m4t.cli", "serve", "--no-flower"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    started.append((serve, serve_log))
    own_ui = None
    if not _serve_starts_the_ui():
        ui_log = tmp / "ui.log"
        with ui_log.open("wb") as out:
            argv = [sys.executable, "-m", "client.ui", "--api-url", api, "--host", "127.0.0.1", "--port", str(ui_port)]
            own_ui = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        started.append((own_ui, ui_log))
    try:
        _wait_until(lambda: httpx.get(f"{api}/api/v1/health", timeout=2).json()["status"] == "healthy", started, "API")
        _wait_until(lambda: httpx.get(f"{ui}/", timeout=2).status_code == 200, started, "UI")
        yield Stack(api, ui, [])
    finally:
        if own_ui is not None:
            _stop(own_ui, signal.SIGTERM)  # as `m4t serve` stops its children
        _stop(serve, signal.SIGINT)
    for _, log in started:
        assert "Traceback" not in log.read_text(errors="replace"), log_tail(log)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    outside: list[str] = []
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.on("request", lambda r: None if r.url.startswith((stack.ui, "data:", "blob:")) else outside.append(r.url))
    page.goto(stack.ui + "/")
    expect(page.locator("#api-status")).to_contain_text("healthy")
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"ui-{request.node.name.removeprefix('test_')}.png"), full_page=True)
        context.close()
    assert outside == [], "the page requested something outside the UI (it must work offline)"


def _pick(page: Any, elem_id: str, label: str) -> None:
    """Choose ``label`` ("Spanish (spa)") in a Gradio dropdown, by typing and clicking it as a visitor does."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(label.split(" (")[0])
    page.locator("ul[role=listbox] li", has_text=label).first.click()


def _finished_job(page: Any, task: str, stack: Stack) -> str:
    from playwright.sync_api import expect

    summary = page.locator(f"#{task}-job")
    expect(summary).to_contain_text("succeeded")
    job_id = summary.locator("code").first.inner_text().strip()
    stack.made.append(job_id)
    return str(job_id)


@needs_browser
def test_t2tt_in_the_browser(page: Any, stack: Stack) -> None:
    page.locator("#t2tt-input textarea").fill("Bonjour le monde. Comment allez-vous ?")
    _pick(page, "t2tt-src", "French (fra)")
    _pick(page, "t2tt-tgt", "Spanish (spa)")
    page.click("#t2tt-run")
    job_id = _finished_job(page, "t2tt", stack)
    shown = page.locator("#t2tt-output textarea").input_value()
    with Client(stack.api) as api:
        job = api.get(job_id)
    assert (job.task, job.src_lang, job.tgt_lang) == ("t2tt", "fra", "spa")
    assert shown and shown == job.text
    assert not page.locator("#t2tt-error").is_visible()


@needs_browser
def test_t2tt_detects_the_source_language_by_default(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#t2tt-src input")).to_have_value("Detect")  # the default source
    page.locator("#t2tt-input textarea").fill("Le musée ouvre ses portes à neuf heures tous les matins.")
    _pick(page, "t2tt-tgt", "English (eng)")
    page.click("#t2tt-run")
    job_id = _finished_job(page, "t2tt", stack)
    expect(page.locator("#t2tt-job")).to_contain_text("detected fra")
    with Client(stack.api) as api:
        job = api.get(job_id)
    assert (job.status, job.src_lang, job.detected_src_lang, job.tgt_lang) == ("succeeded", "auto", "fra", "eng")
    assert page.locator("#t2tt-output textarea").input_value() == job.text


@needs_browser
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac"])
def test_t2st_plays_the_speech(page: Any, stack: Stack, fmt: str) -> None:
    page.get_by_role("tab", name="Text → Speech (T2ST)").click()
    page.locator("#t2st-input textarea").fill("Hello world")
    _pick(page, "t2st-src", "English (eng)")
    _pick(page, "t2st-tgt", "French (fra)")
    page.locator("#t2st-speaker input").fill("7")
    page.locator("#t2st-format").get_by_text(fmt, exact=True).click()
    page.click("#t2st-run")
    job_id = _finished_job(page, "t2st", stack)
    audio = page.locator("#t2st-audio audio")
    assert audio.count() == 1
    assert audio.get_attribute("src")
    page.wait_for_function("() => document.querySelector('#t2st-audio audio').duration > 0")
    duration = audio.evaluate("a => a.duration")
    with Client(stack.api) as api:
        job = api.get(job_id)
    assert (job.options.get("output_format"), job.options.get("speaker_id")) == (fmt, 7)
    assert job.result is not None and job.result.audio is not None
    assert job.result.audio.format == fmt
    assert duration == pytest.approx(job.result.audio.duration_s, abs=0.1)
    assert page.locator("#t2st-output textarea").input_value() == job.text


@needs_browser
def test_s2tt_upload_with_subtitles(page: Any, stack: Stack, tmp_path: Path) -> None:
    speech, rate = sf.read(DATA / "speech_fr.wav", dtype="float32")
    pause = np.zeros(int(rate * 1.5), dtype="float32")
    stereo = np.stack([np.concatenate([speech, pause, speech])] * 2, axis=1)
    upload = tmp_path / "deux_phrases.wav"
    sf.write(upload, stereo, rate)  # two utterances, stereo: the API downmixes and segments it

    page.get_by_role("tab", name="Speech → Text (S2TT)").click()
    page.set_input_files("#s2tt-input input[type=file]", str(upload))
    page.locator("#s2tt-input button[aria-label=Clear]").wait_for()  # the upload has arrived in the page
    _pick(page, "s2tt-tgt", "English (eng)")
    page.click("#s2tt-run")
    job_id = _finished_job(page, "s2tt", stack)
    with Client(stack.api) as api:
        job = api.get(job_id)
    assert page.locator("#s2tt-output textarea").input_value() == job.text
    srt = page.locator("#s2tt-subtitles a[href$='.srt']")
    vtt = page.locator("#s2tt-subtitles a[href$='.vtt']")
    assert srt.count() == 1 and vtt.count() == 1
    assert " --> " in httpx.get(str(srt.get_attribute("href")), timeout=10).text
    assert httpx.get(str(vtt.get_attribute("href")), timeout=10).text.startswith("WEBVTT")


@needs_browser
def test_progress_bar_follows_a_long_job(page: Any, stack: Stack) -> None:
    # Paragraphs are never packed into one chunk: 24 chunks, translated in batches, each batch a progress event.
    page.evaluate(
        """() => {
            window.seenProgress = new Set();
            new MutationObserver(() => {
                for (const el of document.querySelectorAll("#t2tt-output [data-testid=status-tracker]")) {
                    if (el.innerText.trim()) window.seenProgress.add(el.innerText.trim());
                }
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }"""
    )
    page.locator("#t2tt-input textarea").fill("\n\n".join(f"Paragraphe {i}. Bonjour le monde." for i in range(24)))
    page.click("#t2tt-run")
    _finished_job(page, "t2tt", stack)
    seen = page.evaluate("() => [...window.seenProgress]")
    assert any("/24 chunks translated" in text for text in seen), seen


@needs_browser
def test_errors_show_the_envelope_message(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    page.locator("#t2tt-input textarea").fill("   ")
    page.click("#t2tt-run")
    error = page.locator("#t2tt-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("text is empty")
    expect(error).to_contain_text("empty_text")

    page.get_by_role("tab", name="Speech → Text (S2TT)").click()
    page.click("#s2tt-run")
    expect(page.locator("#s2tt-error")).to_contain_text("Record or upload some speech first")
    text = page.locator("body").inner_text()
    assert "Traceback" not in text and 'File "' not in text


@needs_browser
def test_jobs_tab_lists_the_jobs_just_made(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    if not stack.made:  # run on its own: make one
        with Client(stack.api) as api:
            stack.made.append(api.translate_text("Bonjour", src_lang="fra", tgt_lang="eng").id)
    page.get_by_role("tab", name="Jobs").click()
    table = page.locator("#jobs-table")
    for job_id in stack.made:
        expect(table).to_contain_text(job_id)
    expect(table).to_contain_text("succeeded")
    page.locator("#jobs-status input").click()
    page.locator("ul[role=listbox] li", has_text="failed").first.click()
    for job_id in stack.made:
        expect(table).not_to_contain_text(job_id)
    page.locator("#jobs-status input").click()
    page.locator("ul[role=listbox] li", has_text="any").first.click()
    expect(table).to_contain_text(stack.made[-1])
    expect(table).to_contain_text("s2tt" if len(stack.made) > 1 else "t2tt")
