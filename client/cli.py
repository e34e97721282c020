"""``m4t translate`` and ``m4t batch``: the service from the command line, through ``client.Client``.

``add_client_commands(subparsers)`` adds both to an ``argparse`` command (each sets ``func``, which returns the exit
code); ``main(argv)`` runs them on their own (``python -m client.cli translate ...``).

Exit codes (both commands):
  0  done (batch: every file translated or already done)
  1  a job failed or was cancelled (batch: at least one file failed; the summary says why)
  2  usage or bad input: a bad option, a missing file, or the service refused the request (4xx: unsupported
     language, invalid audio, file too large, bad API key ...)
  3  temporarily unavailable: connection error, 503, 5xx, rate limited (429) after the client's retries, or
     --timeout passed while waiting (the job goes on; run again)
  130 interrupted (Ctrl-C); batch jobs already submitted go on, and a re-run picks them up
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from client._base import OUTPUT_FORMATS, AtomicFile, audio_extension, format_for_suffix
from client.errors import (
    APIError,
    ConnectionFailed,
    JobFailed,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    WaitTimeout,
)
from client.models import Event, Job
from client.sync import Client

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

AUDIO_SUFFIXES = (
    # what the server reads (FFmpeg): audio files, and videos whose first audio track is translated
    ".wav", ".w64", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aac", ".m4a", ".m4b", ".mp4", ".mov", ".3gp",
    ".webm", ".mkv", ".mka", ".aif", ".aiff", ".aifc", ".caf", ".au", ".snd", ".wma", ".wmv", ".asf", ".amr", ".avi",
)  # fmt: skip
PERMANENT_FAILURES = frozenset({"invalid_audio"})
"""Job error codes a new attempt cannot fix: ``batch`` re-runs resubmit other failures (and cancelled jobs)."""
MAX_RESUBMITS = 3

EXIT_CODES_HELP = """exit codes:
  0    done
  1    a job failed or was cancelled (batch: any file failed)
  2    usage or bad input (a 4xx answer: unsupported language, invalid audio, bad API key ...)
  3    service unavailable, connection error, 5xx, rate limited after retries, or --timeout passed
  130  interrupted
