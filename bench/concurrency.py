"""Concurrency: what cross-job batching buys, through the whole stack (`m4t serve`: gateway, Redis, one worker).

For `M4T_WORKER_JOBS=1` (one job at a time, the old behaviour) and the default (32), in ONE run, each section
against a fresh `m4t serve`:
- clients: one-sentence T2TT jobs and 5-s S2TT jobs from 1, 8, 32 and 64 concurrent clients (each client submits,
  waits for its job to end on the job's event stream, as the project's client does, and submits the next; polling
  every 50 ms instead loaded the CPU enough to slow full-size generate calls from 21 s to 28 s): jobs/s and
  end-to-end latency p50/p95;
- burst: one one-sentence T2TT job alone, then 16 submitted at once: the time until the last ends, as a multiple
  of one alone;
- behind-long: a one-sentence T2TT job alone, then the same job submitted while a 10-minute S2TT file (about 125
  speech segments) runs: its latency, as a multiple of alone;
- high: a `high` T2TT job submitted behind `--queued` (300) queued `normal` ones: its latency, and how many of the
  normal ones ended before it (the rest are cancelled, not waited for);
- memory (`--sections memory`, not in the default run): the worker's resident memory idle, then its peak while 32
  ten-minute S2TT jobs are in flight (`/proc/<pid>/status` VmRSS sampled every 0.2 s).

Random weights never stop early: every item generates exactly `--tokens` (30) tokens (`M4T_MAX_LEN_A=0`,
`M4T_MAX_LEN_B=30`), beam `--beams`. `--slow-batch-s 1` adds one fixed second per generate call, whatever its size
(`M4T_FAULT_SLOW_BATCH_S`): a stand-in for a GPU, where a batch of 16 costs about what one item costs.

`--full-size`: the real architecture with random weights (built by `bench/engine.py`'s recipe, cached in
data/bench-models), in the dtype `M4T_DTYPE=auto` picks on this CPU (`--dtype` to force one); the same run first
measures the engine alone (`bench/engine.py`, T2TT, batch 1 and 8) so the service's jobs/s can be set against the
engine's batch-8 items/s on the same host.

    .venv/bin/python bench/concurrency.py --slow-batch-s 1 --json bench/results/concurrency-tiny-slow1.json
    .venv/bin/python bench/concurrency.py --sections memory --json bench/results/concurrency-memory.json
    .venv/bin/python bench/concurrency.py --full-size --beams 1 5 --json bench/results/concurrency-full-size-cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import progress, write_report  # noqa: E402
from bench.load import percentile, rss_mb, serve_child_pid, serve_env, wait_healthy  # noqa: E402

API = "/api/v1"
TERMINAL = ("succeeded", "failed", "cancelled")
SENTENCE = "Bonjour, comment allez-vous aujourd'hui ?"
SECTIONS = ("clients", "burst", "behind-long", "high", "memory")
DEFAULT_SECTIONS = ("clients", "burst", "behind-long", "high")


# --- the stack ------------------------------------------------------------------------------------------------


def worker_pid(marker: str) -> int | None:
    """The inference worker child of a `m4t serve` whose environment holds ``marker`` (its data dir)."""
    return serve_child_pid(marker, "worker", without="webhooks")


@contextmanager
def serving(model: str, settings: dict[str, str], load_timeout_s: float) -> Iterator[tuple[str, Path]]:
    from tests.services import free_ports

    (port,) = free_ports(1)
    data_dir = Path(tempfile.mkdtemp(prefix="m4t-concurrency-"))
    env = serve_env(data_dir, port, model, **settings)
    log = (data_dir / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "m4t.cli", "serve", "--no-flower", "--no-ui", "--workers", "1"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, 1, serve, timeout_s=load_timeout_s)
        yield base, data_dir
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=120)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()


# --- jobs -----------------------------------------------------------------------------------------------------


def text_body(text: str = SENTENCE, **extra: Any) -> dict[str, Any]:
    return {"task": "t2tt", "text": text, "src_lang": "fra", "tgt_lang": "eng", **extra}


def submit(http: httpx.Client, **extra: Any) -> str:
    response = http.post(f"{API}/jobs", json=text_body(**extra))
    response.raise_for_status()
    return str(response.json()["id"])


def submit_audio(http: httpx.Client, audio: bytes, name: str) -> str:
    response = http.post(
        f"{API}/jobs", data={"task": "s2tt", "tgt_lang": "eng"}, files={"audio_file": (name, audio, "audio/flac")}
    )
    response.raise_for_status()
    return str(response.json()["id"])


def wait_done(http: httpx.Client, job_id: str, timeout_s: float = 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"{API}/jobs/{job_id}").json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.05)
    raise RuntimeError(f"job {job_id} did not finish")


def timed_text_job(http: httpx.Client) -> float:
    began = time.perf_counter()
    job = wait_done(http, submit(http))
    assert job["status"] == "succeeded", job
    return time.perf_counter() - began


def audio_file(seconds: float, folder: Path) -> bytes:
    """Speech clips with 1.5 s pauses up to ``seconds`` (bench/long_audio.py's layout), as FLAC bytes."""
    from bench.long_audio import write_long_flac

    path = folder / f"speech-{seconds:g}s.flac"
    if not path.exists():
        write_long_flac(path, seconds, 1.5)
    return path.read_bytes()


# --- the sections ---------------------------------------------------------------------------------------------


async def client_load(
    base: str, submit_one: Callable[[httpx.AsyncClient, int], Any], *, jobs: int, clients: int
) -> dict[str, Any]:
    """``jobs`` jobs from ``clients`` concurrent clients, each submitting, waiting for its job to end (as the
    project's client does: on the job's event stream), and so on."""
    from client.aio import AsyncClient

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(jobs))
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with (
        httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http,
        AsyncClient(base, timeout=3600) as m4t,
    ):

        async def one_client() -> None:
            for index in counter:
                started = time.perf_counter()
                response = await submit_one(http, index)
                response.raise_for_status()
                job = await m4t.wait(response.json()["id"], raise_on_failure=False)
                latencies.append(time.perf_counter() - started)
                statuses[job.status] = statuses.get(job.status, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return {
        "jobs": jobs,
        "jobs_per_s": round(jobs / elapsed, 2),
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "succeeded": statuses.get("succeeded", 0),
    }


def clients_section(base: str, args: argparse.Namespace, clip: bytes, worker_jobs: int) -> dict[str, Any]:
    def text_job(http: httpx.AsyncClient, index: int) -> Any:
        return http.post(f"{API}/jobs", json=text_body(f"{SENTENCE} ({index})"))

    def speech_job(http: httpx.AsyncClient, index: int) -> Any:
        files = {"audio_file": (f"clip-{index}.flac", clip, "audio/flac")}
        return http.post(f"{API}/jobs", data={"task": "s2tt", "tgt_lang": "eng"}, files=files)

    makers = {"t2tt": text_job, "s2tt": speech_job}
    out: dict[str, Any] = {}
    for task in args.tasks:
        for clients in args.clients:
            progress(f"  {task}: {clients} concurrent clients")
            jobs = max(args.serial_jobs if worker_jobs == 1 and args.serial_jobs else args.min_jobs, clients)
            out[f"{task}/{clients}"] = asyncio.run(client_load(base, makers[task], jobs=jobs, clients=clients))
    return out


def burst_section(http: httpx.Client, size: int = 16) -> dict[str, Any]:
    alone = timed_text_job(http)
    began = time.perf_counter()
    ids = [submit(http, text=f"{SENTENCE} ({i})") for i in range(size)]
    ends = [wait_done(http, job_id) for job_id in ids]
    together = time.perf_counter() - began
    assert all(job["status"] == "succeeded" for job in ends), ends
    return {
        "jobs": size,
        "one_alone_s": round(alone, 2),
        "all_s": round(together, 2),
        "ratio": round(together / alone, 2),
    }


def behind_long_section(http: httpx.Client, long_audio: bytes, long_s: float) -> dict[str, Any]:
    alone = timed_text_job(http)
    long_id = submit_audio(http, long_audio, "long.flac")
    deadline = time.monotonic() + 600
    while http.get(f"{API}/jobs/{long_id}").json()["progress"]["done"] < 1:  # the long job is generating
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.05)
    behind = timed_text_job(http)
    long_job = wait_done(http, long_id)
    return {
        "long_s": long_s,
        "long_units": long_job["progress"]["total"],
        "short_alone_s": round(alone, 2),
        "short_behind_long_s": round(behind, 2),
        "ratio": round(behind / alone, 2),
        "long_job_s": round(_job_seconds(long_job), 1),
    }


