"""Browser tests: Debian's Chromium driven by Playwright against a real `layerdeck serve`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PASSWORD
from tests.served import Served, layerdeck_serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(os.environ.get("LAYERDECK_SHOTS", "/tmp/layerdeck-shots"))


@pytest.fixture
def served(tmp_path: Path, base_image: str) -> Iterator[Served]:
    """A real `layerdeck serve` with accounts named admin, member and viewer (password helpers.PASSWORD)."""
    with layerdeck_serve(tmp_path / "data", log_path=tmp_path / "server.log") as instance:
        yield instance


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def sign_in(page: Any, served: Served, user: str = "admin") -> None:
    """Sign in through the sign-in page, as a person would."""
    page.goto(served.url + "/login")
    page.fill('[data-testid="login-name"]', user)
    page.fill('[data-testid="login-password"]', PASSWORD)
    page.click('[data-testid="login-submit"]')
    page.wait_for_selector('[data-testid="who"]')


@pytest.fixture
def anonymous_page(browser: Any) -> Iterator[Any]:
    """A browser tab that has not signed in."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors
    yield page
    context.close()


@pytest.fixture
def page(anonymous_page: Any, served: Served) -> Any:
    """A browser tab signed in as the admin."""
    sign_in(anonymous_page, served)
    return anonymous_page


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # the build page follows the running step; shoot from the top
    page.screenshot(path=str(path), full_page=True)
    return path
