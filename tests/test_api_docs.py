"""The API docs (``/docs``: Swagger UI, ``/redoc``: ReDoc) work on a machine without internet: a real gateway process,
opened in headless Chromium with every request to another host blocked and recorded. The pages must render the
API's operations from scripts the gateway serves, and try nothing outside. Screenshots go to ``tests/artifacts/``.
Skipped (with the reason) where Playwright or Chromium is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, browser_missing
from stack import GatewayProcess, stack_env

ARTIFACTS = Path(__file__).parent / "artifacts"
TIMEOUT_MS = 30_000

needs_browser = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway alone: the docs pages need neither Redis nor a worker (nothing is submitted)."""
    workdir = tmp_path_factory.mktemp("docs")
    env = stack_env(
        redis_url="redis://127.0.0.1:9/0",
        storage_url=f"file://{workdir / 'storage'}",
        model="tiny",
        data_dir=workdir / "data",
    )
    with GatewayProcess(workdir, env) as process:
        yield process


@pytest.fixture
def offline_page(gateway: GatewayProcess) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page whose requests reach the gateway only; the others are aborted and listed."""
    from playwright.sync_api import Route, sync_playwright

    outside: list[str] = []
    served: list[str] = []

    def only_the_gateway(route: Route) -> None:
        url = route.request.url
        if url.startswith(gateway.url + "/"):
            served.append(url.removeprefix(gateway.url))
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = chromium.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", only_the_gateway)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page, outside, served
            context.close()
        finally:
            chromium.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"docs-{name}.png"))


@needs_browser
def test_swagger_ui_renders_the_operations_offline(
    gateway: GatewayProcess, offline_page: tuple[Any, list[str], list[str]]
) -> None:
    from playwright.sync_api import expect

    page, outside, served = offline_page
    page.goto(gateway.url + "/docs")
    submit = page.locator('.opblock-summary-path[data-path="/api/v1/jobs"]').first
    expect(submit).to_be_visible()
    expect(page.locator(".opblock-summary-description", has_text="Submit a job").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/languages").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    _shot(page, "swagger")
    assert outside == [], "the Swagger UI page requested something outside the gateway"
    assert any(path.startswith("/static-offline-docs/swagger-ui-bundle.js") for path in served), served
    assert "/openapi.json" in served


@needs_browser
def test_redoc_renders_the_operations_offline(
    gateway: GatewayProcess, offline_page: tuple[Any, list[str], list[str]]
) -> None:
    from playwright.sync_api import expect

    page, outside, served = offline_page
    page.goto(gateway.url + "/redoc")
    expect(page.get_by_role("heading", name="Submit a job").first).to_be_visible()
    expect(page.get_by_text("/api/v1/jobs", exact=True).first).to_be_attached()
    page.wait_for_load_state("networkidle")
    _shot(page, "redoc")
    assert outside == [], "the ReDoc page requested something outside the gateway (fonts, scripts)"
    assert any(path.startswith("/static-offline-docs/redoc.standalone.js") for path in served), served


def test_the_docs_pages_name_no_other_host(gateway: GatewayProcess) -> None:
    """Without a browser too: both pages load their scripts, styles and fonts from the gateway, and say so."""
    for path in ("/docs", "/redoc"):
        page = httpx.get(gateway.url + path, timeout=10)
        html = page.text
        assert "/static-offline-docs/" in html
        assert "default-src 'self'" in page.headers["content-security-policy"]  # the browser loads nothing else
        for host in ("cdn.jsdelivr.net", "fonts.googleapis.com", "unpkg.com", "fastapi.tiangolo.com"):
            assert host not in html, f"{path} names {host}"
