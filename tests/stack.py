"""The service's own processes for end-to-end tests: ``m4t gateway`` and ``m4t worker`` as real subprocesses,
configured through ``M4T_*`` environment variables exactly as a user would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import redis
from services import LOOPBACK, _ServerProcess, free_port

from shared.workers import PREFIX as HEARTBEAT_PREFIX

# Fast decoding for tests: greedy text decoding and short outputs (the tiny model never stops by itself).
FAST_DECODING = {
    "M4T_TEXT_NUM_BEAMS": "1",
    "M4T_MAX_LEN_B": "12",
    "M4T_MAX_LEN_A": "0.5",
}


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
        return [sys.executable, "-m", "shared.cli", *self._argv()]

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

    def __init__(self, workdir: Path, env: dict[str, str], *, worker_name: str = "test-worker") -> None:
        super().__init__(workdir, {**env, "M4T_WORKER_NAME": worker_name})
        self.worker_name = worker_name
        self.name = f"worker-{worker_name}"
        self.log_path = self.workdir / f"{self.name}.log"

    def _argv(self) -> list[str]:
        return ["worker"]

    def _is_ready(self) -> bool:
        """Ready once it has published a heartbeat: the model is loaded and the consumer is about to start."""
        with redis.Redis.from_url(self.env["M4T_REDIS_URL"], socket_connect_timeout=1) as client:
            try:
                return bool(client.exists(HEARTBEAT_PREFIX + self.worker_name))
            except redis.RedisError:
                return False
