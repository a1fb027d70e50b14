"""Comparing two builds in real Chromium: from the build page's "Compare with #N", and by ticking two
builds in the history."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.browser.conftest import Served, shot
from tests.browser.test_present_in_browser import build_via_api, demo_context
from tests.helpers import tar_bytes
from tests.wsclient import WSClient

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
    link.wait_for()  # drawn by the server; the replay must not hide it again (see the test below)
    assert link.inner_text().strip() == f"Compare with #{first}"
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


def test_a_finished_builds_page_is_not_turned_back_by_the_replay_of_its_first_status(
    page: Any, served: Served, base_image: str
) -> None:
    """The page replays every message for its steps and log; one drawn after the build ended must keep
    what it was drawn with when an old status message arrives (before: `running` flashed, Compare blinked)."""
    marker = f"replay-{time.time_ns()}"
    first = build_via_api(served, demo_context(base_image, marker), "demo/compare:1")
    files: dict[str, bytes | str] = dict(_members(demo_context(base_image, marker)))
    files["app/main.py"] = str(files["app/main.py"]) + "# changed\n"
    second = build_via_api(served, tar_bytes(files), "demo/compare:1")
    socket = WSClient(served.url.replace("http://", "ws://") + f"/ws/builds/{second}", headers=served.auth())
    replayed = []
    while (data := socket.receive()) is not None:
        replayed.append(json.loads(data))
    socket.close()
    stale = next(m for m in replayed if m["type"] == "status")
    assert stale["build"]["status"] in ("queued", "running") and stale["build"]["cache"]["compared_with"] is None
    probe = {"type": "log", "seq": replayed[-1]["seq"] + 1, "step": None, "stream": "system", "text": marker}

    # The page's socket gets only that first status, then a line to show it was taken in.
    def replay_only_the_first_status(ws: Any) -> None:
        ws.send(json.dumps(stale))
        ws.send(json.dumps(probe))

    page.route_web_socket(re.compile(r".*/ws/builds/\d+(\?.*)?$"), replay_only_the_first_status)
    page.goto(f"{served.url}/builds/{second}")
    page.wait_for_function("text => document.getElementById('build').textContent.includes(text)", arg=marker)
    assert page.get_attribute('[data-testid="build-status"]', "data-status") == "succeeded"
    link = page.locator('[data-testid="compare-link"]')
    assert link.is_visible() and link.inner_text().strip() == f"Compare with #{first}"
    assert page.console_errors == []