environment: M4T_API_URL (default http://localhost:8000), M4T_API_KEY"""


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def exit_code(error: BaseException) -> int:
    """The exit code of an error (see the module's documentation)."""
    if isinstance(error, JobFailed):
        return EXIT_FAILED
    if isinstance(error, ServiceUnavailable | ServerError | RateLimited | WaitTimeout | ConnectionFailed):
        return EXIT_UNAVAILABLE
    if isinstance(error, APIError) and error.status is not None and error.status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_USAGE


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("M4T_API_URL", "http://localhost:8000"),
        help="the API (default: $M4T_API_URL, else http://localhost:8000)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("M4T_API_KEY") or None, help="API key (default: $M4T_API_KEY)"
    )
    parser.add_argument(
        "--src", help="source language (needed for text: a code, or auto to detect it; optional for speech)"
    )
    parser.add_argument("--tgt", required=True, help="target language, e.g. eng")
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        help="speech output format (default: from --out's suffix: .wav .flac .ogg .mp3 .opus .m4a (aac) .pcm "
        "(raw 16-bit little-endian mono), else wav)",
    )
    parser.add_argument("--speaker", type=int, help="vocoder speaker id (speech output)")
    parser.add_argument(
        "--priority",
        choices=("high", "normal", "low"),
        help="job priority (default: normal for translate, low for batch; at most the API key's maximum)",
    )
    parser.add_argument("--timeout", type=float, help="give up waiting for a job after this many seconds (exit 3)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def add_client_commands(subparsers: _Subparsers) -> None:
    """Add ``translate`` and ``batch`` to an ``argparse`` subparsers object."""
    formatter = argparse.RawDescriptionHelpFormatter
    translate = subparsers.add_parser(
        "translate",
        help="translate one audio file or text through the API",
        description="Translate FILE_OR_TEXT: an existing path is audio, anything else is text ('-' reads text from "
        "stdin). Prints the translated text; --out writes the speech output, --srt the subtitles.",
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
    )
    translate.add_argument("input", metavar="FILE_OR_TEXT")
    translate.add_argument(
        "--task",
        choices=("s2tt", "s2st", "t2tt", "t2st"),
        help="default: s2tt for a file, t2tt for text; s2st/t2st when --out is given",
    )
    translate.add_argument("--out", type=Path, help="write the speech output here (s2st, t2st)")
    translate.add_argument("--srt", type=Path, help="write subtitles here (speech input; .vtt for WebVTT)")
    translate.add_argument("--json", action="store_true", help="print the finished job as JSON, not its text")
    _common_options(translate)
    translate.set_defaults(func=cmd_translate)

    batch = subparsers.add_parser(
        "batch",
        help="translate every audio file of a folder, resuming where it stopped",
        description="Submit every audio or video file of DIR (wav, flac, mp3, m4a, webm, mp4 ...; sorted) N at a time, "
        "and write NAME.txt, NAME.srt and, for s2st, NAME.<format> (NAME.m4a for aac) into --out. A re-run "
        "skips the files whose outputs exist and picks up the jobs of an interrupted run (each submission's "
        "Idempotency-Key comes from the file's content and the options), so no job is made twice.",
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
    )
    batch.add_argument("dir", type=Path, metavar="DIR")
    batch.add_argument("--task", choices=("s2tt", "s2st"), default="s2tt", help="default s2tt")
    batch.add_argument("--out", type=Path, required=True, help="folder for the results (created)")
    batch.add_argument("--concurrency", type=int, default=4, help="jobs in flight at once (default 4)")
    _common_options(batch)
    batch.set_defaults(func=cmd_batch)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``translate`` or ``batch`` as ``m4t`` would."""
    parser = argparse.ArgumentParser(prog="m4t", description="seamlessm4t-api client")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_client_commands(subparsers)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def _fail(message: str, code: int) -> int:
    print(f"m4t: {message}", file=sys.stderr)
    return code


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.api_key)


# --- translate ------------------------------------------------------------------------------------------------


class _LiveStatus:
    """One status line on stderr, rewritten in place (only on a terminal)."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self.started = time.monotonic()
        self.status = "queued"
        self.shown = False

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        if event.type == "status" and event.status:
            self.status = event.status
            job = event.job
            if job is not None and job.queue_position:
                self.status = f"queued (position {job.queue_position})"
        done, total = event.done, event.total
        progress = f" {done}/{total} ({100 * done // total}%)" if done is not None and total else ""
        elapsed = time.monotonic() - self.started
        self.stream.write(f"\r\x1b[K{self.status}{progress} {elapsed:.0f}s")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _translate_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]] | str:
    """(task, submit keyword arguments), or a usage error message."""
    text: str | None = None
    path: Path | None = None
    if args.input == "-":
        text = sys.stdin.read()
    elif Path(args.input).is_file():
        path = Path(args.input)
    else:
        text = args.input
    wants_speech = args.out is not None
    task = args.task or (("s2st" if wants_speech else "s2tt") if path else ("t2st" if wants_speech else "t2tt"))
    if task.startswith("s2") and path is None:
        return f"{args.input!r} is not a file: {task} takes an audio file"
    if task.startswith("t2") and path is not None:
        return f"{args.input!r} is a file: {task} takes text (use --task s2tt or s2st for audio)"
    if args.out is not None and not task.endswith("st"):
        return f"--out needs speech output (s2st or t2st), not {task}"
    if args.srt is not None and not task.startswith("s2"):
        return f"--srt needs speech input (s2tt or s2st), not {task}"
    output_format = args.format
    if output_format is None and args.out is not None:
        output_format = format_for_suffix(args.out.suffix)
    options: dict[str, Any] = {
        "src_lang": args.src,
        "tgt_lang": args.tgt,
        "speaker_id": args.speaker,
        "priority": args.priority,
        "output_format": output_format,
    }
    if path is not None:
        options["audio"] = path
    else:
        options["text"] = text
    return task, options


