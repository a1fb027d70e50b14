"""Presenter mode in real Chromium at projector sizes: open it from a build, edit the app code in the page,
rebuild with one click and watch only the last steps rebuild, then edit requirements.txt and watch the
install run again; the cache counter, the time saved and (when the server sends it) why a step missed."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.browser.conftest import Served, shot, sign_in
from tests.helpers import tar_bytes

pytestmark = [pytest.mark.browser, pytest.mark.engine]

PROJECTOR = {"width": 1920, "height": 1080}
APP = (
    "from flask import Flask\n\napp = Flask(__name__)\n\n\n@app.get('/')\ndef hello():\n"
    "    return 'hello'\n"
)


def demo_context(base_image: str, marker: str) -> bytes:
    """The requirements-first layout, with an install that takes a second so the cache saves one."""
    return tar_bytes({
        "Dockerfile": (
            f"FROM {base_image}\nWORKDIR /app\nCOPY requirements.txt .\n"
            "RUN echo installing && sleep 1 && cat requirements.txt > /installed.txt\n"
            "COPY ./app ./app\nRUN echo compiling && sleep 3 && ls app > /app-files.txt\n"
        ),
        "requirements.txt": f"flask==3.0\nrequests==2.32  # {marker}\n",
        "app/main.py": APP,
    })


def build_via_api(served: Served, archive: bytes, tag: str) -> int:
    api = served.session()
    created = api.post(served.url + "/api/v1/builds", files={"context": ("c.tar", archive)}, data={"tag": tag})
    assert created.status_code == 202, created.text
    build_id = int(created.json()["id"])
    deadline = time.monotonic() + 120
    while api.get(f"{served.url}/api/v1/builds/{build_id}").json()["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return build_id


def kinds(page: Any) -> list[str]:
    return page.eval_on_selector_all('[data-testid="present-step"]', "rows => rows.map(r => r.dataset.kind)")


def wait_for_new_build(page: Any, old_id: int) -> int:
    # The page changes its address in place (history.replaceState): no navigation to wait for.
    page.wait_for_function(
        "old => /^\\/builds\\/\\d+\\/present$/.test(location.pathname) && location.pathname !== old",
        arg=f"/builds/{old_id}/present", timeout=30_000)
    match = re.search(r"/builds/(\d+)/present", page.url)
    assert match
    return int(match.group(1))


def wait_until_done(page: Any, build_id: int) -> None:
    page.wait_for_selector(f'[data-testid="present"][data-build-id="{build_id}"][data-status="succeeded"]',
                           timeout=120_000)
    page.wait_for_function("() => document.querySelector('[data-testid=present-saved]').dataset.final === 'true'")
    page.wait_for_timeout(1000)  # the glow of the last step to light up fades


def edit_and_rebuild(page: Any, path: str, change: Any) -> None:
    page.click('[data-testid="present-open-editor"]')
    page.click(f'[data-testid="editor-file"][data-path="{path}"]')
    page.wait_for_selector(f'[data-testid="editor-text"][data-path="{path}"]:not([disabled])')
    text = page.locator('[data-testid="editor-text"]')
    text.fill(change(text.input_value()))


def test_edit_the_code_and_the_requirements_and_rebuild_in_presenter_mode(
    page: Any, served: Served, base_image: str
) -> None:
    page.set_viewport_size(PROJECTOR)
    first = build_via_api(served, demo_context(base_image, f"{time.time_ns()}"), "demo/shop-api:1")

    # From the build page, one click into presenter mode.
    page.goto(f"{served.url}/builds/{first}")
    page.click('[data-testid="present"]')
    page.wait_for_url(f"{served.url}/builds/{first}/present")
    wait_until_done(page, first)
    assert page.locator('[data-testid="topbar"], header.topbar').count() == 0  # nothing but the build
    assert kinds(page)[2:] == ["built"] * 4
    shot(page, "presenter-first-build")

    # The editor opens on the app code (not the Dockerfile); the change marks the file as edited.
    page.click('[data-testid="present-open-editor"]')
    editor = page.locator('[data-testid="editor-text"]')
    page.wait_for_selector('[data-testid="editor-text"][data-path="app/main.py"]:not([disabled])')
    assert editor.input_value() == APP
    assert page.locator('[data-testid="editor-file"]').evaluate_all("b => b.map(x => x.dataset.path)") == [
        "Dockerfile", "app/main.py", "requirements.txt"]
    assert page.locator('[data-testid="editor-rebuild"]').is_disabled()
    editor.fill(APP.replace("'hello'", "'hello, projector'"))
    assert page.locator('[data-testid="editor-file"][data-path="app/main.py"]').get_attribute("class").count("is-dirty")
    page.wait_for_timeout(400)
    shot(page, "presenter-editor")

    # One click: the page switches in place to the new build and follows it live.
    page.click('[data-testid="editor-rebuild"]')
    second = wait_for_new_build(page, first)
    assert second > first
    page.wait_for_selector('[data-testid="present-step"][data-status="running"]', timeout=60_000)
    shot(page, "presenter-rebuild-running")
    wait_until_done(page, second)
    assert page.locator('[data-testid="editor"]').is_hidden()
    assert kinds(page) == ["base", "cached", "cached", "cached", "built", "built"]
    cached = page.locator('[data-testid="present-cached"]')
    assert (cached.get_attribute("data-hits"), cached.get_attribute("data-total")) == ("3", "5")
    assert page.locator('[data-testid="present-cached"]').inner_text().split()[:3] == ["3", "of", "5"]
    saved = page.locator('[data-testid="present-saved"]')
    assert float(saved.get_attribute("data-seconds")) >= 1.0  # the install's `sleep 1`, not run again
    assert page.locator('[data-testid="present-step-saved"]').nth(3).inner_text().startswith("saved ")
    assert "app/main.py" in page.locator('[data-testid="present-note"]').inner_text()
    assert page.locator('[data-testid="present-exit"]').get_attribute("href") == f"/builds/{second}"

    # Why the last two steps missed the cache: the server's steps[].miss_reason, in the page.
    api_steps = served.session().get(f"{served.url}/api/v1/builds/{second}").json()["steps"]
    assert api_steps[4]["miss_reason"]["kind"] == "files_changed"
    assert api_steps[5]["miss_reason"]["kind"] == "parent_missed"
    reasons = page.locator('[data-testid="present-reason"]')
    page.wait_for_function("() => !document.querySelectorAll('[data-testid=present-reason]')[4].hidden")
    assert reasons.nth(4).inner_text() == "app/main.py changed"
    assert reasons.nth(5).inner_text() == "Step 5 was rebuilt, so this one is too"
    assert reasons.evaluate_all("els => els.filter(e => !e.hidden).length") == 2  # cached steps say nothing
    shot(page, "presenter-rebuilt-after-code-change")

    # Now requirements.txt: the install runs again, and every step after it.
    edit_and_rebuild(page, "requirements.txt", lambda text: text + "gunicorn==22.0\n")
    page.click('[data-testid="editor-rebuild"]')
    third = wait_for_new_build(page, second)
    wait_until_done(page, third)
    assert kinds(page) == ["base", "cached", "built", "built", "built", "built"]
    assert page.locator('[data-testid="present-cached"]').get_attribute("data-hits") == "1"
    assert "requirements.txt" in page.locator('[data-testid="present-note"]').inner_text()
    page.wait_for_function("() => !document.querySelectorAll('[data-testid=present-reason]')[2].hidden")
    assert reasons.nth(2).inner_text() == "requirements.txt changed"
    shot(page, "presenter-rebuilt-after-requirements-change")

    # Every kind of miss reason reads as a sentence, and one on a step shows under it.
    sentences = page.evaluate("""() => {
        const t = window.layerdeckPresent.reasonText;
        return [
          t({kind: "files_changed", modified: ["app/main.py"], added: [], removed: [],
             counts: {modified: 1, added: 0, removed: 0}}),
          t({kind: "files_changed", modified: ["a", "b", "c"], added: ["d"], removed: [],
             counts: {modified: 3, added: 1, removed: 0}}),
          t({kind: "instruction_changed"}), t({kind: "first_build"}), t({kind: "no_cache"}),
          t({kind: "build_arg_changed", args: [{name: "VERSION"}]}), t({kind: "base_image_changed", image: "py:3"}),
          t({kind: "parent_missed", step: 3}), t({kind: "something_new", text: "Told by the server."}),
          t(null), t(undefined)];
    }""")
    assert sentences == [
        "app/main.py changed", "a, b and 2 more changed", "The instruction changed",
        "First build: nothing cached yet", "Built without the cache, as asked", "Build arg VERSION changed",
        "The base image py:3 changed", "Step 3 was rebuilt, so this one is too", "Told by the server.", "", ""]
    assert page.console_errors == []


def test_a_viewer_presents_but_cannot_edit(anonymous_page: Any, served: Served, base_image: str) -> None:
    build_id = build_via_api(served, demo_context(base_image, f"viewer-{time.time_ns()}"),
                             "demo/shop-api:viewer")
    page = anonymous_page
    page.set_viewport_size({"width": 1280, "height": 720})
    sign_in(page, served, "viewer")
    page.goto(f"{served.url}/builds/{build_id}/present")
    wait_until_done(page, build_id)
    for testid in ("present-open-editor", "present-rebuild", "editor"):
        assert page.locator(f'[data-testid="{testid}"]').count() == 0
    page.keyboard.press("e")  # the editor's shortcut does nothing for a viewer
    assert page.locator('[data-testid="editor"]').count() == 0
    assert len(kinds(page)) == 6
    shot(page, "presenter-viewer-720p")
    assert page.console_errors == []
