"""Fixtures of the browser tests: Chromium, Playwright's browser and one page per test."""

from __future__ import annotations

import pytest

from tests.browser.lab import find_chromium

VIEWPORT = {"width": 1280, "height": 1000}


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The Chromium to drive; skips (before any server or course is set up) without it or without Playwright."""
    pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed: pip install -e '.[test]'"
    )
    path, reason = find_chromium()
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def browser(chromium_executable):
    """Headless Chromium (the system's, see tests/browser/lab.py) under Playwright, one per test module."""
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_executable, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()
