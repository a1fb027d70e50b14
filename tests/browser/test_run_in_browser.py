"""A person in real Chromium: run a built image from its build page and open the container's link."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import Served, shot

pytestmark = [pytest.mark.browser, pytest.mark.engine]


def test_run_a_container_from_the_build_page_and_open_its_link(
    page: Any, served: Served, base_image: str
) -> None:
    dockerfile = (
        f"FROM {base_image}\nRUN mkdir /www && echo '<h1>served by a Layerdeck run</h1>' > /www/index.html\n"
        'EXPOSE 8080\nCMD ["httpd", "-f", "-vv", "-p", "8080", "-h", "/www"]\n'
    )
    created = served.session().post(served.url + "/api/v1/builds", files={"dockerfile_text": (None, dockerfile)},
                            data={"tag": "layerdeck-test/browser-run:1"}, timeout=30).json()
    page.goto(served.url + created["url"])
    page.wait_for_selector('[data-testid="build-status"][data-status="succeeded"]', timeout=120_000)

    page.click('[data-testid="run"]')
    page.wait_for_selector('[data-testid="run-port-row"]')  # EXPOSE 8080 pre-filled
    assert page.locator('[data-testid="run-container-port"]').first.input_value() == "8080"

    page.click('[data-testid="run-submit"]')
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    page.wait_for_selector('[data-testid="run-status"][data-status="running"]', timeout=30_000)

    link = page.locator('a[data-testid="run-port-link"]').first
    href = link.get_attribute("href")
    assert re.match(r"http://127\.0\.0\.1:2\d{4}/?$", href or "")
    with page.context.expect_page() as opened:
        link.click()
    container_page = opened.value
    container_page.wait_for_load_state()
    assert "served by a Layerdeck run" in container_page.content()
    container_page.close()

    # The request the link made shows up in the live log.
    page.wait_for_selector('[data-testid="run-log"] >> text=url:/', timeout=20_000)
    shot(page, "run-page")

    page.click('[data-testid="run-remove"]')
    page.click('[data-testid="run-remove-confirm"]')
    page.wait_for_selector('[data-testid="run-status"][data-status="removed"]', timeout=30_000)
    assert page.console_errors == []
