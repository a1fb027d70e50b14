"""Deny by default: every route and websocket refuses an anonymous caller, except a short allowlist; and
what each role may do, over HTTP and websockets, with ownership."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import add_user, submit, tar_bytes, wait_for_build
from tests.wsclient import WSClient
from webapp.auth.access import Level, level_of

# The only routes an anonymous caller may reach. Setup is reachable only while no account exists (and
# then only with the printed token); the app under test has an admin, so it refuses too.
ANONYMOUS_OK = {"auth.login_page", "auth.login", "health.health"}
SETUP_ONLY = {"auth.setup_page", "auth.setup"}


def sample_url(rule: Any) -> str:
    """The rule's path with every variable filled in."""
    return re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: "1" if m.group(1) == "int" else "x1", rule.rule)


def every_route(app: Flask) -> list[tuple[str, str, str, bool]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.endpoint, method, sample_url(rule), bool(getattr(rule, "websocket", False))))
    return routes


def test_every_route_has_an_access_decision(app: Flask) -> None:
    undecided = [rule.rule for rule in app.url_map.iter_rules()
                 if rule.endpoint != "static" and level_of(app.view_functions[rule.endpoint]) is None]
    assert undecided == [], f"routes without @access(...): {undecided}"
    public = {rule.endpoint for rule in app.url_map.iter_rules()
              if rule.endpoint != "static" and level_of(app.view_functions[rule.endpoint]) == Level.PUBLIC}
    assert public == ANONYMOUS_OK, "a new public route needs a reason and a place in ANONYMOUS_OK"
    setup = {rule.endpoint for rule in app.url_map.iter_rules()
             if rule.endpoint != "static" and level_of(app.view_functions[rule.endpoint]) == Level.SETUP}
    assert setup == SETUP_ONLY


def test_a_route_without_a_decision_is_refused_to_everyone(make_app: Any) -> None:
    app = make_app(start=False)

    @app.get("/api/v1/forgotten")
    def forgotten() -> str:
        return "should never be served"

    assert app.test_client().get("/api/v1/forgotten").status_code == 403  # even the admin
    assert app.test_client(token=None).get("/api/v1/forgotten").status_code == 403


def test_every_route_refuses_an_anonymous_caller(app: Flask) -> None:
    anonymous = app.test_client(token=None)
    routes = every_route(app)
    assert len(routes) > 30
    checked = 0
    for endpoint, method, url, websocket in routes:
        if endpoint in ANONYMOUS_OK:
            continue
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                   "Sec-WebSocket-Version": "13"} if websocket else {}
        response = anonymous.open(url, method=method, headers=headers)
        if endpoint in SETUP_ONLY:
            assert response.status_code == 404, (endpoint, response.status_code)
        elif method == "GET" and not websocket and not url.startswith("/api/"):
            assert response.status_code == 302, (endpoint, url, response.status_code)
            assert response.headers["Location"].startswith("/login?next=")
        else:
            assert response.status_code == 401, (endpoint, method, url, response.status_code)
            if url.startswith("/api/"):
                assert response.get_json()["error"]["code"] == "unauthenticated"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        checked += 1
    assert checked == len(routes) - sum(1 for r in routes if r[0] in ANONYMOUS_OK)


def test_the_allowlisted_routes_answer_an_anonymous_caller(app: Flask) -> None:
    anonymous = app.test_client(token=None)
    assert anonymous.get("/api/v1/health").status_code == 200
    page = anonymous.get("/login")
    assert page.status_code == 200 and b'data-testid="login-form"' in page.data
    assert b"engine-status" not in page.data  # nothing about the engine before signing in
    assert anonymous.get("/static/css/app.css").status_code == 200


# --- roles x actions x ownership ---------------------------------------------------------------------------


@pytest.fixture
def team(app: Flask) -> dict[str, FlaskClient]:
    """Clients for an admin, two members and a viewer."""
    tokens = {"admin": app.extensions["test.tokens"]["admin"]}
    for name, role in (("alice", "member"), ("bob", "member"), ("vic", "viewer")):
        tokens[name] = add_user(app, name, role)
    app.extensions["test.tokens"].update(tokens)
    return {name: app.test_client(token=token) for name, token in tokens.items()}


