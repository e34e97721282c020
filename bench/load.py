"""Load: N jobs submitted by C concurrent clients against `m4t serve` with W workers (tiny model by default), each
with a webhook to a local receiver. Counts what matters: every job finished, none lost, none duplicated (results
and webhook events), and the gateway's memory before and after; prints latency percentiles.

    .venv/bin/python bench/load.py --jobs 1000 --clients 50 --workers 2 [--json bench/results/load.json]

`run_load` is also used by the test suite (tests/test_load.py) with a smaller N.
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
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


@dataclass
class WebhookCounter:
    """A local receiver counting deliveries per webhook-id and per job."""

    port: int
    by_webhook_id: Counter[str] = field(default_factory=Counter)
    by_job: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                with counter.lock:
                    counter.by_webhook_id[self.headers.get("webhook-id", "")] += 1
                    counter.by_job[body["data"]["id"]] += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def run_load(
    base_url: str, *, jobs: int, clients: int, webhook_url: str | None = None, timeout_s: float = 600
) -> dict[str, Any]:
    """Submit ``jobs`` T2TT jobs from ``clients`` concurrent clients, each waiting for its job to end."""
    submit_latency: list[float] = []
    end_to_end: list[float] = []
    statuses: Counter[str] = Counter()
    job_ids: list[str] = []
    errors: Counter[str] = Counter()
    counter = iter(range(jobs))
    deadline = time.monotonic() + timeout_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:

        async def one_client() -> None:
            for index in counter:
                body: dict[str, Any] = {"task": "t2tt", "text": f"Bonjour numéro {index}", "src_lang": "fra"}
                body["tgt_lang"] = "eng"
                if webhook_url:
                    body["webhook_url"] = webhook_url
                started = time.perf_counter()
                response = await http.post("/api/v1/jobs", json=body)
                if response.status_code != 202:
                    errors[f"submit {response.status_code}"] += 1
                    continue
                submit_latency.append(time.perf_counter() - started)
                job_id = response.json()["id"]
                job_ids.append(job_id)
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                    job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
                    if job["status"] in ("succeeded", "failed", "cancelled"):
                        statuses[job["status"]] += 1
                        end_to_end.append(time.perf_counter() - started)
                        break
                else:
                    statuses["unfinished"] += 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - began

    return {
        "jobs": jobs,
        "clients": clients,
        "submitted": len(job_ids),
        "distinct_job_ids": len(set(job_ids)),
        "statuses": dict(statuses),
        "submit_errors": dict(errors),
        "elapsed_s": round(elapsed, 1),
        "jobs_per_s": round(len(end_to_end) / elapsed, 1) if elapsed else None,
        "submit_p50_ms": percentile(submit_latency, 0.5),
        "submit_p95_ms": percentile(submit_latency, 0.95),
        "end_to_end_p50_ms": percentile(end_to_end, 0.5),
        "end_to_end_p95_ms": percentile(end_to_end, 0.95),
        "end_to_end_p99_ms": percentile(end_to_end, 0.99),
        "job_ids": job_ids,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def serve_child_pid(marker: str, command: str, *, without: str | None = None) -> int | None:
    """The child of a `m4t serve` whose environment holds ``marker`` (its data dir) and whose command line has the
    word ``command`` (and not ``without``): `gateway`, or `worker` without `webhooks` for an inference worker."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if command.encode() not in cmdline or (without is not None and without.encode() in cmdline):
                continue
            if marker.encode() in (entry / "environ").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    return None


def gateway_pid(marker: str) -> int | None:
    """The `m4t gateway` child of a `m4t serve` whose environment holds ``marker``."""
    return serve_child_pid(marker, "gateway")


def wait_healthy(base: str, workers: int, serve: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            raise RuntimeError("m4t serve exited")
        try:
            health = httpx.get(f"{base}/api/v1/health", timeout=2).json()
            if len(health["workers"]) >= workers:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    raise RuntimeError("the stack did not become healthy")


def serve_env(data_dir: Path, api_port: int, model: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("M4T_")}
    env.update(
        M4T_DATA_DIR=str(data_dir),
        M4T_MODEL=model,
        M4T_API_PORT=str(api_port),
        M4T_DEVICE="cpu",
        M4T_NUM_THREADS="1",
        M4T_TEXT_NUM_BEAMS="1",
        M4T_MAX_LEN_B="10",
        M4T_WEBHOOK_ALLOW_HOSTS="127.0.0.1/32",
        M4T_UI_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)  # the caller's settings win
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from bench.common import write_report
    from tests.services import free_ports

    api_port, hook_port = free_ports(2)
    data_dir = Path(tempfile.mkdtemp(prefix="m4t-load-"))
    receiver = WebhookCounter(hook_port)
    receiver.start()
    env = serve_env(data_dir, api_port, args.model)
    serve = subprocess.Popen(
        [sys.executable, "-m", "m4t.cli", "serve", "--no-flower", "--workers", str(args.workers)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{api_port}"
    try:
        wait_healthy(base, args.workers, serve)
        pid = gateway_pid(str(data_dir))
        rss_before = rss_mb(pid) if pid else None
        report = asyncio.run(run_load(base, jobs=args.jobs, clients=args.clients, webhook_url=receiver.url))
        time.sleep(3)  # let the last webhooks land
        rss_after = rss_mb(pid) if pid else None
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=120)
        receiver.stop()
    job_ids = report.pop("job_ids")
    report.update(
        workers=args.workers,
        webhook_events=sum(receiver.by_job.values()),
        jobs_with_one_webhook=sum(1 for j in job_ids if receiver.by_job[j] == 1),
        duplicated_webhooks=sum(1 for n in receiver.by_webhook_id.values() if n > 1),
        gateway_rss_mb_before=round(rss_before, 1) if rss_before else None,
        gateway_rss_mb_after=round(rss_after, 1) if rss_after else None,
        machine={"cpus": os.cpu_count(), "note": "client, gateway, Redis and workers share this machine"},
    )
    print("| jobs | clients | workers | succeeded | lost | duplicated | webhooks | e2e p50 ms | e2e p95 ms | "
          "e2e p99 ms | submit p50 ms | jobs/s | gateway RSS MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lost = args.jobs - sum(report["statuses"].values())
    print(
        f"| {args.jobs} | {args.clients} | {args.workers} | {report['statuses'].get('succeeded', 0)} | {lost} | "
        f"{report['submitted'] - report['distinct_job_ids'] + report['duplicated_webhooks']} | "
        f"{report['webhook_events']} | {report['end_to_end_p50_ms']} | {report['end_to_end_p95_ms']} | "
        f"{report['end_to_end_p99_ms']} | {report['submit_p50_ms']} | {report['jobs_per_s']} | "
        f"{report['gateway_rss_mb_before']} -> {report['gateway_rss_mb_after']} |"
    )
    print(json.dumps(report, indent=2))
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
