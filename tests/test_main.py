"""``python main.py``: the seed's launcher on top of ``m4t``. Its flags map onto ``m4t`` command lines, and
``python main.py --api`` started for real serves the API (workers included) without the web UI."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from services import free_ports
from test_serve import processes_with_env, serve_env

import main
from m4t.cli import build_parser
from m4t.serve import LocalStack, ServeOptions
from shared.settings import ServeSettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], ["serve"]),
        (["--both"], ["serve"]),
        (["--api"], ["serve", "--no-ui"]),
        (["--gradio"], ["ui"]),
        (["--debug"], ["--log-level", "DEBUG", "serve"]),
        (["--api", "--debug"], ["--log-level", "DEBUG", "serve", "--no-ui"]),
        (["--debug", "--gradio"], ["--log-level", "DEBUG", "ui"]),
        (["--both", "--debug"], ["--log-level", "DEBUG", "serve"]),
    ],
)
def test_the_seed_flags_map_onto_m4t(flags: list[str], expected: list[str]) -> None:
    assert main.m4t_argv(flags) == expected
    args = build_parser().parse_args(expected)  # and m4t takes what they map to
    assert args.log_level == ("DEBUG" if "--debug" in flags else "INFO")
    if expected[-1] != "ui":
        assert args.command == "serve"
        assert args.no_ui is ("--api" in flags)
        assert not args.no_worker
        assert not args.no_flower


@pytest.mark.parametrize("flags", [["--api", "--gradio"], ["--api", "--both"], ["--gradio", "--both"], ["--nope"]])
def test_modes_exclude_each_other_and_unknown_flags_are_refused(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main.m4t_argv(flags)
    assert ended.value.code == 2
    assert "usage: python main.py" in capsys.readouterr().err


def test_gradio_runs_the_ui_against_m4t_api_url_else_the_local_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("M4T_API_URL", raising=False)
    monkeypatch.delenv("M4T_API_PORT", raising=False)
    assert build_parser().parse_args(main.m4t_argv(["--gradio"])).api_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("M4T_API_URL", "https://api.example.org")
    args = build_parser().parse_args(main.m4t_argv(["--gradio"]))
    assert args.command == "ui"
    assert args.api_url == "https://api.example.org"


def test_main_hands_the_mapped_command_line_to_m4t(monkeypatch: pytest.MonkeyPatch) -> None:
    import m4t.cli

    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 7

    monkeypatch.setattr(m4t.cli, "main", fake_main)
    assert main.main(["--api", "--debug"]) == 7
    assert seen == [["--log-level", "DEBUG", "serve", "--no-ui"]]


def test_debug_reaches_the_children_of_serve(tmp_path: Path) -> None:
    """``--debug`` (``m4t --log-level DEBUG serve``) is handed on to the workers and the gateway it starts."""
    settings = ServeSettings(data_dir=tmp_path, flower_password="x", ui_port=0)
    for level, extra in (("DEBUG", ["--log-level", "DEBUG"]), ("INFO", [])):
        stack = LocalStack(settings, ServeOptions(log_level=level, run_flower=False))
        stack._plan({"M4T_REDIS_URL": "redis://127.0.0.1:1/0"}, 8000)
        argvs = {child.name: child.argv for child in stack.children}
        assert set(argvs) == {"worker1", "gateway", "webhooks"}
        m4t = [sys.executable, "-m", "m4t.cli", *extra]
        assert argvs["gateway"] == [*m4t, "gateway"]
        assert argvs["worker1"][: len(m4t) + 1] == [*m4t, "worker"]
        assert argvs["webhooks"][: len(m4t) + 3] == [*m4t, "worker", "--role", "webhooks"]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_python_main_py_api_serves_the_api_without_the_web_ui(tmp_path: Path, tiny_model_dir: Path) -> None:
    api_port, flower_port, ui_port = free_ports(3)
    env = serve_env(
        tmp_path,
        M4T_MODEL=str(tiny_model_dir),
        M4T_API_PORT=str(api_port),
        M4T_FLOWER_PORT=str(flower_port),
        M4T_FLOWER_PASSWORD="s3cret-flower",
        M4T_UI_PORT=str(ui_port),
    )
    log_path = tmp_path / "main.log"
    with log_path.open("wb") as log:
        launched = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert launched.poll() is None, log_path.read_text()
            try:
                health = httpx.get(f"{base}/api/v1/health", timeout=2)
                if health.status_code == 200 and health.json()["status"] == "healthy":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        translated = httpx.post(
            f"{base}/api/v1/t2tt", json={"text": "Bonjour", "src_lang": "fra", "tgt_lang": "eng"}, timeout=60
        )
        assert translated.status_code == 200, translated.text
        assert not _listening(ui_port)  # --api: no web UI
    finally:
        launched.send_signal(signal.SIGINT)
        try:
            code = launched.wait(timeout=60)
        finally:
            if launched.poll() is None:
                launched.kill()
    output = log_path.read_text()
    assert code == 0, output
    assert f"API:     {base}/api/v1" in output
    assert "UI:" not in output
    assert "Traceback" not in output
    deadline = time.monotonic() + 10
    while processes_with_env(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with_env(str(tmp_path)) == []
