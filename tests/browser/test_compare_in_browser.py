"""Comparing two builds in real Chromium: from the build page's "Compare with #N", and by ticking two
builds in the history."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.browser.conftest import Served, shot
from tests.browser.test_present_in_browser import build_via_api, demo_context
from tests.helpers import tar_bytes

pytestmark = [pytest.mark.browser, pytest.mark.engine]


def test_two_builds_side_by_side_with_the_files_that_changed(page: Any, served: Served, base_image: str) -> None:
    marker = f"compare-{time.time_ns()}"
    first = build_via_api(served, demo_context(base_image, marker), "demo/compare:1")
    files: dict[str, bytes | str] = dict(_members(demo_context(base_image, marker)))
    files["app/main.py"] = str(files["app/main.py"]) + "# changed\n"
    second = build_via_api(served, tar_bytes(files), "demo/compare:1")

    # From the second build's page: it was explained against the first.
    page.goto(f"{served.url}/builds/{second}")
    link = page.locator('[data-testid="compare-link"]')
    assert link.is_visible() and link.inner_text().strip() == f"Compare with #{first}"
    link.click()
    page.wait_for_url(re.compile(rf"/builds/{first}/compare/{second}$"))
    rows = page.locator('[data-testid="compare-row"]')
    assert rows.count() == 6
    copy_app = rows.nth(4)
    assert "COPY ./app ./app" in copy_app.inner_text()
    badges = copy_app.locator('[data-testid="compare-badge"]').all_inner_texts()
    assert [b.strip().upper() for b in badges] == ["BUILT", "BUILT"]  # first build: new; second: app changed
    assert "app/main.py" in copy_app.locator('[data-testid="compare-files"]').inner_text()
    install = rows.nth(3)
    assert [b.strip().upper() for b in install.locator('[data-testid="compare-badge"]').all_inner_texts()][1] \
        == "CACHED"
    assert "app/main.py" in page.locator('[data-testid="compare-context-files"]').inner_text()
    shot(page, "compare")

    # From the history: tick the two builds, press Compare.
    page.goto(f"{served.url}/builds")
    page.check(f'[data-testid="compare-pick"][value="{second}"]')
    page.check(f'[data-testid="compare-pick"][value="{first}"]')
    page.click('[data-testid="compare-submit"]')
    page.wait_for_url(re.compile(rf"/builds/{first}/compare/{second}$"))
    assert page.console_errors == []


def _members(archive: bytes) -> dict[str, str]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
