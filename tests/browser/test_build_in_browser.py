"""A person in real Chromium: choose a folder, watch the steps turn BUILT, rebuild, see CACHED."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Served, shot

pytestmark = [pytest.mark.browser, pytest.mark.engine]


def make_folder(root: Path, base_image: str, marker: str) -> Path:
    folder = root / "shop-api"
    (folder / "app").mkdir(parents=True)
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\nWORKDIR /srv\nCOPY requirements.txt .\n"
        "RUN echo installing requirements && sleep 3 && cat requirements.txt\n"
        "COPY ./app ./app\nRUN echo '<b>not bold</b>' && ls app\n"
    )
    (folder / "requirements.txt").write_text(f"flask==3.0  # {marker}\n")
    (folder / "app" / "main.py").write_text("print('hello')\n")
    return folder


def wait_for_status(page: Any, status: str, timeout: float = 120_000) -> None:
    page.wait_for_selector(f'[data-testid="build-status"][data-status="{status}"]', timeout=timeout)


def step_badges(page: Any) -> list[tuple[str, str]]:
    rows = page.locator('[data-testid="step"]')
    return [(rows.nth(i).get_attribute("data-status"), rows.nth(i).locator('[data-testid="step-badge"]').inner_text())
            for i in range(rows.count())]


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_upload_a_folder_watch_it_build_then_rebuild_from_cache(
    page: Any, served: Served, base_image: str, tmp_path: Path, builder: str
) -> None:
    folder = make_folder(tmp_path, base_image, served.data_dir.name + str(id(page)))
    page.goto(served.url + "/")
    page.locator('[data-testid="folder-input"]').set_input_files(str(folder))
    page.select_option('[data-testid="builder-select"]', builder)
    page.fill('[data-testid="tag-input"]', "layerdeck-test/browser:1")
    page.click('[data-testid="submit"]')
    page.wait_for_url(re.compile(r"/builds/\d+$"))

    # Steps arrive live; the RUN with `sleep 3` is seen running before it is built.
    page.wait_for_selector('[data-testid="step"][data-status="running"]', timeout=60_000)
    wait_for_status(page, "succeeded")
    badges = step_badges(page)
    # WORKDIR on the same base may be cached from any earlier build; everything after the unique
    # requirements.txt is new.
    assert [status for status, _ in badges][2:] == ["built"] * 4
    assert [text.strip().upper() for _, text in badges[2:]] == ["BUILT"] * 4
    assert "<b>not bold</b>" in page.locator('[data-testid="step-log"]').all_inner_texts()[5] or \
        "<b>not bold</b>" in page.content().replace("&lt;", "<").replace("&gt;", ">")
    assert page.locator("b", has_text="not bold").count() == 0  # log text is never HTML
    assert page.locator('[data-testid="build-builder"]').inner_text().strip().lower().startswith(builder[:5])
    shot(page, f"build-first-{builder}")

    first_url = page.url
    page.click('[data-testid="rebuild"]')
    # The first build's page matches /builds/N too: wait for the new build's page, not the old one.
    page.wait_for_url(lambda url: url != first_url and re.search(r"/builds/\d+$", url) is not None)
    wait_for_status(page, "succeeded")
    badges = step_badges(page)
    assert [text.strip().upper() for _, text in badges[1:]] == ["CACHED"] * 5
    summary = page.locator('[data-testid="cache-summary"]')
    assert summary.get_attribute("data-hits") == "5" and summary.get_attribute("data-total") == "5"
    # The `sleep 3` step alone took seconds when it was really built: the cache saved at least that.
    assert float(page.locator('[data-testid="cache-saved"]').inner_text().split(" s saved")[0]) >= 1.0
    shot(page, f"build-rebuild-cached-{builder}")
    assert page.console_errors == []


def test_cancel_a_running_build_from_its_page(page: Any, served: Served, base_image: str) -> None:
    page.goto(served.url + "/")
    page.click('[data-testid="mode-paste"]')
    page.fill('[data-testid="dockerfile-textarea"]',
              f"FROM {base_image}\nRUN echo {id(page)} && echo waiting && sleep 30\n")
    page.click('[data-testid="submit"]')
    page.wait_for_url(re.compile(r"/builds/\d+$"))
    page.wait_for_selector('[data-testid="step"][data-status="running"]', timeout=60_000)
    page.click('[data-testid="cancel"]')
    wait_for_status(page, "cancelled", timeout=15_000)
    assert page.locator('[data-testid="cancel"]').is_hidden()
    assert "Cancelled" in page.locator('[data-testid="build-error"]').inner_text()
    shot(page, "build-cancelled")


def test_a_bad_upload_shows_the_reason_in_the_page(page: Any, served: Served, tmp_path: Path) -> None:
    not_archive = tmp_path / "notes.zip"
    not_archive.write_text("this is not a zip file at all")
    page.goto(served.url + "/")
    page.locator('[data-testid="file-input"]').set_input_files(str(not_archive))
    page.click('[data-testid="submit"]')
    error = page.locator('[data-testid="form-error"]')
    error.wait_for(timeout=30_000)
    assert "not a tar, tar.gz or zip archive" in error.inner_text()
    assert page.url == served.url + "/"
    shot(page, "index-error")


def test_advice_appears_before_building_for_a_pasted_dockerfile_and_a_folder(
    page: Any, served: Served, tmp_path: Path
) -> None:
    page.goto(served.url + "/")
    preview = page.locator('[data-testid="advice-preview"]')
    assert preview.is_hidden()
    page.click('[data-testid="mode-paste"]')
    page.fill('[data-testid="dockerfile-textarea"]',
              "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nRUN pip install -r requirements.txt\n")
    page.wait_for_selector('[data-testid="advice-preview"] [data-rule="copy-before-install"]')
    assert "requirements.txt" in preview.inner_text()
    # Fixed: the advice goes away while the Dockerfile is typed.
    page.fill('[data-testid="dockerfile-textarea"]', "FROM python:3.12-slim\nWORKDIR /app\nCOPY requirements.txt .\n"
              "RUN pip install --no-cache-dir -r requirements.txt\nCOPY . .\n")
    page.wait_for_selector('[data-testid="advice-preview"]', state="hidden")

    # A folder of many files and no .dockerignore.
    folder = tmp_path / "big-app"
    (folder / "node_modules").mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")
    for i in range(220):
        (folder / "node_modules" / f"m{i}.js").write_text(f"module.exports = {i}\n")
    page.click('[data-testid="mode-upload"]')
    page.locator('[data-testid="folder-input"]').set_input_files(str(folder))
    page.wait_for_selector('[data-testid="advice-preview"] [data-rule="no-dockerignore"]')
    assert "node_modules" in preview.inner_text()
    shot(page, "home-advice-preview")
    assert page.console_errors == []


def test_rebuilding_a_build_with_a_secret_arg_asks_for_its_value_again(
    page: Any, served: Served, base_image: str
) -> None:
    api = served.session()
    dockerfile = f'FROM {base_image}\nARG DEPLOY_TOKEN\nRUN echo "token is $DEPLOY_TOKEN" && sleep 0.2\n'
    created = api.post(served.url + "/api/v1/builds", files={"dockerfile_text": (None, dockerfile)},
                       data={"build_args": '{"DEPLOY_TOKEN": "first-value-123"}', "no_cache": "true"}).json()
    page.goto(served.url + created["url"])
    wait_for_status(page, "succeeded")
    assert "first-value-123" not in page.content()

    page.click('[data-testid="rebuild"]')
    page.wait_for_selector('[data-testid="rebuild-secrets"]')
    page.fill('[data-testid="rebuild-secret"]', "second-value-456")
    shot(page, "rebuild-secrets")  # the dialog over the build page
    page.click('[data-testid="rebuild-secrets-ok"]')
    page.wait_for_url(re.compile(rf"/builds/(?!{created['id']}$)\d+$"))
    wait_for_status(page, "succeeded")
    log = page.locator('[data-testid="step-log"]').all_inner_texts()
    assert any("token is ********" in text for text in log)
    assert "second-value-456" not in page.content()
    assert page.console_errors == []
