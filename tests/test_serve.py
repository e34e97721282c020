"""``m4t serve`` as a user runs it: one command, the whole stack, used over HTTP, stopped with Ctrl-C (SIGINT)
leaving no process behind; and a clear, quick exit when the model cannot be had."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from services import free_ports

from m4t.serve import WORKER_MALLOC_ENV

DATA = Path(__file__).parent / "data"


def processes_with_env(marker: str) -> list[int]:
    """PIDs of live processes whose environment contains ``marker`` (the test's own data folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                status = (entry / "status").read_text()
                if "State:\tZ" not in status:
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("M4T_")}
    env.update(
        {
            "M4T_DATA_DIR": str(tmp_path / "data"),
            "M4T_DEVICE": "cpu",
            "M4T_NUM_THREADS": "1",
            "M4T_TEXT_NUM_BEAMS": "1",
            "M4T_MAX_LEN_B": "10",
            "M4T_HEARTBEAT_INTERVAL_S": "0.5",
            "M4T_UI_PORT": "0",
            "M4T_DETECT_ACCURACY": "off",  # no src_lang "auto" here: spare the gateway the detector's start-up
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_runs_the_whole_stack_and_stops_cleanly_on_ctrl_c(tmp_path: Path, tiny_model_dir: Path) -> None:
    api_port, flower_port = free_ports(2)
    env = serve_env(
        tmp_path,
        M4T_MODEL=str(tiny_model_dir),
        M4T_API_PORT=str(api_port),
        M4T_FLOWER_PORT=str(flower_port),
        M4T_FLOWER_PASSWORD="s3cret-flower",
    )
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "m4t.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).json()["status"] == "healthy":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)

        translated = httpx.post(
            f"{base}/api/v1/t2tt", json={"text": "Bonjour le monde", "src_lang": "fra", "tgt_lang": "eng"}, timeout=60
        )
        assert translated.status_code == 200
        assert translated.json()["result"]["text"]
        with (DATA / "speech_fr.wav").open("rb") as f:
            spoken = httpx.post(
                f"{base}/api/v1/s2st", files={"audio_file": f}, data={"tgt_lang": "eng"}, timeout=60
            ).json()
        audio = httpx.get(spoken["result"]["audio"]["url"], timeout=30)
        assert audio.status_code == 200
        assert audio.content[:4] == b"RIFF"
        assert (tmp_path / "data" / "storage" / "jobs" / spoken["id"]).is_dir()

        flower = f"http://127.0.0.1:{flower_port}/api/workers"
        assert httpx.get(flower, timeout=10).status_code == 401
        assert httpx.get(flower, auth=("admin", "s3cret-flower"), timeout=10).status_code == 200

        assert len(processes_with_env(str(tmp_path))) >= 4  # redis, worker, gateway, flower
        environments = [
            (Path(f"/proc/{pid}/cmdline").read_bytes(), Path(f"/proc/{pid}/environ").read_bytes())
            for pid in processes_with_env(str(tmp_path))
        ]
        inference = [env for argv, env in environments if b"worker1@" in argv]
        assert inference and all(
            f"\0{key}={value}\0".encode() in b"\0" + env
            for env in inference
            for key, value in WORKER_MALLOC_ENV.items()
        )
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            code = serve.wait(timeout=60)
        finally:
            if serve.poll() is None:
                serve.kill()
            log.close()
    output = (tmp_path / "serve.log").read_text()
    assert code == 0, output
    assert f"API:     {base}/api/v1" in output
    assert "AUTH IS OFF" in output
    deadline = time.monotonic() + 10
    while processes_with_env(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with_env(str(tmp_path)) == []
    assert "Traceback" not in output


def test_serve_with_an_unreachable_model_exits_with_a_clear_message(tmp_path: Path) -> None:
    api_port, flower_port = free_ports(2)
    env = serve_env(
        tmp_path,
        M4T_API_PORT=str(api_port),
        M4T_FLOWER_PORT=str(flower_port),
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "m4t.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "facebook/seamless-m4t-v2-large" in output
    assert "M4T_MODEL=tiny" in output
    assert "Traceback" not in output
    assert time.monotonic() - started < 60
    assert processes_with_env(str(tmp_path)) == []
