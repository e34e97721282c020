"""The layers: ``m4t/`` (the composition root) wires ``gateway/``, ``worker/`` and ``client/`` together; they stand on
``shared/`` and never reach up. The import-linter contracts in pyproject.toml hold (``make lint`` runs them too),
the console script is the root's, and the web UI is mounted into the API by the root, never by the gateway."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from client.ui import ui_available
from m4t.api import build_app, ui_extensions
from shared.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_the_architecture_contracts_hold() -> None:
    done = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"], capture_output=True, text=True, check=False, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_m4t_command_is_the_composition_root() -> None:
    (script,) = (ep for ep in entry_points(group="console_scripts") if ep.name == "m4t")
    assert script.value == "m4t.cli:main"
    for argv in ([sys.executable, "-m", "m4t", "--help"], [str(BIN / "m4t"), "--help"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 0, done.stderr
        for command in ("worker", "gateway", "serve", "keys", "translate", "batch", "ui", "tiny-model", "settings"):
            assert command in done.stdout
    assert not (ROOT / "shared" / "cli.py").exists()
    assert not (ROOT / "shared" / "local_stack.py").exists()


def test_the_gateway_never_imports_the_client_even_with_the_ui_mount_on() -> None:
    code = (
        "import sys; from gateway.app import create_app; from shared.settings import GatewaySettings; "
        "app = create_app(GatewaySettings(ui_mount=True)); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'client', 'gradio', 'm4t', 'worker'}), "
        "[p for p in (getattr(r, 'path', '') for r in app.routes) if p.startswith('/ui')])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[] []"


def test_no_ui_extension_unless_asked() -> None:
    assert ui_extensions(GatewaySettings(ui_mount=False)) == []


@pytest.mark.skipif(not ui_available(), reason="the UI needs Gradio: pip install -e '.[ui]'")
def test_the_root_mounts_the_web_ui_into_the_api(redis_url: str) -> None:
    from fastapi.testclient import TestClient

    app = build_app(GatewaySettings(ui_mount=True, redis_url=redis_url))
    with TestClient(app) as http:
        page = http.get("/ui/")
        assert page.status_code == 200
        assert "gradio" in page.text.lower()
        assert http.get("/ui/config").json()["title"] == "SeamlessM4T v2"
        assert http.get("/api/v1/languages").status_code == 200  # the API is untouched
        assert http.get("/", follow_redirects=False).headers["location"] == "/docs"


def test_every_package_is_installed_typechecked_and_copied_into_the_images() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {name.rstrip("*") for name in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    on_disk = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == on_disk == {"gateway", "worker", "shared", "client", "m4t"}
    assert set(config["tool"]["mypy"]["packages"]) == packages
    assert packages <= set(config["tool"]["ruff"]["lint"]["isort"]["known-first-party"])
    assert set(config["tool"]["importlinter"]["root_packages"]) == packages
    for dockerfile in ("gateway.Dockerfile", "worker.Dockerfile"):
        lines = (ROOT / "deploy" / dockerfile).read_text().splitlines()
        copied = {line.split()[1] for line in lines if line.startswith("COPY ")}
        assert packages <= copied, f"{dockerfile} does not copy {sorted(packages - copied)}"


def test_the_import_paths_the_readme_shows_keep_working() -> None:
    from client import Client
    from client.sync import Client as SyncClient
    from shared import webhook_signing, webhook_urls
    from shared.webhooks import AllowList, WebhookVerificationError, check_webhook_url, verify_signature

    assert Client is SyncClient
    assert verify_signature is webhook_signing.verify_signature
    assert WebhookVerificationError is webhook_signing.WebhookVerificationError
    assert check_webhook_url is webhook_urls.check_webhook_url
    assert AllowList is webhook_urls.AllowList
