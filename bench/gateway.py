"""Gateway benchmark: submissions per second and submit latency at 1, 16 and 64 concurrent clients, for text jobs
and 10 s audio jobs, and the end-to-end overhead of a T2TT job (client latency minus time in the model).

Starts its own Redis, local-folder storage, one gateway process (uvicorn, one process) and, for the overhead
part, one worker on the tiny model. The load generator runs on the same machine and competes for its cores.

    .venv/bin/python bench/gateway.py [--seconds 5] [--json bench/results/gateway.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_report  # noqa: E402
from m4t.serve import redis_server_binary  # noqa: E402
from worker.tiny_model import ensure_tiny_model  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    submit: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]], clients: int, seconds: float, base: str
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await submit(client)
                if response.status_code == 202:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return {
        "clients": clients,
        "submitted": len(latencies),
        "errors": errors,
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1) if latencies else None,
    }


def ten_second_wav() -> bytes:
    t = np.arange(160_000) / 16_000
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each load step")
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--overhead-jobs", type=int, default=200)
    parser.add_argument("--processes", type=int, default=1, help="gateway processes (M4T_API_PROCESSES)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="m4t-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_port, api_port = free_port(), free_port()
        procs.append(
            subprocess.Popen(
                [redis_server_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(workdir)],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = {k: v for k, v in os.environ.items() if not k.startswith("M4T_")}
        env.update(
            M4T_REDIS_URL=redis_url,
            M4T_DATA_DIR=str(workdir / "data"),
            M4T_API_PORT=str(api_port),
            M4T_DEVICE="cpu",
            M4T_TEXT_NUM_BEAMS="1",
            M4T_MAX_LEN_B="10",
            M4T_MAX_LEN_A="0",
            M4T_HEARTBEAT_INTERVAL_S="1",
            M4T_MAX_QUEUE="10000000",
            M4T_API_PROCESSES=str(args.processes),
        )
        python = sys.executable
        gateway = subprocess.Popen([python, "-m", "m4t.cli", "gateway"], env=env, cwd=ROOT)
        procs.append(gateway)
        base = f"http://127.0.0.1:{api_port}"
        wait_http(f"{base}/openapi.json")
        text_body = {"task": "t2tt", "text": "Bonjour le monde", "src_lang": "fra", "tgt_lang": "eng"}
        wav = ten_second_wav()

        async def submit_text(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post("/api/v1/jobs", json=text_body)

        async def submit_audio(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(
                "/api/v1/jobs",
                data={"task": "s2tt", "tgt_lang": "eng"},
                files={"audio_file": ("ten.wav", wav, "audio/wav")},
            )

        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "gateway_processes": args.processes,
                "note": f"load generator, gateway ({args.processes} uvicorn process(es)) and Redis share this machine",
            },
            "submit": {"text": [], "audio_10s": []},
        }
        client_redis = redis.Redis.from_url(redis_url)
        for kind, submit in (("text", submit_text), ("audio_10s", submit_audio)):
            for clients in levels:
                client_redis.delete("m4t.inference")  # keep the queue from growing across steps
                results["submit"][kind].append(asyncio.run(load(submit, clients, args.seconds, base)))
                print(f"{kind:9} clients={clients:3} {results['submit'][kind][-1]}", file=sys.stderr)

        # Overhead: one worker on the tiny model; T2TT through the synchronous endpoint, one at a time.
        client_redis.flushall()
        env["M4T_MODEL"] = str(ensure_tiny_model(workdir / "models"))
        env["M4T_WORKER_NAME"] = "bench-worker"
        worker = subprocess.Popen([python, "-m", "m4t.cli", "worker"], env=env, cwd=ROOT)
        procs.append(worker)
        deadline = time.monotonic() + 120
        while not client_redis.exists("m4t:worker:bench-worker"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("worker did not start")
            time.sleep(0.2)
        seed_body = {key: value for key, value in text_body.items() if key != "task"}  # the seed's request shape
        overheads, latencies, engine = [], [], []
        refused: list[str] = []
        with httpx.Client(base_url=base, timeout=60) as client:
            for i in range(args.overhead_jobs + 10):
                started = time.perf_counter()
                response = client.post("/api/v1/t2tt", json=seed_body)
                took = time.perf_counter() - started
                job = response.json()
                if response.status_code != 200:
                    refused.append(f"{response.status_code} {response.text[:300]}")
                    continue
                if i < 10:
                    continue  # warm-up
                engine_s = job["timings"]["engine_s"]
                latencies.append(took)
                engine.append(engine_s)
                overheads.append(took - engine_s)
        if not overheads:
            raise RuntimeError(f"no T2TT job finished within the wait; answers: {refused[:3]}")
        results["overhead_t2tt"] = {
            "jobs": len(overheads),
            "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
            "engine_p50_ms": round(statistics.median(engine) * 1000, 1),
            "overhead_p50_ms": round(statistics.median(overheads) * 1000, 1),
            "overhead_p95_ms": round(percentile(overheads, 0.95) * 1000, 1),
        }
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    print("| job | clients | submissions/s | p50 ms | p95 ms | errors |")
    print("|---|---|---|---|---|---|")
    for kind, rows in results["submit"].items():
        for row in rows:
            print(
                f"| {kind} | {row['clients']} | {row['per_s']} | {row['p50_ms']} | {row['p95_ms']} | {row['errors']} |"
            )
    o = results["overhead_t2tt"]
    print(
        f"\nT2TT end to end (tiny model, {o['jobs']} jobs, synchronous endpoint): "
        f"latency p50 {o['latency_p50_ms']} ms, "
        f"engine p50 {o['engine_p50_ms']} ms, overhead p50 {o['overhead_p50_ms']} ms, p95 {o['overhead_p95_ms']} ms"
    )
    print(json.dumps(results, indent=2))
    write_report(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
