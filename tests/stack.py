"""The service's own processes for end-to-end tests: ``m4t gateway`` and ``m4t worker`` as real subprocesses,
configured through ``M4T_*`` environment variables exactly as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from services import LOOPBACK, RedisServer, _ServerProcess, free_port

from shared.workers import PREFIX as HEARTBEAT_PREFIX

# Fast decoding for tests: greedy text decoding and short outputs (the tiny model never stops by itself).
FAST_DECODING = {
    "M4T_TEXT_NUM_BEAMS": "1",
    "M4T_MAX_LEN_B": "12",
    "M4T_MAX_LEN_A": "0.5",
}
NO_DETECTION = {"M4T_DETECT_ACCURACY": "off"}
"""Stacks whose tests send no ``src_lang: "auto"`` skip the language detector: in its default (high accuracy) mode it
costs every gateway 1.2 GiB and 7-25 s of a core at start-up. tests/test_language_detection.py turns it on."""


def stack_env(
    *,
    redis_url: str,
    storage_url: str,
    model: Path | str,
    data_dir: Path,
    s3: dict[str, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("M4T_")}
    env.update(
        {
            "M4T_REDIS_URL": redis_url,
            "M4T_STORAGE_URL": storage_url,
            "M4T_MODEL": str(model),
            "M4T_DATA_DIR": str(data_dir),
            "M4T_DEVICE": "cpu",
            "M4T_NUM_THREADS": "1",
            "M4T_JOB_LEASE_S": "3",
            "M4T_HEARTBEAT_INTERVAL_S": "0.5",
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            **FAST_DECODING,
            **NO_DETECTION,
        }
    )
    env.update(s3 or {})
    env.update(extra)
    return env


class _M4TProcess(_ServerProcess):
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(workdir)
        self.env = env

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "m4t.cli", *self._argv()]

    def _environment(self) -> dict[str, str]:
        return self.env


class GatewayProcess(_M4TProcess):
    name = "gateway"
    ready_timeout_s = 30.0

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        super().__init__(workdir, {**env, "M4T_API_PORT": str(self.port), "M4T_API_HOST": LOOPBACK})

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _argv(self) -> list[str]:
        return ["gateway"]

    def _is_ready(self) -> bool:
        try:
            httpx.get(f"{self.url}/openapi.json", timeout=1.0)
        except httpx.HTTPError:
            return False
        return True


class WorkerProcess(_M4TProcess):
    name = "worker"
    ready_timeout_s = 90.0

    def __init__(
        self, workdir: Path, env: dict[str, str], *, worker_name: str = "test-worker", role: str = "inference"
    ) -> None:
        super().__init__(workdir, {**env, "M4T_WORKER_NAME": worker_name})
        self.worker_name = worker_name
        self.role = role
        self.name = f"worker-{worker_name}"
        self.log_path = self.workdir / f"{self.name}.log"

    def _argv(self) -> list[str]:
        return ["worker", "--role", self.role, "--name", self.worker_name]

    def _is_ready(self) -> bool:
        """Ready once it has published a heartbeat: the model is loaded and the consumer is about to start."""
        with redis.Redis.from_url(self.env["M4T_REDIS_URL"], socket_connect_timeout=1) as client:
            try:
                return bool(client.exists(HEARTBEAT_PREFIX + self.worker_name))
            except redis.RedisError:
                return False


@dataclass(frozen=True)
class RunningStack:
    http: httpx.Client
    url: str
    redis: RedisServer
    storage_root: Path
    env: dict[str, str]
    """The ``M4T_*`` environment the processes run with: start another gateway on the same stack with it."""


@contextmanager
def running_stack(workdir: Path, model: Path, *, webhooks: bool = False, **settings: str) -> Iterator[RunningStack]:
    """Redis, local-folder storage, an inference worker (and the webhook worker), the gateway, and a client."""
    with RedisServer(workdir / "redis") as redis_server, ExitStack() as stack:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{workdir / 'storage'}",
            model=model,
            data_dir=workdir / "data",
            **settings,
        )
        stack.enter_context(WorkerProcess(workdir, env))
        if webhooks:
            stack.enter_context(WorkerProcess(workdir, env, worker_name="webhooks", role="webhooks"))
        gateway = stack.enter_context(GatewayProcess(workdir, env))
        client = stack.enter_context(httpx.Client(base_url=gateway.url, timeout=120))
        yield RunningStack(client, gateway.url, redis_server, workdir / "storage", env)


def run_client_cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``m4t`` client command line (``python -m client.cli``), as a user runs it."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
