"""A real ``geekblog serve`` process and Debian's chromium driven by Playwright (sync API) for the dashboard.

The browser is Debian's package (``make test`` installs it where it is missing and apt can), never
Playwright's own download, which cannot reach its hosts here. Where no chromium exists the tests skip
with the reason in capitals: the dashboard is then untested, and the summary (``-ra``) says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.e2e.conftest import Service, make_service, service

__all__ = ["make_service", "service"]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]


expect.set_options(timeout=15_000)  # a loaded 2-CPU machine runs the suite on two workers


def chromium_path() -> str | None:
    """``$CHROMIUM``, else Debian's ``/usr/bin/chromium``, else ``chromium`` on the ``PATH``."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def playwright() -> Iterator[Playwright]:
    """Per test: Playwright's sync API keeps an event loop of its own running while it is open, which the
    asyncio tests sharing this worker process (pytest-xdist) must not find."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless chromium, started as the machine notes say; Playwright gives it a fresh empty profile."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "DASHBOARD NOT TESTED: NO CHROMIUM. Install Debian's package (apt-get install chromium; "
            "`make test` does it where apt is usable) or set CHROMIUM to a chromium binary"
        )
    launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[[Service, str], Page]]:
    """Open a path of a service in a fresh browser context (its own cookies); a script error fails the test."""
    contexts = []
    errors: list[str] = []

    def open_(service: Service, path: str) -> Page:
        context = browser.new_context(base_url=service.url, viewport={"width": 1280, "height": 860})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"the dashboard's script failed: {errors}"


def screenshot(page: Page, name: str) -> None:
    """With ``GEEKBLOG_SCREENSHOTS=1``, save the page as ``docs/dashboard-<name>.png`` (for the README)."""
    if os.environ.get("GEEKBLOG_SCREENSHOTS") == "1":
        page.screenshot(path=str(ROOT / "docs" / f"dashboard-{name}.png"), full_page=True)
