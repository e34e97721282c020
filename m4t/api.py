"""``m4t gateway``: the HTTP API process, and what the root adds to the gateway's app.

The gateway builds the API (``gateway.app.create_app``) and never imports ``client/``; mounting the web UI under
``/ui`` when ``M4T_UI_MOUNT`` is on is decided and done here, handed to ``create_app`` as an extension. The same app
is served by one process or, with ``M4T_API_PROCESSES`` > 1, by several (``app_from_env`` is uvicorn's factory;
the mounted UI is refused there, as a visitor's session lives in the process that served it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gateway.app import AppExtension
    from gateway.services import Services
    from shared.settings import GatewaySettings

log = logging.getLogger(__name__)


def loopback_api_url(settings: GatewaySettings) -> str:
    """Where a UI in the API's own process reaches the API: over loopback when it listens on every address."""
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    return f"http://{host}:{settings.api_port}"


def ui_extensions(settings: GatewaySettings) -> list[AppExtension]:
    """The web UI under ``/ui`` when ``M4T_UI_MOUNT`` is on and Gradio is installed; nothing otherwise."""
    if not settings.ui_mount:
        return []
    from client.ui import mount_ui, ui_available

    if not ui_available():
        log.warning("M4T_UI_MOUNT is on but Gradio is not installed (pip install 'seamlessm4t-api[ui]')")
        return []
    api_url, api_key = loopback_api_url(settings), settings.ui_api_key

    def mount(app: FastAPI) -> None:
        mount_ui(app, api_url, api_key)

    return [mount]


def build_app(settings: GatewaySettings, *, services: Services | None = None) -> FastAPI:
    """The app ``m4t gateway`` serves: the gateway's API and the extensions its settings ask for."""
    from gateway.app import create_app

    return create_app(settings, services=services, extensions=ui_extensions(settings))


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory m4t.api:app_from_env`` (several API processes): settings from the
    environment."""
    from shared.settings import GatewaySettings

    return build_app(GatewaySettings())


def _cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from shared.settings import GatewaySettings

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["api_host"] = args.host
    if args.port:
        overrides["api_port"] = args.port
    settings = GatewaySettings(**overrides)
    serving: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_level": "warning",
        "timeout_graceful_shutdown": 5,
    }
    if settings.api_processes == 1:
        uvicorn.run(build_app(settings), **serving)
        return 0
    if settings.ui_mount:
        # The web UI keeps each visitor's session in the process that served it; several processes would split it.
        print("error: M4T_UI_MOUNT needs M4T_API_PROCESSES=1; run the UI on its own with `m4t ui`", file=sys.stderr)
        return 2
    # Several processes: uvicorn imports the app in each one, which reads its settings from the environment.
    os.environ.update(M4T_API_HOST=settings.api_host, M4T_API_PORT=str(settings.api_port))
    uvicorn.run("m4t.api:app_from_env", factory=True, workers=settings.api_processes, **serving)
    return 0


def add_gateway_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = sub.add_parser("gateway", help="run the HTTP API only")
    gateway.add_argument("--host", help="bind address (overrides M4T_API_HOST)")
    gateway.add_argument("--port", type=int, help="port (overrides M4T_API_PORT)")
    gateway.set_defaults(func=_cmd_gateway)
