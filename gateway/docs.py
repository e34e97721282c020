"""The API docs pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), working with no internet.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and ReDoc's fonts from Google: on a closed network they
stay blank. Here the scripts and styles come from the gateway itself (the ``fastapi-offline`` package bundles
them; they are served under ``ASSETS_PATH``), ReDoc uses the browser's fonts, and each page is sent with a
Content-Security-Policy that lets it load from this origin only: ReDoc's sidebar shows a logo from its vendor's
CDN, which the browser then never requests.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/static-offline-docs"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

# Inline scripts and styles: FastAPI's pages start the viewers inline, and both viewers style inline. Workers from
# blob: URLs: ReDoc's search. Images from data: URLs: Swagger UI's icons.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'self'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def install_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the docs pages and their assets on ``app``, which must be built with ``docs_url=None`` and
    ``redoc_url=None`` (FastAPI's CDN-backed pages)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    oauth2_redirect_url = f"{docs_url}/oauth2-redirect"

    def openapi_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _offline(
            get_swagger_ui_html(
                openapi_url=openapi_url(request),
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=oauth2_redirect_url,
                swagger_js_url=asset(request, "swagger-ui-bundle.js"),
                swagger_css_url=asset(request, "swagger-ui.css"),
                swagger_favicon_url=asset(request, "favicon.png"),
                # The online validator badge would fetch an image from swagger.io.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _offline(get_swagger_ui_oauth2_redirect_html())

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _offline(
            get_redoc_html(
                openapi_url=openapi_url(request),
                title=f"{app.title} - ReDoc",
                redoc_js_url=asset(request, "redoc.standalone.js"),
                redoc_favicon_url=asset(request, "favicon.png"),
                with_google_fonts=False,
            )
        )
