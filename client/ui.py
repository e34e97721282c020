"""A web UI for trying the service in a browser (Gradio), for people who would rather not write curl commands.

It is a client like any other: every action goes through ``client.Client`` over HTTP with an API key (it never
imports the gateway, the worker or the engine). One tab per task (S2ST, S2TT, T2ST, T2TT): speech recorded with the
microphone or uploaded, language dropdowns filled from ``GET /api/v1/languages`` (only the valid targets of each
task, with their names; the text tabs' source defaults to "Detect" where the server detects languages, and the job
line shows what it detected), speaker and output format for speech output, the translated text, an audio player,
subtitles (SRT, WebVTT) for speech input, a live progress bar fed by the job's event stream, and the error envelope's
message when something is refused (never a traceback). A "Jobs" tab lists the key's recent jobs.

```python
from client.ui import launch_ui

launch_ui("http://127.0.0.1:8000", api_key=None, host="127.0.0.1", port=7860)
```

``mount_ui(app, api_url, api_key)`` serves the same UI under ``/ui`` of a FastAPI app (the gateway), and
``python -m client.ui --api-url ... --port ...`` runs it on its own. Gradio is imported only here, and only when a UI
is built: ``pip install 'seamlessm4t-api[ui]'``. It runs offline: analytics are off, no share link is made, fonts
and scripts are served by the UI itself.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from client._base import OUTPUT_FORMATS, audio_extension, normalize_base_url
from client.errors import APIError, ConnectionFailed, JobFailed, Unauthorized, WaitTimeout
from client.models import Event, Job, Languages
from client.sync import Client

if TYPE_CHECKING:
    import gradio as gr
    from fastapi import FastAPI

log = logging.getLogger(__name__)

DEFAULT_PORT = 7860
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PATH = "/ui"
MAX_SPEAKER_ID = 199
REQUEST_TIMEOUT_S = 30.0
WAIT_TIMEOUT_S = 6 * 3600.0
"""How long one translation is followed in the page before the UI gives up waiting (the job goes on)."""
JOBS_SHOWN = 50
CONCURRENCY = 16
"""Translations followed at once (per event): Gradio's default of 1 would make every visitor wait for the others."""
SCRATCH_MAX_AGE_S = 3600.0
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
# What the page offers: the formats a browser plays (raw pcm has no header to tell it the rate and layout).
UI_FORMATS = tuple(fmt for fmt in OUTPUT_FORMATS if fmt != "pcm")
JOBS_HEADERS = ["id", "task", "status", "created", "languages", "progress", "result"]

TASK_TITLES = {
    "s2st": "Speech → Speech (S2ST)",
    "s2tt": "Speech → Text (S2TT)",
    "t2st": "Text → Speech (T2ST)",
    "t2tt": "Text → Text (T2TT)",
}
AUTO = "auto"
DETECT_CHOICE = ("Detect", AUTO)
"""The first source choice of the text tabs (their default) when the server detects text's language."""
PREFERRED_SOURCES = (AUTO, "fra")
PREFERRED_TARGETS = ("eng",)

CSS = """
.m4t-error { border: 1px solid var(--error-border-color); background: var(--error-background-fill);
             border-radius: var(--radius-md); padding: 0 var(--spacing-lg); }
.m4t-error p { color: var(--error-text-color); }
.m4t-note p { color: var(--body-text-color-subdued); font-size: var(--text-sm); }
"""


# --- what the UI shows: plain functions, no Gradio ------------------------------------------------------------------


def language_choices(languages: Languages, task: str, side: str) -> list[tuple[str, str]]:
    """Dropdown choices ``("English (eng)", "eng")`` for a task's ``sources`` or ``targets``, sorted by name; text
    sources start with "Detect" (``auto``) when the server detects languages."""
    if task not in languages.tasks:
        return []
    spec = languages.tasks[task]
    modality, codes = (spec.source, spec.sources) if side == "source" else (spec.target, spec.targets)
    names = {language.code: language.name for language in languages.modalities.get(modality, [])}
    choices = sorted(((f"{names.get(code, code)} ({code})", code) for code in codes), key=lambda c: c[0].casefold())
    if side == "source" and spec.source == "text_input" and languages.detectable:
        choices.insert(0, DETECT_CHOICE)
    return choices


def pick(choices: Sequence[tuple[str, str]], current: str | None, *preferred: str) -> str | None:
    """The value a dropdown keeps: the current one while still valid, else the first preferred one offered, else
    the first."""
    codes = [code for _, code in choices]
    for wanted in (current, *preferred):
        if wanted and wanted in codes:
            return wanted
    return codes[0] if codes else None


