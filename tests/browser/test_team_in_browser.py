"""A team in real Chromium: a member signs in, builds and runs; a viewer watches and is refused the rest;
an admin finds it all in the audit log."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import Served, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.engine]


def test_a_member_builds_and_runs_and_a_viewer_is_refused(
    browser: Any, anonymous_page: Any, served: Served, base_image: str
) -> None:
    page = anonymous_page
    page.goto(served.url + "/builds")
    page.wait_for_url(re.compile(r"/login\?next=/builds$"))  # signed out: sent to sign in, then back
    shot(page, "login")
    page.fill('[data-testid="login-name"]', "member")
    page.fill('[data-testid="login-password"]', "wrong password!")
    page.click('[data-testid="login-submit"]')
    assert "do not match" in page.inner_text('[data-testid="login-error"]')
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)"]
    page.console_errors.clear()  # that refusal was the point; nothing else may fail
    sign_in(page, served, "member")
    assert page.inner_text('[data-testid="who-role"]').strip().lower() == "member"

    page.goto(served.url + "/")
    page.click('[data-testid="mode-paste"]')
    page.fill('[data-testid="dockerfile-textarea"]',
              f"FROM {base_image}\nRUN mkdir /www && echo '<h1>team</h1>' > /www/index.html\nEXPOSE 8080\n"
              'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n')
    page.fill('[data-testid="tag-input"]', "layerdeck-test/team:1")
    page.click('[data-testid="submit"]')
    page.wait_for_url(re.compile(r"/builds/\d+$"))
    build_url = page.url
    page.wait_for_selector('[data-testid="build-status"][data-status="succeeded"]', timeout=120_000)
    page.click('[data-testid="run"]')
    page.wait_for_selector('[data-testid="run-port-row"]')
    page.click('[data-testid="run-submit"]')
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    run_url = page.url
    page.wait_for_selector('[data-testid="run-status"][data-status="running"]', timeout=30_000)
    assert page.locator('[data-testid="run-stop"]').is_visible()  # the member's own run
    assert page.console_errors == []

    # A viewer: can watch the build and the run, cannot start or stop anything.
    viewer_context = browser.new_context(viewport={"width": 1440, "height": 900})
    viewer = viewer_context.new_page()
    try:
        sign_in(viewer, served, "viewer")
        viewer.goto(served.url + "/")
        assert viewer.locator('[data-testid="viewer-note"]').is_visible()
        assert viewer.locator('[data-testid="build-form"]').count() == 0
        shot(viewer, "viewer-home")
        viewer.goto(build_url)
        viewer.wait_for_selector('[data-testid="build-status"][data-status="succeeded"]')
        assert not viewer.locator('[data-testid="run"]').is_visible()
        assert not viewer.locator('[data-testid="rebuild"]').is_visible()
        viewer.goto(run_url)
        viewer.wait_for_selector('[data-testid="run-status"][data-status="running"]')
        assert not viewer.locator('[data-testid="run-stop"]').is_visible()
        # Whatever the page hides, the server refuses: the viewer's own browser session asks it directly.
        answer = viewer.evaluate("""async (url) => {
            const meta = document.querySelector('meta[name="csrf-token"]');
            const res = await fetch(url + '/stop', {method: 'POST', headers: {'X-CSRF-Token': meta.content}});
            return [res.status, (await res.json()).error.message];
        }""", run_url.replace("/runs/", "/api/v1/runs/"))
        assert answer[0] == 403 and "viewer" in answer[1]
        viewer.goto(served.url + "/admin/users")
        assert viewer.locator('[data-testid="error-page"]').get_attribute("data-status") == "403"
        assert "Only an admin" in viewer.inner_text('[data-testid="error-message"]')
    finally:
        viewer_context.close()

    page.click('[data-testid="run-stop"]')
    page.wait_for_selector('[data-testid="run-status"][data-status="stopped"]', timeout=30_000)

    # The admin sees who did what.
    admin_context = browser.new_context(viewport={"width": 1440, "height": 900})
    admin = admin_context.new_page()
    try:
        sign_in(admin, served, "admin")
        admin.goto(served.url + "/admin/audit?user=member")
        rows = admin.locator('[data-testid="audit"] tbody tr')
        actions = {rows.nth(i).get_attribute("data-action") for i in range(rows.count())}
        assert {"session.login", "session.login_failed", "build.create", "run.create", "run.stop"} <= actions
        shot(admin, "audit")
        admin.goto(served.url + "/admin/users")
        assert admin.locator('[data-testid="users"] tbody tr').count() == 3
        shot(admin, "users")
        admin.goto(served.url + "/account")
        admin.fill('[data-testid="token-name"]', "ci deploy")
        admin.click('[data-testid="token-create"]')
        admin.wait_for_selector('[data-testid="token-once"]:not([hidden])')
        assert admin.inner_text('[data-testid="token-once-value"]').startswith("ldk_")
        shot(admin, "account")
    finally:
        admin_context.close()
