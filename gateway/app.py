"""The FastAPI gateway: validates requests, stores inputs, enqueues jobs, serves results. It never imports torch
or the worker; it knows task names and message schemas from ``shared/``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from gateway.body import BodyLimitMiddleware
from gateway.errors import install_error_handlers
from gateway.routes import jobs, lifecycle, meta, seed
from gateway.routes.meta import package_version
from gateway.services import Services
from shared.settings import GatewaySettings

log = logging.getLogger(__name__)

JSON_SLACK_BYTES = 64 * 1024


def create_app(settings: GatewaySettings, *, services: Services | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        held = services or Services.from_settings(settings)
        app.state.services = held
        try:
            yield
        finally:
            await held.close()

    app = FastAPI(
        title="SeamlessM4T v2 API",
        version=package_version(),
        description="Speech and text translation with SeamlessM4T v2, behind a job queue. "
        "Submit jobs and poll them (`/api/v1/jobs`), or use the seed-compatible synchronous endpoints.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024),
        # Text is at most max_text_chars characters, each at most 4 bytes in UTF-8 (and 6 as a JSON \\u escape).
        max_other_bytes=settings.max_text_chars * 6 + JSON_SLACK_BYTES,
    )
    app.include_router(jobs.router)
    app.include_router(lifecycle.router)
    app.include_router(seed.router)
    app.include_router(meta.router)

    if settings.ui_mount:
        from client.ui import mount_ui, ui_available

        if ui_available():
            host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
            mount_ui(app, f"http://{host}:{settings.api_port}", settings.ui_api_key)
        else:
            log.warning("M4T_UI_MOUNT is on but Gradio is not installed (pip install 'seamlessm4t-api[ui]')")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory gateway.app:app_from_env``: settings from the environment."""
    return create_app(GatewaySettings())