def job_row(job: Job) -> list[str]:
    """One row of the Jobs table (see ``JOBS_HEADERS``)."""
    source = f"{job.detected_src_lang} (detected)" if job.detected_src_lang else (job.src_lang or "auto")
    languages = f"{source} → {job.tgt_lang}"
    progress = f"{job.progress.done}/{job.progress.total}" if job.progress.total else ""
    if job.error is not None:
        result = f"{job.error.code}: {job.error.message}"
    elif job.result is not None:
        result = job.result.text
    else:
        result = ""
    if len(result) > 80:
        result = result[:79] + "…"
    created = job.created_at.replace("T", " ").split(".")[0].removesuffix("Z")
    return [job.id, job.task, job.status, created, languages, progress, result]


def error_message(error: BaseException, api_url: str) -> str:
    """What the page says about a failure: the error envelope's message (and code), never a traceback."""
    if isinstance(error, JobFailed):
        if error.code == "cancelled":
            return f"The job was cancelled (job `{error.job.id}`)."
        return f"The job failed: {_md(error.message)} (`{error.code}`, job `{error.job.id}`)"
    if isinstance(error, WaitTimeout):
        return f"Still running after {WAIT_TIMEOUT_S:g} s: {_md(error.message)}. It goes on; see the Jobs tab."
    if isinstance(error, ConnectionFailed):
        return f"Cannot reach the API at {_md(api_url)}: {_md(error.message)}"
    if isinstance(error, Unauthorized):
        return f"{_md(error.message)} (`{error.code}`). Enter a valid API key above."
    if isinstance(error, APIError):
        return f"{_md(error.message)} (`{error.code}`)"
    return f"Unexpected error ({type(error).__name__}); see the UI's log."


def progress_update(event: Event, unit: str) -> tuple[float, str] | None:
    """The progress bar's fraction and caption after one event of the job's stream (None: leave it as it is)."""
    if event.type == "progress" and event.total:
        done = event.done or 0
        return done / event.total, f"{done}/{event.total} {unit} translated"
    if event.type != "status":
        return None
    job = event.job
    if event.status == "queued":
        position = job.queue_position if job is not None else None
        return 0.0, "Queued" + (f" (position {position + 1})" if position is not None else "")
    if event.status == "running":
        if job is not None and job.progress.total:
            return job.progress.fraction, f"{job.progress.done}/{job.progress.total} {unit} translated"
        return 0.0, "Running"
    return None


def _md(text: str) -> str:
    """Text shown as Markdown, read literally."""
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", text)


# --- talking to the API ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A finished translation as the page shows it."""

    job: Job
    audio: Path | None
    subtitles: list[Path]


class ProgressFn(Protocol):
    def __call__(self, fraction: float, desc: str) -> None: ...