@pytest.mark.engine
def test_roles_and_ownership_over_builds_and_runs(team: dict[str, FlaskClient], base_image: str) -> None:
    alice, bob, vic, admin = team["alice"], team["bob"], team["vic"], team["admin"]
    dockerfile = f"FROM {base_image}\nEXPOSE 8080\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n"
    refused = submit(vic, tar_bytes({"Dockerfile": dockerfile}))
    assert refused.status_code == 403 and "viewer" in refused.get_json()["error"]["message"]

    created = submit(alice, tar_bytes({"Dockerfile": dockerfile}))
    assert created.status_code == 202
    build = wait_for_build(alice, created.get_json()["id"])
    assert build["status"] == "succeeded" and build["created_by"] == "alice"

    for who in (alice, bob, vic, admin):  # everyone signed in reads everything
        assert who.get(f"/api/v1/builds/{build['id']}").status_code == 200
        assert who.get("/api/v1/builds").status_code == 200
        assert who.get(f"/builds/{build['id']}").status_code == 200
        assert who.get(build["log_url"]).status_code == 200

    # Cancelling: only its owner or an admin (it has finished, so they get 409, not 403).
    cancel = f"/api/v1/builds/{build['id']}/cancel"
    assert vic.post(cancel).status_code == 403
    assert bob.post(cancel).get_json()["error"]["code"] == "not_owner"
    assert alice.post(cancel).status_code == 409
    assert admin.post(cancel).status_code == 409
    assert vic.post(f"/api/v1/builds/{build['id']}/rebuild").status_code == 403

    # Runs: members start them; stop, restart and remove are the owner's or an admin's.
    body = {"build_id": build["id"], "ports": [{"container_port": 8080, "host_port": None}]}
    assert vic.post("/api/v1/runs", json=body).status_code == 403
    started = alice.post("/api/v1/runs", json=body)
    assert started.status_code == 201, started.get_json()
    run = started.get_json()
    assert run["created_by"] == "alice"
    base = f"/api/v1/runs/{run['id']}"
    try:
        for who, expected in ((vic, 403), (bob, 403)):
            assert who.post(base + "/stop").status_code == expected
            assert who.post(base + "/restart").status_code == expected
            assert who.delete(base).status_code == expected
        assert vic.get(base).status_code == 200
        assert alice.post(base + "/stop").status_code == 200
        assert admin.post(base + "/restart").status_code == 200
    finally:
        assert admin.delete(base).status_code == 200

    # People, tokens and the audit log are the admin's.
    for who in (alice, vic):
        assert who.get("/api/v1/users").status_code == 403
        assert who.get("/api/v1/audit").status_code == 403
        assert who.get("/admin/users").status_code == 403
        assert who.post("/api/v1/users", json={"name": "eve", "role": "admin", "password": "x" * 12}).status_code == 403
        assert who.post("/api/v1/tokens", json={"name": "theirs", "user": "admin"}).status_code == 403
    assert admin.get("/api/v1/users").status_code == 200
    events = admin.get("/api/v1/audit?user=alice").get_json()["events"]
    actions = [e["action"] for e in events]
    assert {"build.create", "run.create", "run.stop"} <= set(actions)
    assert "build.cancel" not in actions  # refused (409: it had finished), so nothing happened
    assert all(e["user"] == "alice" and e["address"] for e in events)
    stopped = next(e for e in events if e["action"] == "run.stop")
    assert stopped["target"] == f"run {run['id']}" and stopped["via"] == "token alice tests"
    restarted = admin.get("/api/v1/audit?action=run.restart").get_json()["events"]
    assert [e["user"] for e in restarted] == ["admin"]


def test_websockets_need_a_signed_in_caller_and_a_page_of_our_own(
    app: Flask, live_server: str, team: dict[str, FlaskClient]
) -> None:
    created = team["admin"].post("/api/v1/builds", data={"dockerfile_text": "FROM scratch\nLABEL a=b\n"})
    build_id = created.get_json()["id"]
    url = live_server.replace("http://", "ws://") + f"/ws/builds/{build_id}"
    with pytest.raises(ConnectionError, match="401"):
        WSClient(url, headers=[], timeout=10)
    with pytest.raises(ConnectionError, match="401"):
        WSClient(url, headers=[("Authorization", "Bearer ldk_not-a-token")], timeout=10)
    viewer = [("Authorization", f"Bearer {app.extensions['test.tokens']['vic']}")]
    foreign = [*viewer, ("Origin", "http://127.0.0.1:20001")]  # a container's page on another port
    with pytest.raises(ConnectionError, match="403"):
        WSClient(url, headers=foreign, timeout=10)
    # A viewer may watch.
    ws = WSClient(url, headers=viewer, timeout=30)
    try:
        assert ws.receive() is not None
    finally:
        ws.close()
    own = [*viewer, ("Origin", live_server)]
    WSClient(url, headers=own, timeout=30).close()
