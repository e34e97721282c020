"""A smaller run of bench/load.py in the suite: jobs from concurrent clients against `m4t serve` with two workers,
all finished, none lost, none duplicated (results and webhook events)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from services import free_ports

from bench.load import WebhookCounter, gateway_pid, rss_mb, run_load, serve_env, wait_healthy

JOBS, CLIENTS, WORKERS = 120, 12, 2


def test_concurrent_clients_lose_and_duplicate_nothing(tmp_path: Path, tiny_model_dir: Path) -> None:
    api_port, hook_port = free_ports(2)
    receiver = WebhookCounter(hook_port)
    receiver.start()
    serve = subprocess.Popen(
        [sys.executable, "-m", "m4t.cli", "serve", "--no-flower", "--workers", str(WORKERS)],
        env=serve_env(tmp_path / "data", api_port, str(tiny_model_dir)),
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{api_port}"
    try:
        wait_healthy(base, WORKERS, serve)
        pid = gateway_pid(str(tmp_path / "data"))
        assert pid is not None
        before = rss_mb(pid)
        report = asyncio.run(run_load(base, jobs=JOBS, clients=CLIENTS, webhook_url=receiver.url, timeout_s=300))
        deadline = time.monotonic() + 30
        while sum(receiver.by_job.values()) < JOBS and time.monotonic() < deadline:
            time.sleep(0.2)
        after = rss_mb(pid)
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=120)
        receiver.stop()
    job_ids = report["job_ids"]
    assert report["submit_errors"] == {}
    assert report["statuses"] == {"succeeded": JOBS}
    assert len(job_ids) == len(set(job_ids)) == JOBS
    assert {receiver.by_job[j] for j in job_ids} == {1}  # exactly one webhook event per job
    assert set(receiver.by_webhook_id.values()) == {1}
    assert after - before < 60, f"gateway grew from {before:.0f} MB to {after:.0f} MB over {JOBS} jobs"
