"""The FastAPI gateway: validates requests, stores inputs, enqueues jobs, serves results. It never imports torch,
the worker or the client (the architecture contracts in pyproject.toml check it); it knows task names and message
schemas from ``shared/``. What else is served beside the API (the web UI under ``/ui``) is the composition root's
choice (``m4t/api.py``), handed in as ``extensions``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from gateway.body import BodyLimitMiddleware
from gateway.docs import install_docs
from gateway.errors import install_error_handlers
from gateway.openai_compat import routes as openai_routes
from gateway.routes import jobs, lifecycle, meta, seed
from gateway.routes.meta import package_version
from gateway.services import Services
from shared.settings import GatewaySettings

JSON_SLACK_BYTES = 64 * 1024

AppExtension = Callable[[FastAPI], object]
"""Called with the app once its API routes are in place and before it serves: mounts more ASGI apps (the web UI)."""


def create_app(
    settings: GatewaySettings, *, services: Services | None = None, extensions: Sequence[AppExtension] = ()
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Built in a thread: loading the language detector's models takes seconds.
        held = services if services is not None else await run_in_threadpool(Services.from_settings, settings)
        app.state.services = held
        try:
            yield
        finally:
            await held.close()

    app = FastAPI(
        docs_url=None,  # FastAPI's pages load from CDNs: install_docs serves them offline
        redoc_url=None,
        title="SeamlessM4T v2 API",
        version=package_version(),
        description="Speech and text translation with SeamlessM4T v2, behind a job queue. "
        "Submit jobs and poll them (`/api/v1/jobs`), use the seed-compatible synchronous endpoints, or the "
        "OpenAI-compatible audio API (`/v1/audio/...`) with the official `openai` SDK.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_docs(app)
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
    app.include_router(openai_routes.router)

    for extend in extensions:
        extend(app)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app