def _job_seconds(job: dict[str, Any]) -> float:
    from datetime import datetime

    started, finished = (datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def high_section(http: httpx.Client, queued: int) -> dict[str, Any]:
    ids = [submit(http, text=f"Phrase normale {i}.") for i in range(queued)]
    began = time.perf_counter()
    high = wait_done(http, submit(http, text="Urgent !", priority="high"))
    latency = time.perf_counter() - began
    done_before = 0
    for job_id in ids:
        job = http.get(f"{API}/jobs/{job_id}").json()
        if job["status"] == "succeeded" and job["finished_at"] < high["finished_at"]:
            done_before += 1
        elif job["status"] not in TERMINAL:
            http.delete(f"{API}/jobs/{job_id}")
    for job_id in ids:
        wait_done(http, job_id)
    return {"queued": queued, "high_latency_s": round(latency, 2), "normal_done_before_high": done_before}


def memory_section(http: httpx.Client, marker: str, long_audio: bytes, jobs: int) -> dict[str, Any]:
    pid = worker_pid(marker)
    assert pid is not None, "no worker process found"
    time.sleep(2)
    idle = rss_mb(pid)
    peak = [idle]
    in_flight = [0]
    stop = threading.Event()

    def sample() -> None:
        ticks = 0
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], rss_mb(pid))
                if ticks % 5 == 0:
                    workers = httpx.get(f"{http.base_url}{API}/health", timeout=5).json()["workers"]
                    in_flight[0] = max([in_flight[0], *(w.get("jobs_in_flight", 0) for w in workers)])
            except (OSError, httpx.HTTPError, ValueError, KeyError):
                pass
            ticks += 1
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    ids = [submit_audio(http, long_audio, f"long-{i}.flac") for i in range(jobs)]
    ends = [wait_done(http, job_id) for job_id in ids]
    stop.set()
    sampler.join()
    return {
        "jobs": jobs,
        "succeeded": sum(job["status"] == "succeeded" for job in ends),
        "idle_rss_mib": round(idle, 1),
        "peak_rss_mib": round(peak[0], 1),
        "added_mib": round(peak[0] - idle, 1),
        "total_s": round(time.perf_counter() - began, 1),
        "max_jobs_in_flight": in_flight[0],
    }


