"""Concurrency: what cross-job batching buys, through the whole stack (`m4t serve`: gateway, Redis, one worker).

For `M4T_WORKER_JOBS=1` (one job at a time, the old behaviour) and the default (32), in ONE run:
- one-sentence T2TT jobs from 1, 8, 32 and 64 concurrent clients: jobs/s and end-to-end latency p50/p95;
- the latency of a short T2TT job submitted while a long job runs (a 48-chunk text), against the same job alone;
- the latency of a `high` job submitted behind N queued `normal` ones (`--queued`, 300).

Random weights never stop early: every item runs to its length bound (`M4T_MAX_LEN_B`, 10 tokens here, beam 1).
`--slow-batch-s 1` adds one fixed second per generate call, whatever its size (`M4T_FAULT_SLOW_BATCH_S`): a
stand-in for a GPU, where a batch of 16 costs about what one item costs.

    .venv/bin/python bench/concurrency.py [--slow-batch-s 1] [--clients 1 8 32 64] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import progress, write_report  # noqa: E402
from bench.load import run_load, serve_env, wait_healthy  # noqa: E402

API = "/api/v1"
LONG_TEXT = " ".join(f"Ceci est la phrase numero {i} d'un long document." for i in range(48))


@contextmanager
def serving(model: str, **settings: str) -> Iterator[str]:
    from tests.services import free_ports

    (port,) = free_ports(1)
    data_dir = Path(tempfile.mkdtemp(prefix="m4t-concurrency-"))
    env = serve_env(data_dir, port, model, **settings)
    m4t = Path(sys.executable).parent / "m4t"
    serve = subprocess.Popen(
        [str(m4t), "serve", "--no-flower", "--workers", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, 1, serve)
        yield base
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=120)


def wait_done(http: httpx.Client, job_id: str, timeout_s: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"{API}/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise RuntimeError(f"job {job_id} did not finish")


def submit(http: httpx.Client, text: str, **extra: Any) -> str:
    body = {"task": "t2tt", "text": text, "src_lang": "fra", "tgt_lang": "eng", **extra}
    response = http.post(f"{API}/jobs", json=body)
    response.raise_for_status()
    return str(response.json()["id"])


def timed_job(http: httpx.Client, text: str, **extra: Any) -> float:
    began = time.perf_counter()
    job = wait_done(http, submit(http, text, **extra))
    assert job["status"] == "succeeded", job
    return time.perf_counter() - began


def short_behind_long(http: httpx.Client) -> dict[str, float]:
    alone = timed_job(http, "Une phrase courte.")
    long_id = submit(http, LONG_TEXT)
    time.sleep(0.5)  # the long job is running
    behind = timed_job(http, "Une phrase courte.")
    wait_done(http, long_id)
    return {
        "short_alone_s": round(alone, 2),
        "short_behind_long_s": round(behind, 2),
        "ratio": round(behind / alone, 2),
    }


def high_behind_queued(http: httpx.Client, queued: int) -> dict[str, Any]:
    ids = [submit(http, f"Phrase normale {i}.") for i in range(queued)]
    began = time.perf_counter()
    high = wait_done(http, submit(http, "Urgent !", priority="high"))
    latency = time.perf_counter() - began
    done_before = 0
    for job_id in ids:
        job = http.get(f"{API}/jobs/{job_id}").json()
        if job["status"] == "succeeded" and job.get("finished_at") and job["finished_at"] < high["finished_at"]:
            done_before += 1
    for job_id in ids:
        wait_done(http, job_id)
    return {"queued": queued, "high_latency_s": round(latency, 2), "normal_done_before_high": done_before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--slow-batch-s", type=float, default=0.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--worker-jobs", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--queued", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = {"M4T_BATCH_SIZE": str(args.batch_size), "M4T_TEXT_CHUNK_TOKENS": "16"}  # serve_env: beam 1, 10 tokens
    if args.slow_batch_s:
        settings["M4T_FAULT_SLOW_BATCH_S"] = str(args.slow_batch_s)
    rows: list[dict[str, Any]] = []
    for worker_jobs in args.worker_jobs:
        with serving(args.model, M4T_WORKER_JOBS=str(worker_jobs), **settings) as base:
            http = httpx.Client(base_url=base, timeout=60)
            row: dict[str, Any] = {"worker_jobs": worker_jobs, "clients": {}}
            for clients in args.clients:
                progress(f"M4T_WORKER_JOBS={worker_jobs}: {clients} concurrent clients")
                report = asyncio.run(run_load(base, jobs=max(16, 2 * clients), clients=clients))
                row["clients"][clients] = {
                    "jobs_per_s": report["jobs_per_s"],
                    "p50_ms": report["end_to_end_p50_ms"],
                    "p95_ms": report["end_to_end_p95_ms"],
                    "succeeded": report["statuses"].get("succeeded", 0),
                }
            progress(f"M4T_WORKER_JOBS={worker_jobs}: a short job behind a long one")
            row["short_behind_long"] = short_behind_long(http)
            progress(f"M4T_WORKER_JOBS={worker_jobs}: a high job behind {args.queued} queued normal ones")
            row["high_behind_queued"] = high_behind_queued(http, args.queued)
            rows.append(row)
    print(
        f"\nTiny model, beam 1, 10 tokens per item, M4T_BATCH_SIZE {args.batch_size}, "
        f"fixed {args.slow_batch_s} s per generate call\n"
    )
    print("| M4T_WORKER_JOBS | clients | jobs/s | p50 ms | p95 ms |")
    print("|---|---|---|---|---|")
    for row in rows:
        for clients, figures in row["clients"].items():
            print(
                f"| {row['worker_jobs']} | {clients} | {figures['jobs_per_s']} | {figures['p50_ms']} | "
                f"{figures['p95_ms']} |"
            )
    print(
        "\n| M4T_WORKER_JOBS | short alone s | short behind long s | ratio | high behind queued s | normal done first |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        s, h = row["short_behind_long"], row["high_behind_queued"]
        print(
            f"| {row['worker_jobs']} | {s['short_alone_s']} | {s['short_behind_long_s']} | {s['ratio']} | "
            f"{h['high_latency_s']} | {h['normal_done_before_high']} of {h['queued']} |"
        )
    report = {"settings": settings, "slow_batch_s": args.slow_batch_s, "rows": rows}
    print(json.dumps(report, indent=2))
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