def cmd_translate(args: argparse.Namespace) -> int:
    request = _translate_request(args)
    if isinstance(request, str):
        return _fail(request, EXIT_USAGE)
    task, options = request
    live = _LiveStatus(sys.stderr, not args.quiet)
    try:
        with _client(args) as m4t:
            job = m4t.submit(task, **options)
            try:
                job = m4t.wait(job, args.timeout, on_event=live)
            finally:
                live.clear()
            if args.out is not None:
                m4t.download_audio(job, args.out)
            if args.srt is not None:
                vtt = args.srt.suffix.lower() == ".vtt"
                _write_text(args.srt, m4t.subtitles(job, "vtt" if vtt else "srt"))
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except JobFailed as exc:
        return _fail(f"job {exc.job.id} {exc.job.status}: {exc.code}: {exc.message}", EXIT_FAILED)
    except APIError as exc:
        return _fail(str(exc), exit_code(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}", EXIT_USAGE)
    if args.json:
        import json

        print(json.dumps(job.raw, ensure_ascii=False, indent=2))
    else:
        print(job.text or "")
    return EXIT_OK


def _write_text(path: Path, text: str) -> None:
    out = AtomicFile(path)
    try:
        out.write(text.encode("utf-8"))
    except BaseException:
        out.abort()
        raise
    out.commit()


# --- batch ----------------------------------------------------------------------------------------------------


@dataclass
class BatchItem:
    source: Path
    outputs: dict[str, Path]
    """``text``, ``subtitles`` and, for speech output, ``audio``: the files that make it done."""
    status: str = "pending"
    """``done``, ``skipped`` (its outputs were there) or ``failed``."""
    detail: str = ""
    job_id: str | None = None

    @property
    def complete(self) -> bool:
        return all(path.is_file() for path in self.outputs.values())


def audio_files(folder: Path) -> list[Path]:
    """The audio files of a folder (not its sub-folders), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def plan_batch(files: list[Path], out_dir: Path, task: str, output_format: str) -> list[BatchItem]:
    """Each file's outputs: ``<stem>.txt``, ``<stem>.srt`` and, for s2st, ``<stem>.<format>``. Files sharing a stem
    (``a.wav``, ``a.mp3``) keep their whole name (``a.wav.txt``) so nothing is overwritten."""
    stems: dict[str, int] = {}
    for path in files:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    items = []
    for path in files:
        base = path.stem if stems[path.stem] == 1 else path.name
        outputs = {"text": out_dir / f"{base}.txt", "subtitles": out_dir / f"{base}.srt"}
        if task == "s2st":
            outputs["audio"] = out_dir / f"{base}.{audio_extension(output_format)}"
        items.append(BatchItem(path, outputs))
    return items


def batch_key(path: Path, options: dict[str, Any]) -> str:
    """The Idempotency-Key of a file's job: the same content and options, the same key (so the same job)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    fields = [digest.hexdigest(), *(f"{k}={options[k]}" for k in sorted(options))]
    return "m4t-batch-" + hashlib.sha256("\x1f".join(fields).encode()).hexdigest()[:40]


def run_item(m4t: Client, item: BatchItem, task: str, options: dict[str, Any], timeout: float | None) -> None:
    """Translate one file and write its outputs (the text last: it marks the file done)."""
    key = batch_key(item.source, {"task": task, **options})
    job: Job | None = None
    for attempt in range(MAX_RESUBMITS + 1):
        submitted = m4t.submit(
            task, audio=item.source, idempotency_key=key if attempt == 0 else f"{key}.{attempt}", **options
        )
        item.job_id = submitted.id
        job = m4t.wait(submitted, timeout, raise_on_failure=False)
        code = job.error.code if job.error else job.status
        # A job of an earlier run that failed in a way a new try may fix (or was cancelled): a new job under the
        # next key (a deterministic key too, so a crash now still makes no duplicate). A failure of this run stands.
        if job.succeeded or not submitted.replayed or code in PERMANENT_FAILURES:
            break
    assert job is not None
    if not job.succeeded:
        raise JobFailed(job)
    if "audio" in item.outputs:
        m4t.download_audio(job, item.outputs["audio"])
    _write_text(item.outputs["subtitles"], m4t.subtitles(job, "srt"))
    _write_text(item.outputs["text"], (job.text or "") + "\n")


class _BatchProgress:
    """A rich progress bar on a terminal when rich is installed; otherwise one line per finished file."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.finished = 0
        self.quiet = quiet
        self.lock = threading.Lock()
        self._rich: Any = None
        self._task: Any = None
        if quiet or not sys.stderr.isatty():
            return
        try:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:
            return
        self._rich = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
        )
        self._task = self._rich.add_task("translating", total=total)

    def __enter__(self) -> _BatchProgress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def update(self, item: BatchItem) -> None:
        with self.lock:
            self.finished += 1
            if self._rich is not None:
                self._rich.update(self._task, advance=1, description=f"{item.status} {item.source.name}")
            elif not self.quiet:
                detail = f": {item.detail}" if item.status == "failed" else ""
                print(f"[{self.finished}/{self.total}] {item.status} {item.source.name}{detail}", file=sys.stderr)


def print_summary(items: list[BatchItem], stream: TextIO) -> None:
    width = max([len("file"), *(len(i.source.name) for i in items)])
    print(f"{'file':{width}}  {'status':7}  detail", file=stream)
    for item in items:
        detail = item.detail or (item.job_id or "")
        print(f"{item.source.name:{width}}  {item.status:7}  {detail}", file=stream)
    counts = {s: sum(i.status == s for i in items) for s in ("done", "skipped", "failed", "pending")}
    line = f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']}"
    print(line + (f", not finished {counts['pending']}" if counts["pending"] else ""), file=stream)
    stream.flush()


def cmd_batch(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        return _fail(f"{args.dir} is not a folder", EXIT_USAGE)
    if args.concurrency < 1:
        return _fail("--concurrency must be at least 1", EXIT_USAGE)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"cannot create {args.out}: {exc.strerror or exc}", EXIT_USAGE)
    output_format = args.format or "wav"
    items = plan_batch(audio_files(args.dir), args.out, args.task, output_format)
    options: dict[str, Any] = {
        "src_lang": args.src,
        "tgt_lang": args.tgt,
        "speaker_id": args.speaker,
        "priority": args.priority or "low",  # a bulk job gives way to interactive ones
    }
    if args.task == "s2st":
        options["output_format"] = output_format
    todo = []
    for item in items:
        for output in item.outputs.values():  # partial files of an interrupted run
            for stale in output.parent.glob(f".{glob.escape(output.name)}.*.part"):
                stale.unlink(missing_ok=True)
        if item.complete:
            item.status, item.detail = "skipped", "outputs exist"
        else:
            todo.append(item)
    with _client(args) as m4t:
        if todo:
            try:
                next(m4t.list_jobs(limit=1), None)  # reachable, and the key good? (else every file fails alike)
            except APIError as exc:
                return _fail(str(exc), exit_code(exc))
        try:
            _run_batch(m4t, todo, args.task, options, args)
        except KeyboardInterrupt:
            print_summary(items, sys.stdout)
            print("m4t: interrupted; jobs already submitted go on: run again to collect them", file=sys.stderr)
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)  # worker threads may be blocked waiting for their jobs: do not wait for them
    print_summary(items, sys.stdout)
    return EXIT_FAILED if any(i.status == "failed" for i in items) else EXIT_OK


def _run_batch(
    m4t: Client, todo: list[BatchItem], task: str, options: dict[str, Any], args: argparse.Namespace
) -> None:
    def work(item: BatchItem) -> BatchItem:
        try:
            run_item(m4t, item, task, options, args.timeout)
            item.status, item.detail = "done", ""
        except JobFailed as exc:
            item.status, item.detail = "failed", f"{exc.code}: {exc.message}"
        except APIError as exc:
            item.status, item.detail = "failed", f"{exc.code}: {exc.message}"
        except OSError as exc:
            item.status, item.detail = "failed", f"{exc.strerror or exc}"
        return item

    pool = ThreadPoolExecutor(args.concurrency, thread_name_prefix="m4t-batch")
    try:
        with _BatchProgress(len(todo), args.quiet) as progress:
            futures = [pool.submit(work, item) for item in todo]
            for future in as_completed(futures):
                progress.update(future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


if __name__ == "__main__":
    sys.exit(main())