# --- the engine alone, for --full-size ------------------------------------------------------------------------


def engine_reference(folder: Path, dtypes: Sequence[str], tokens: int, workdir: Path) -> dict[str, Any]:
    """``bench/engine.py`` on the same host in the same run: T2TT, beam 1, batch 1 and 8, per dtype."""
    out = workdir / "engine.json"
    command = [
        *(sys.executable, str(ROOT / "bench" / "engine.py"), "--full-size", "--cache-dir", str(folder)),
        *("--tasks", "t2tt", "--repeats", "1", "--batch-sizes", "1", "8", "--new-tokens", str(tokens)),
        *("--dtype", *dtypes),
        *("--json", str(out)),
    ]
    progress(f"the engine alone: {' '.join(command[1:])}")
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    return {
        result["dtype"]: {
            "latency_s": result["latency_s"],
            "items_per_s": {k: round(v, 3) for k, v in result["items_per_s"].items()},
            "b8_speedup": round(result["b8_speedup"], 2),
        }
        for result in report["results"]
    }


def auto_dtype_on_this_cpu() -> str:
    import torch

    from worker.engine import dtype_name, resolve_dtype

    return dtype_name(resolve_dtype("auto", torch.device("cpu")))


# --- the run --------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch

    from bench.common import machine_info

    return machine_info(torch.get_num_threads())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true", help="the full-size random-weight model, on CPU")
    parser.add_argument("--dtype", default=None, help="M4T_DTYPE (default: auto, what the service picks)")
    parser.add_argument("--device", default="cpu", help="M4T_DEVICE: cpu (default) or cuda")
    parser.add_argument(
        "--engine-reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--full-size: measure the engine alone first (bench/engine.py, T2TT, batch 1 and 8)",
    )
    parser.add_argument(
        "--engine-dtypes", nargs="+", default=None, help="--full-size: dtypes the engine alone is measured in"
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=None)
    parser.add_argument("--slow-batch-s", type=float, default=0.0, help="M4T_FAULT_SLOW_BATCH_S")
    parser.add_argument("--clients", type=int, nargs="+", default=None, help="default: 1 8 32 64 (8: --full-size)")
    parser.add_argument("--tasks", nargs="+", choices=("t2tt", "s2tt"), default=None, help="default: both (t2tt)")
    parser.add_argument("--min-jobs", type=int, default=16, help="jobs per client count: max(this, clients)")
    parser.add_argument(
        "--serial-jobs",
        type=int,
        default=None,
        help="jobs per client count with M4T_WORKER_JOBS=1 (default: --min-jobs)",
    )
    parser.add_argument("--worker-jobs", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--batch-size", type=int, default=None, help="M4T_BATCH_SIZE (default: 16; 8 --full-size)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1])
    parser.add_argument("--tokens", type=int, default=30, help="tokens every item generates")
    parser.add_argument("--queued", type=int, default=300)
    parser.add_argument("--long-s", type=float, default=600.0, help="the long S2TT file, seconds")
    parser.add_argument("--memory-jobs", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.sections = args.sections or (["clients"] if args.full_size else list(DEFAULT_SECTIONS))
    args.clients = args.clients or ([8] if args.full_size else [1, 8, 32, 64])
    args.tasks = args.tasks or (["t2tt"] if args.full_size else ["t2tt", "s2tt"])
    args.batch_size = args.batch_size or (8 if args.full_size else 16)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="m4t-concurrency-bench-"))
    report: dict[str, Any] = {"command": " ".join(["bench/concurrency.py", *sys.argv[1:]]), "machine": machine()}
    settings = {
        "M4T_BATCH_SIZE": str(args.batch_size),
        "M4T_MAX_LEN_A": "0",
        "M4T_MAX_LEN_B": str(args.tokens),
        "M4T_MAX_NEW_TOKENS": str(args.tokens),
        "M4T_MAX_QUEUE": str(max(10_000, args.queued * 2)),
    }
    if args.slow_batch_s:
        settings["M4T_FAULT_SLOW_BATCH_S"] = str(args.slow_batch_s)
    model = "tiny"
    load_timeout_s = 300.0
    if args.full_size:
        from bench.engine import DEFAULT_FULL_SIZE_DIR, FULL_SIZE_SEED, ensure_full_size_model

        folder = DEFAULT_FULL_SIZE_DIR.resolve()
        ensure_full_size_model(folder, seed=FULL_SIZE_SEED)
        model = str(folder)
        dtype = args.dtype or (auto_dtype_on_this_cpu() if args.device == "cpu" else "fp16")
        settings["M4T_DTYPE"] = dtype
        if args.device == "cpu":
            settings["M4T_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
        if args.engine_reference:
            report["engine_alone"] = engine_reference(folder, args.engine_dtypes or [dtype], args.tokens, workdir)
        load_timeout_s = 900.0
    elif args.dtype:
        settings["M4T_DTYPE"] = args.dtype
    settings["M4T_DEVICE"] = args.device
    report["settings"] = settings
    clip = audio_file(5.0, workdir) if "s2tt" in args.tasks else b""
    long_audio = audio_file(args.long_s, workdir) if {"behind-long", "memory"} & set(args.sections) else b""

    rows: list[dict[str, Any]] = []
    for beams in args.beams:
        for worker_jobs in args.worker_jobs if args.sections != ["memory"] else [32]:
            row: dict[str, Any] = {"beams": beams, "worker_jobs": worker_jobs}
            run_settings = {**settings, "M4T_TEXT_NUM_BEAMS": str(beams), "M4T_WORKER_JOBS": str(worker_jobs)}
            progress(f"beam {beams}, M4T_WORKER_JOBS={worker_jobs}")
            with (
                serving(model, run_settings, load_timeout_s) as (base, data_dir),
                httpx.Client(base_url=base, timeout=120) as http,
            ):
                timed_text_job(http)  # warm
                if "clients" in args.sections:
                    row["clients"] = clients_section(base, args, clip, worker_jobs)
                if "burst" in args.sections:
                    progress("  16 jobs at once")
                    row["burst"] = burst_section(http)
                if "behind-long" in args.sections:
                    progress(f"  a short job behind a {args.long_s:g}-s file")
                    row["behind_long"] = behind_long_section(http, long_audio, args.long_s)
                if "high" in args.sections:
                    progress(f"  a high job behind {args.queued} queued normal ones")
                    row["high"] = high_section(http, args.queued)
                if "memory" in args.sections:
                    progress(f"  worker memory with {args.memory_jobs} {args.long_s:g}-s S2TT jobs in flight")
                    row["memory"] = memory_section(http, str(data_dir), long_audio, args.memory_jobs)
            rows.append(row)
    report["rows"] = rows
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(markdown(report, args))
    write_report(report, args.json)
    return 0


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    m, s = report["machine"], report["settings"]
    model = f"full-size random weights, {s['M4T_DTYPE']}" if args.full_size else "tiny model"
    model += f", on {args.device}"
    slow = f", a fixed {args.slow_batch_s:g} s per generate call" if args.slow_batch_s else ""
    lines = [
        f"`{report['command']}`: {model}, {args.tokens} tokens per item, M4T_BATCH_SIZE {args.batch_size}{slow}; "
        f"{m['cpu']}, {m['cpu_count']} cores, torch CPU capability {m['torch_cpu_capability']}",
        "",
    ]
    for dtype, e in report.get("engine_alone", {}).items():
        lines.append(
            f"- the engine alone (bench/engine.py, T2TT, beam 1), {dtype}: {e['latency_s']} s per item at batch 1, "
            f"{e['items_per_s']['b1']} items/s; {e['items_per_s']['b8']} items/s at batch 8 ({e['b8_speedup']}x)"
        )
    if "engine_alone" in report:
        lines.append("")
    if any("clients" in row for row in report["rows"]):
        lines += [
            "| beam | M4T_WORKER_JOBS | task | clients | jobs | jobs/s | p50 ms | p95 ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in report["rows"]:
            for key, f in row.get("clients", {}).items():
                task, clients = key.split("/")
                lines.append(
                    f"| {row['beams']} | {row['worker_jobs']} | {task} | {clients} | {f['jobs']} | {f['jobs_per_s']} | "
                    f"{f['p50_ms']} | {f['p95_ms']} |"
                )
        lines.append("")
    if any("burst" in row for row in report["rows"]):
        lines += [
            "| M4T_WORKER_JOBS | one alone s | 16 at once s | ratio | short alone s | behind long s | ratio | "
            "high behind queued s | normal ended first |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in report["rows"]:
            b, lg, h = row.get("burst", {}), row.get("behind_long", {}), row.get("high", {})
            lines.append(
                f"| {row['worker_jobs']} | {b.get('one_alone_s')} | {b.get('all_s')} | {b.get('ratio')} | "
                f"{lg.get('short_alone_s')} | {lg.get('short_behind_long_s')} | {lg.get('ratio')} | "
                f"{h.get('high_latency_s')} | {h.get('normal_done_before_high')} of {h.get('queued')} |"
            )
        lines.append("")
    for row in report["rows"]:
        if "memory" in row:
            mem = row["memory"]
            lines.append(
                f"Worker memory, {mem['jobs']} x {args.long_s:g}-s S2TT jobs: idle {mem['idle_rss_mib']} MiB, peak "
                f"{mem['peak_rss_mib']} MiB (+{mem['added_mib']} MiB), {mem['succeeded']} succeeded in "
                f"{mem['total_s']} s, "
                f"at most {mem['max_jobs_in_flight']} in flight"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