class Backend:
    """The UI's calls to the API, one short-lived ``Client`` per action, with the configured key unless the visitor
    typed one. Files the page offers (speech output, subtitles) go to a scratch folder, pruned after an hour."""

    def __init__(self, api_url: str, api_key: str | None, *, scratch: Path | None = None) -> None:
        self.api_url = normalize_base_url(api_url)
        self.api_key = api_key or None
        if scratch is None:
            scratch = Path(tempfile.mkdtemp(prefix="m4t-ui-"))
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        self.scratch = scratch

    def client(self, key: str | None = None) -> Client:
        return Client(self.api_url, api_key=(key or "").strip() or self.api_key, timeout=REQUEST_TIMEOUT_S)

    def languages(self, key: str | None = None) -> Languages:
        with self.client(key) as api:
            return api.languages()

    def status_line(self, key: str | None, languages: Languages) -> str:
        with self.client(key) as api:
            health = api.health()
        speech = len(languages.modalities.get("speech_output", []))
        text = len(languages.modalities.get("text_output", []))
        return f"API `{self.api_url}`: **{health.status}** · {text} text languages, {speech} for speech output" + (
            "" if languages.from_model else " (the published list: no worker has reported its model yet)"
        )

    def submit(
        self,
        key: str | None,
        task: str,
        source: str | None,
        src_lang: str | None,
        tgt_lang: str | None,
        speaker_id: float | None,
        output_format: str | None,
    ) -> Job:
        if not tgt_lang:
            raise InputError("Choose a target language.")
        speech_input = task.startswith("s2")
        if speech_input and not source:
            raise InputError("Record or upload some speech first.")
        speech_output = task.endswith("st")
        with self.client(key) as api:
            return api.submit(
                task,
                audio=source if speech_input else None,
                text=None if speech_input else (source or ""),
                src_lang=src_lang or None,
                tgt_lang=tgt_lang,
                speaker_id=int(speaker_id or 0) if speech_output else None,
                output_format=(output_format or "wav") if speech_output else None,
            )

    def finish(self, key: str | None, job: Job, on_progress: ProgressFn | None = None) -> Outcome:
        """Wait for the job (events stream, else polling), then fetch what it made."""
        unit = "segments" if job.speech_input else "chunks"

        def on_event(event: Event) -> None:
            update = progress_update(event, unit)
            if update is not None and on_progress is not None:
                on_progress(*update)

        self.prune()
        with self.client(key) as api:
            done = api.wait(job, timeout=WAIT_TIMEOUT_S, on_event=on_event)
            audio = None
            if done.speech_output and done.result is not None and done.result.audio is not None:
                suffix = audio_extension(done.result.audio.format)
                audio = api.download_audio(done, self.scratch / f"{done.id}.{suffix}")
            subtitles = []
            if done.speech_input:
                for fmt in ("srt", "vtt"):
                    path = self.scratch / f"{done.id}.{fmt}"
                    path.write_text(api.subtitles(done, fmt), encoding="utf-8")
                    subtitles.append(path)
        return Outcome(done, audio, subtitles)

    def cancel(self, key: str | None, job_id: str) -> Job:
        with self.client(key) as api:
            return api.cancel(job_id)

    def jobs(self, key: str | None, status: str | None) -> list[list[str]]:
        with self.client(key) as api:
            return [
                job_row(job) for job in api.list_jobs(status=status or None, limit=JOBS_SHOWN, max_items=JOBS_SHOWN)
            ]

    def prune(self) -> None:
        cutoff = time.time() - SCRATCH_MAX_AGE_S
        for path in self.scratch.glob("*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                continue


class InputError(Exception):
    """Something the visitor must fix before anything is sent."""


# --- the Gradio page ------------------------------------------------------------------------------------------------


def _gradio_env() -> None:
    """Gradio must not phone home: no analytics, no run history (read when ``gradio`` is imported)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GRADIO_RUN_HISTORY", "False")


def ui_available() -> bool:
    """Whether Gradio is installed (the ``ui`` extra)."""
    try:
        return importlib.util.find_spec("gradio") is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        return False


@dataclass
class _TaskTab:
    task: str
    source: gr.components.Component
    src_lang: gr.Dropdown | None
    tgt_lang: gr.Dropdown
    speaker: gr.Number | None
    output_format: gr.Radio | None
    run: gr.Button
    cancel: gr.Button
    error: gr.Markdown
    text: gr.Textbox
    audio: gr.Audio | None
    subtitles: gr.File | None
    summary: gr.Markdown
    job_id: gr.State

    @property
    def outputs(self) -> list[Any]:
        found = [self.error, self.text, self.audio, self.subtitles, self.summary, self.job_id]
        return [component for component in found if component is not None]


def _task_tab(task: str) -> _TaskTab:
    import gradio as gr

    speech_input, speech_output = task.startswith("s2"), task.endswith("st")
    with gr.Tab(TASK_TITLES[task], id=task, elem_id=f"tab-{task}"), gr.Row(equal_height=False):
        with gr.Column():
            source: gr.components.Component
            if speech_input:
                source = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label="Speech (record or upload: WAV, FLAC, OGG, MP3)",
                    elem_id=f"{task}-input",
                    buttons=["download"],
                )
            else:
                source = gr.Textbox(
                    label="Text", lines=6, placeholder="Text to translate", elem_id=f"{task}-input", max_lines=20
                )
            with gr.Row():
                src_lang = (
                    None
                    if speech_input
                    else gr.Dropdown(label="From", choices=[], elem_id=f"{task}-src", filterable=True)
                )
                tgt_lang = gr.Dropdown(label="To", choices=[], elem_id=f"{task}-tgt", filterable=True)
            speaker = output_format = None
            if speech_output:
                with gr.Row():
                    speaker = gr.Number(
                        label=f"Speaker (0–{MAX_SPEAKER_ID})",
                        value=0,
                        minimum=0,
                        maximum=MAX_SPEAKER_ID,
                        precision=0,
                        step=1,
                        elem_id=f"{task}-speaker",
                    )
                    output_format = gr.Radio(
                        list(UI_FORMATS), value="wav", label="Audio format", elem_id=f"{task}-format"
                    )
            if speech_input:
                gr.Markdown("The source language is recognised from the speech.", elem_classes=["m4t-note"])
            with gr.Row():
                run = gr.Button("Translate", variant="primary", elem_id=f"{task}-run")
                cancel = gr.Button("Cancel job", variant="stop", elem_id=f"{task}-cancel", scale=0, min_width=140)
        with gr.Column():
            error = gr.Markdown(visible=False, elem_id=f"{task}-error", elem_classes=["m4t-error"])
            text = gr.Textbox(
                label="Translation", lines=6, interactive=False, elem_id=f"{task}-output", buttons=["copy"]
            )
            audio = (
                gr.Audio(
                    label="Translated speech",
                    type="filepath",
                    interactive=False,
                    elem_id=f"{task}-audio",
                    buttons=["download"],
                    # The browser's own player: plays every output format, and shows the length at once.
                    waveform_options=gr.WaveformOptions(show_recording_waveform=False),
                )
                if speech_output
                else None
            )
            subtitles = (
                gr.File(
                    label="Subtitles (SRT, WebVTT)",
                    file_count="multiple",
                    interactive=False,
                    elem_id=f"{task}-subtitles",
                )
                if speech_input
                else None
            )
            summary = gr.Markdown(elem_id=f"{task}-job", elem_classes=["m4t-note"])
        job_id = gr.State(None)  # inside the tab: a State among the Tabs' children shifts the tab labels
    return _TaskTab(
        task,
        source,
        src_lang,
        tgt_lang,
        speaker,
        output_format,
        run,
        cancel,
        error,
        text,
        audio,
        subtitles,
        summary,
        job_id,
    )


def _job_line(job: Job) -> str:
    took = ""
    if job.timings:
        total = sum(value for name, value in job.timings.items() if name.endswith("_s"))
        took = f" in {total:.1f} s" if total else ""
    detected = ""
    if job.detected_src_lang:
        confidence = job.detected_src_lang_confidence
        detected = f" · detected `{job.detected_src_lang}`" + (f" ({confidence:.0%} sure)" if confidence else "")
    return f"Job `{job.id}`: {job.status}{took}{detected}"


def _wire_task(tab: _TaskTab, backend: Backend, key: gr.Textbox) -> None:
    import gradio as gr

    def hidden_error() -> Any:
        return gr.Markdown(value="", visible=False)

    def shown_error(message: str) -> Any:
        return gr.Markdown(value=message, visible=True)

    def translate(
        api_key: str | None,
        source: str | None,
        src_lang: str | None,
        tgt_lang: str | None,
        speaker: float | None,
        output_format: str | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio finds the progress bar by this default
    ) -> Iterator[dict[Any, Any]]:
        cleared: dict[Any, Any] = {tab.error: hidden_error(), tab.text: "", tab.job_id: None}
        if tab.audio is not None:
            cleared[tab.audio] = None
        if tab.subtitles is not None:
            cleared[tab.subtitles] = None
        job: Job | None = None
        try:
            progress(0.0, desc="Submitting")
            job = backend.submit(api_key, tab.task, source, src_lang, tgt_lang, speaker, output_format)
            yield {**cleared, tab.summary: _job_line(job), tab.job_id: job.id}

            def on_progress(fraction: float, desc: str) -> None:
                progress(fraction, desc=desc)

            outcome = backend.finish(api_key, job, on_progress)
        except InputError as exc:
            yield {**cleared, tab.error: shown_error(_md(str(exc))), tab.summary: ""}
            return
        except Exception as exc:  # shown as the envelope's message, never as a traceback
            if not isinstance(exc, APIError):
                log.exception("the UI's %s call failed", tab.task)
            summary = _job_line(exc.job) if isinstance(exc, JobFailed) else (f"Job `{job.id}`" if job else "")
            yield {**cleared, tab.error: shown_error(error_message(exc, backend.api_url)), tab.summary: summary}
            return
        done: dict[Any, Any] = {**cleared, tab.text: outcome.job.text or "", tab.summary: _job_line(outcome.job)}
        if tab.audio is not None and outcome.audio is not None:
            done[tab.audio] = str(outcome.audio)
        if tab.subtitles is not None and outcome.subtitles:
            done[tab.subtitles] = [str(path) for path in outcome.subtitles]
        yield done

    def cancel(api_key: str | None, job_id: str | None) -> Any:
        if not job_id:
            return gr.Markdown()
        try:
            job = backend.cancel(api_key, job_id)
        except APIError as exc:
            return gr.Markdown(value=f"Job `{job_id}`: cannot cancel: {error_message(exc, backend.api_url)}")
        return gr.Markdown(value=f"Job `{job.id}`: " + ("cancelling…" if job.cancel_requested else job.status))

    inputs: list[Any] = [key, tab.source, tab.src_lang, tab.tgt_lang, tab.speaker, tab.output_format]
    inputs = [component if component is not None else gr.State(None) for component in inputs]
    tab.run.click(translate, inputs=inputs, outputs=tab.outputs, show_progress_on=[tab.text], api_visibility="private")
    tab.cancel.click(cancel, inputs=[key, tab.job_id], outputs=[tab.summary], api_visibility="private")


def build_ui(api_url: str, api_key: str | None) -> gr.Blocks:
    """The UI, as a Gradio ``Blocks``, talking to the API at ``api_url`` with ``api_key`` (None: no key, or the one
    the visitor types in). Nothing is requested before a page loads: the API may start after the UI."""
    return _build(Backend(api_url, api_key))


def _build(backend: Backend) -> gr.Blocks:
    _gradio_env()
    import gradio as gr

    with gr.Blocks(
        title="SeamlessM4T v2",
        analytics_enabled=False,
        delete_cache=(int(SCRATCH_MAX_AGE_S), int(SCRATCH_MAX_AGE_S)),
    ) as demo:
        gr.Markdown("# SeamlessM4T v2 translation\nSpeech and text in about 100 languages, through the job API.")
        with gr.Row(equal_height=False):
            status = gr.Markdown("Connecting to the API…", elem_id="api-status")
            key = gr.Textbox(
                label="API key",
                type="password",
                placeholder="the UI's own key" if backend.api_key else "needed when the API requires keys",
                elem_id="api-key",
                scale=0,
                min_width=260,
            )
            refresh = gr.Button("Refresh languages", elem_id="refresh-languages", scale=0, size="sm", min_width=160)
        load_error = gr.Markdown(visible=False, elem_id="api-error", elem_classes=["m4t-error"])

        with gr.Tabs(elem_id="tabs"):
            tabs = [_task_tab(task) for task in ("t2tt", "t2st", "s2tt", "s2st")]
            with gr.Tab("Jobs", id="jobs", elem_id="tab-jobs") as jobs_tab:
                with gr.Row():
                    status_filter = gr.Dropdown(
                        choices=[("any", ""), *((s, s) for s in JOB_STATUSES)],
                        value="",
                        label="Status",
                        elem_id="jobs-status",
                        scale=0,
                        min_width=200,
                    )
                    jobs_refresh = gr.Button("Refresh", elem_id="jobs-refresh", scale=0)
                jobs_error = gr.Markdown(visible=False, elem_id="jobs-error", elem_classes=["m4t-error"])
                jobs_table = gr.Dataframe(
                    headers=JOBS_HEADERS,
                    value=[],
                    interactive=False,
                    wrap=True,
                    elem_id="jobs-table",
                    label=f"Recent jobs of this key (newest first, at most {JOBS_SHOWN})",
                )

        dropdowns: list[tuple[gr.Dropdown, str, str, tuple[str, ...]]] = []
        for tab in tabs:
            if tab.src_lang is not None:
                dropdowns.append((tab.src_lang, tab.task, "source", PREFERRED_SOURCES))
            dropdowns.append((tab.tgt_lang, tab.task, "target", PREFERRED_TARGETS))

        def load_languages(api_key: str | None, *current: str | None) -> list[Any]:
            try:
                languages = backend.languages(api_key)
                line = backend.status_line(api_key, languages)
            except APIError as exc:
                message = error_message(exc, backend.api_url)
                return [gr.Markdown(f"API `{backend.api_url}`: unavailable"), gr.Markdown(message, visible=True)] + [
                    gr.Dropdown() for _ in dropdowns
                ]
            updates: list[Any] = [gr.Markdown(line), gr.Markdown("", visible=False)]
            for (_, task, side, preferred), value in zip(dropdowns, current, strict=True):
                choices = language_choices(languages, task, side)
                updates.append(gr.Dropdown(choices=choices, value=pick(choices, value, *preferred)))
            return updates

        lang_inputs: list[Any] = [key, *(d for d, _, _, _ in dropdowns)]
        lang_outputs: list[Any] = [status, load_error, *(d for d, _, _, _ in dropdowns)]
        demo.load(load_languages, inputs=lang_inputs, outputs=lang_outputs, api_visibility="private")
        refresh.click(load_languages, inputs=lang_inputs, outputs=lang_outputs, api_visibility="private")
        key.submit(load_languages, inputs=lang_inputs, outputs=lang_outputs, api_visibility="private")

        for tab in tabs:
            _wire_task(tab, backend, key)

        def load_jobs(api_key: str | None, status_value: str | None) -> list[Any]:
            try:
                rows = backend.jobs(api_key, status_value)
            except APIError as exc:
                return [gr.Dataframe(), gr.Markdown(error_message(exc, backend.api_url), visible=True)]
            return [gr.Dataframe(value=rows, headers=JOBS_HEADERS), gr.Markdown("", visible=False)]

        jobs_io: dict[str, Any] = {"inputs": [key, status_filter], "outputs": [jobs_table, jobs_error]}
        jobs_refresh.click(load_jobs, api_visibility="private", **jobs_io)
        jobs_tab.select(load_jobs, api_visibility="private", **jobs_io)
        status_filter.change(load_jobs, api_visibility="private", **jobs_io)

    demo.queue(default_concurrency_limit=CONCURRENCY)
    built: gr.Blocks = demo
    return built


def _gradio_options(backend: Backend) -> dict[str, Any]:
    """What ``launch`` and ``mount_gradio_app`` both take: offline, no MCP, no run history, the page's CSS."""
    return {
        "footer_links": ["gradio", "settings"],
        "allowed_paths": [str(backend.scratch)],
        "ssr_mode": False,
        "mcp_server": False,
        "css": CSS,
    }


def launch_ui(api_url: str, api_key: str | None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the UI on ``host:port`` until interrupted (never a public share link)."""
    backend = Backend(api_url, api_key)
    demo = _build(backend)
    log.info("UI on http://%s:%d talking to %s", host, port, normalize_base_url(api_url))
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=False,
        quiet=True,
        run_history=False,
        **_gradio_options(backend),
    )


def mount_ui(app: FastAPI, api_url: str, api_key: str | None, path: str = DEFAULT_PATH) -> FastAPI:
    """Serve the UI under ``path`` of ``app`` (the gateway: single-port deployments). ``api_url`` is where the UI
    reaches the API, usually the app itself over loopback. Call before the app starts."""
    _gradio_env()
    import gradio as gr

    backend = Backend(api_url, api_key)
    mounted: FastAPI = gr.mount_gradio_app(
        app, _build(backend), path=path, show_error=False, run_history=False, **_gradio_options(backend)
    )
    return mounted


# --- command line ---------------------------------------------------------------------------------------------------


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _env_port() -> int:
    value = os.environ.get("M4T_UI_PORT", "")
    return int(value) if value.isdigit() else DEFAULT_PORT


def _env_api_url() -> str:
    if os.environ.get("M4T_API_URL"):
        return os.environ["M4T_API_URL"]
    port = os.environ.get("M4T_API_PORT", "")
    return f"http://127.0.0.1:{port if port.isdigit() else 8000}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url",
        default=_env_api_url(),
        help="where the API listens (default: M4T_API_URL, else http://127.0.0.1:<M4T_API_PORT or 8000>)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("M4T_UI_API_KEY") or os.environ.get("M4T_API_KEY") or None,
        help="API key the UI uses when the visitor types none (default: M4T_UI_API_KEY, else M4T_API_KEY)",
    )
    parser.add_argument(
        "--host", default=os.environ.get("M4T_UI_HOST", DEFAULT_HOST), help="bind address (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=_env_port(), help="port (default: M4T_UI_PORT, else 7860)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_from_args(args: argparse.Namespace) -> int:
    """Run the UI until interrupted (Ctrl-C or SIGTERM: the server closes cleanly); 2 when Gradio is missing."""
    if not ui_available():
        print("m4t ui: the UI needs Gradio: pip install 'seamlessm4t-api[ui]'", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # `m4t serve` stops its children with SIGTERM
    launch_ui(args.api_url, args.api_key, args.host, args.port)
    return 0


def add_ui_command(subparsers: _Subparsers) -> argparse.ArgumentParser:
    """Add ``ui`` to an ``argparse`` command (``m4t ui``); it sets ``func``, which returns the exit code."""
    parser = subparsers.add_parser("ui", help="run the web UI (Gradio) against a running API")
    add_arguments(parser)
    parser.set_defaults(func=run_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.ui", description="The web UI of seamlessm4t-api")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request the UI makes otherwise
    try:
        return run_from_args(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
