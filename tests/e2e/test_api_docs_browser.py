"""The API documentation renders in a real browser with no network but the service (issue 15: ``/schema`` was
a blank page offline, "Redoc is not defined"). Debian's chromium, driven by Playwright; every request to
another host is refused and recorded, so a CDN reference fails the test even on a machine that has a network.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Route, sync_playwright

from tests.e2e.conftest import Service

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.parametrize(
    ("page_path", "rendered"),
    [
        ("/schema", "[role=menuitem]:has-text('Submit a job')"),  # Redoc's side menu, built from the document
        ("/schema/swagger", ".swagger-ui .opblock-summary:has-text('/jobs')"),  # Swagger UI's operations
    ],
)
def test_the_docs_page_renders_offline(service: Service, page_path: str, rendered: str) -> None:
    own = urlsplit(service.url).netloc
    elsewhere: list[str] = []
    errors: list[str] = []

    def only_the_service(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == own or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", only_the_service)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            response = page.goto(service.url + page_path)
            assert response is not None and response.status == 200
            page.wait_for_selector(rendered, timeout=20_000)
            title = page.title()
        finally:
            browser.close()
    assert title == "GeekBlog Tasks"
    assert elsewhere == [], f"{page_path} asked for {elsewhere}"
    assert errors == [], errors
