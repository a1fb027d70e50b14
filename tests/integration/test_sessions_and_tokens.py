"""Signing in, sessions, CSRF and Origin checks, API tokens, the sign-in rate limit, masked secrets and
the tag policy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import docker
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import PASSWORD, add_user, submit, tar_bytes, wait_for_build

ORIGIN = "http://localhost"  # the Flask test client's own origin


def signed_in(app: Flask, name: str, password: str = PASSWORD) -> tuple[FlaskClient, str]:
    """A browser-like client (cookies, no token) signed in through the form; returns it and its CSRF token."""
    browser = app.test_client(token=None)
    response = browser.post("/login", data={"name": name, "password": password, "next": "/builds"},
                            headers={"Origin": ORIGIN})
    assert response.status_code == 302, response.data
    assert response.headers["Location"] == "/builds"
    page = browser.get("/").get_data(as_text=True)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert match, "signed-in pages carry the CSRF token"
    return browser, match.group(1)


def database_bytes(app: Flask) -> bytes:
    """The database file and its write-ahead log, as an attacker with a copy of the disk would read them."""
    data = Path(app.config["DATA_DIR"])
    return b"".join(p.read_bytes() for p in data.glob("layerdeck.db*"))


def test_sign_in_sets_a_strict_cookie_and_renews_the_session(app: Flask) -> None:
    add_user(app, "alice", "member")
    browser = app.test_client(token=None)
    first = browser.post("/login", data={"name": "alice", "password": PASSWORD}, headers={"Origin": ORIGIN})
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=43200" in cookie
    old = browser.get_cookie("layerdeck_session").value
    again = browser.post("/login", data={"name": "Alice", "password": PASSWORD}, headers={"Origin": ORIGIN})
    assert again.status_code == 302
    new = browser.get_cookie("layerdeck_session").value
    assert new != old
    stale = app.test_client(token=None)
    stale.set_cookie("layerdeck_session", old)
    assert stale.get("/api/v1/me").status_code == 401  # the session before sign-in ended with it
    assert browser.get("/api/v1/me").get_json()["name"] == "alice"
    assert old.encode() not in database_bytes(app) and new.encode() not in database_bytes(app)


def test_secure_cookie_under_https(make_app: Any) -> None:
    app = make_app(start=False, PROXIES=1, PUBLIC_URL="https://layerdeck.example")
    add_user(app, "alice", "member")
    browser = app.test_client(token=None)
    response = browser.post("/login", data={"name": "alice", "password": PASSWORD},
                            headers={"Origin": "https://layerdeck.example", "X-Forwarded-Proto": "https",
                                     "X-Forwarded-Host": "layerdeck.example"})
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_unknown_user_and_wrong_password_get_the_same_answer(app: Flask) -> None:
    add_user(app, "alice", "member")
    anonymous = app.test_client(token=None)
    wrong = anonymous.post("/login", data={"name": "alice", "password": "not the password"})
    unknown = anonymous.post("/login", data={"name": "nobody", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    message = "That user name and password do not match an account."
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)
    assert "nobody" in unknown.get_data(as_text=True)  # the name is kept in the form, nothing else differs


def test_sign_in_is_rate_limited_per_user_and_per_address(app: Flask) -> None:
    add_user(app, "alice", "member")
    add_user(app, "bob", "member")
    anonymous = app.test_client(token=None)
    for _ in range(5):
        assert anonymous.post("/login", data={"name": "alice", "password": "guess"}).status_code == 401
    locked = anonymous.post("/login", data={"name": "alice", "password": PASSWORD})
    assert locked.status_code == 429  # even the right password waits now
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    assert int(locked.headers["Retry-After"]) > 0
    # Another account from the same address still signs in, until the address has failed 20 times.
    assert anonymous.post("/login", data={"name": "bob", "password": PASSWORD}).status_code == 302
    for n in range(15):
        anonymous.post("/login", data={"name": f"user{n}", "password": "guess"})
    assert anonymous.post("/login", data={"name": "bob", "password": PASSWORD}).status_code == 429
    failures = app.test_client().get("/api/v1/audit?action=session.login_failed&limit=100").get_json()["events"]
    assert len(failures) == 20 and {e["detail"]["reason"] for e in failures} == {"mismatch", "unknown"}


def test_cookie_requests_need_the_csrf_token_and_our_own_origin(app: Flask) -> None:
    add_user(app, "alice", "member")
    browser, csrf = signed_in(app, "alice")
    form = {"dockerfile_text": "FROM scratch\nLABEL a=b\n"}
    missing = browser.post("/api/v1/builds", data=form)
    assert missing.status_code == 403 and missing.get_json()["error"]["code"] == "csrf_failed"
    # Change the first character to one it surely is not: "x" + csrf[1:] is csrf itself one time in 64.
    tampered = ("y" if csrf[0] == "x" else "x") + csrf[1:]
    wrong = browser.post("/api/v1/builds", data=form, headers={"X-CSRF-Token": tampered})
    assert wrong.status_code == 403 and wrong.get_json()["error"]["code"] == "csrf_failed"
    # A page a container serves on another port of this host is same-site, and still refused.
    for headers in ({"Origin": "http://localhost:20001"}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"},
                    {"Sec-Fetch-Site": "cross-site"}):
        refused = browser.post("/api/v1/builds", data=form, headers={"X-CSRF-Token": csrf, **headers})
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "bad_origin", headers
    ok = browser.post("/api/v1/builds", data=form, headers={"X-CSRF-Token": csrf, "Origin": ORIGIN,
                                                             "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 202, ok.get_json()
    # Plain forms carry it as a field; signing out without it is refused.
    assert browser.post("/logout").status_code == 403
    out = browser.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 302 and out.headers["Location"] == "/login?signed_out=1"
    assert "You are signed out" in browser.get(out.headers["Location"]).get_data(as_text=True)
    assert browser.get("/api/v1/me").status_code == 401
    # Sign-in from another site is refused too (login CSRF).
    foreign = app.test_client(token=None).post("/login", data={"name": "alice", "password": PASSWORD},
                                               headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403


def test_tokens_are_shown_once_stored_as_digests_and_accepted_only_as_bearer(app: Flask) -> None:
    add_user(app, "alice", "member")
    browser, csrf = signed_in(app, "alice")
    made = browser.post("/api/v1/tokens", json={"name": "ci deploy"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    secret = made.get_json()["token"]
    token_id = made.get_json()["id"]
    assert secret.startswith("ldk_") and made.get_json()["prefix"] == secret[:10]
    assert made.headers["Cache-Control"] == "no-store" and made.headers["X-Frame-Options"] == "DENY"
    listed = browser.get("/api/v1/tokens").get_json()["tokens"]
    assert all("token" not in t for t in listed) and secret not in json.dumps(listed)
    assert secret.encode() not in database_bytes(app)

    script = app.test_client(token=secret)
    assert script.get("/api/v1/me").get_json()["name"] == "alice"
    assert script.post("/api/v1/builds", data={"dockerfile_text": "FROM scratch\nLABEL a=b\n"}).status_code == 202
    used = next(t for t in browser.get("/api/v1/tokens").get_json()["tokens"] if t["id"] == token_id)
    assert used["last_used_at"] and used["last_used_from"] == "127.0.0.1"

    anonymous = app.test_client(token=None)
    for where in ({"query_string": {"token": secret}}, {"query_string": {"access_token": secret}},
                  {"headers": {"Authorization": f"Token {secret}"}}, {"headers": {"X-Api-Token": secret}}):
        assert anonymous.get("/api/v1/me", **where).status_code == 401, where
    as_cookie = app.test_client(token=None)
    as_cookie.set_cookie("layerdeck_session", secret)
    assert as_cookie.get("/api/v1/me").status_code == 401

    bob = app.test_client(token=add_user(app, "bob", "member"))
    assert bob.delete(f"/api/v1/tokens/{token_id}").status_code == 404  # not his to see
    revoked = browser.delete(f"/api/v1/tokens/{token_id}", headers={"X-CSRF-Token": csrf})
    assert revoked.status_code == 200 and revoked.get_json()["revoked"] is True
    refused = script.get("/api/v1/me")
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "bad_credentials"
    actions = [e["action"] for e in app.test_client().get("/api/v1/audit?user=alice").get_json()["events"]]
    assert "token.create" in actions and "token.revoke" in actions


def test_admin_manages_people_and_a_changed_account_signs_in_again(app: Flask) -> None:
    admin = app.test_client()
    made = admin.post("/api/v1/users", json={"name": "Carol", "role": "viewer", "password": "a good password"})
    assert made.status_code == 201 and made.get_json()["name"] == "carol"
    assert admin.post("/api/v1/users", json={"name": "carol", "role": "viewer",
                                             "password": "a good password"}).status_code == 409
    assert admin.post("/api/v1/users", json={"name": "dan", "role": "root", "password": "a good password"}
                      ).get_json()["error"]["code"] == "invalid_role"
    assert admin.post("/api/v1/users", json={"name": "dan", "role": "member", "password": "short"}
                      ).get_json()["error"]["code"] == "weak_password"
    carol_id = made.get_json()["id"]
    browser, _ = signed_in(app, "carol", "a good password")
    assert admin.patch(f"/api/v1/users/{carol_id}", json={"role": "member"}).get_json()["role"] == "member"
    assert browser.get("/api/v1/me").status_code == 401  # signed out everywhere by the change
    assert admin.patch(f"/api/v1/users/{carol_id}", json={"privileged": True}).status_code == 400
    carol_token = add_user(app, "carol2", "member")
    carol2_id = app.test_client(token=carol_token).get("/api/v1/me").get_json()["id"]
    admin.patch(f"/api/v1/users/{carol2_id}", json={"disabled": True})
    assert app.test_client(token=carol_token).get("/api/v1/me").status_code == 401  # a disabled user's token
    me = admin.get("/api/v1/me").get_json()
    last = admin.patch(f"/api/v1/users/{me['id']}", json={"role": "member"})
    assert last.status_code == 409 and last.get_json()["error"]["code"] == "last_admin"


@pytest.mark.engine
def test_secret_build_args_never_reach_the_database_the_api_or_the_pages(
    app: Flask, client: FlaskClient, base_image: str, docker_client: docker.DockerClient
) -> None:
    secret = "s3cr3t-VALUE-9f8e7d"
    dockerfile = f'FROM {base_image}\nARG API_TOKEN\nARG VERSION\nRUN echo "using $API_TOKEN for $VERSION"\n'
    created = submit(client, tar_bytes({"Dockerfile": dockerfile}), tag="layerdeck-test/secret:1",
                     build_args=json.dumps({"API_TOKEN": secret, "VERSION": "1.2"}))
    build = wait_for_build(client, created.get_json()["id"])
    assert build["status"] == "succeeded", build["error"]
    assert build["options"]["build_args"] == {"API_TOKEN": "********", "VERSION": "1.2"}
    assert build["options"]["secret_build_args"] == ["API_TOKEN"]
    log = client.get(build["log_url"]).get_data(as_text=True)
    assert "using ******** for 1.2" in log
    for text in (log, json.dumps(build), client.get(build["url"]).get_data(as_text=True),
                 json.dumps(client.get("/api/v1/builds").get_json()), client.get("/builds").get_data(as_text=True)):
        assert secret not in text
    assert secret.encode() not in database_bytes(app)
    # The engine got the real value (and, as the form says, keeps it in the image history).
    history = json.dumps(docker_client.api.history(build["image_id"]))
    assert secret in history

    again = client.post(f"{build['api_url']}/rebuild")
    assert again.status_code == 400 and again.get_json()["error"]["code"] == "secrets_needed"
    assert again.get_json()["error"]["secret_build_args"] == ["API_TOKEN"]
    rebuilt = client.post(f"{build['api_url']}/rebuild", json={"build_args": {"API_TOKEN": secret}})
    assert rebuilt.status_code == 202
    assert wait_for_build(client, rebuilt.get_json()["id"])["status"] == "succeeded"
    assert secret.encode() not in database_bytes(app)


@pytest.mark.engine
def test_secret_looking_run_environment_is_masked_but_reaches_the_container(
    client: FlaskClient, base_image: str, docker_client: docker.DockerClient
) -> None:
    created = submit(client, tar_bytes({"Dockerfile": f'FROM {base_image}\nCMD ["sleep", "30"]\n'}))
    build = wait_for_build(client, created.get_json()["id"])
    run = client.post("/api/v1/runs", json={"build_id": build["id"],
                                            "env": {"DB_PASSWORD": "hunter2-xyz", "MODE": "demo"}}).get_json()
    try:
        assert run["env"] == {"DB_PASSWORD": "********", "MODE": "demo"}
        env = docker_client.api.inspect_container(run["container_id"])["Config"]["Env"]
        assert "DB_PASSWORD=hunter2-xyz" in env
    finally:
        client.delete(f"/api/v1/runs/{run['id']}")


@pytest.mark.engine
def test_the_tag_policy_protects_images_layerdeck_did_not_build(make_app: Any, base_image: str) -> None:
    app = make_app()
    client = app.test_client()
    foreign = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\n"}), tag=base_image)
    assert foreign.status_code == 409 and foreign.get_json()["error"]["code"] == "tag_protected"
    assert "did not build" in foreign.get_json()["error"]["message"]

    alice = app.test_client(token=add_user(app, "alice", "member"))
    bob = app.test_client(token=add_user(app, "bob", "member"))
    tag = f"layerdeck-test/policy-{id(app)}:1"
    made = submit(alice, tar_bytes({"Dockerfile": f"FROM {base_image}\nLABEL who=alice\n"}), tag=tag)
    assert wait_for_build(alice, made.get_json()["id"])["status"] == "succeeded"
    # By default anyone may rebuild a tag Layerdeck made...
    again = submit(bob, tar_bytes({"Dockerfile": f"FROM {base_image}\nLABEL who=bob\n"}), tag=tag)
    assert again.status_code == 202
    assert wait_for_build(bob, again.get_json()["id"])["status"] == "succeeded"
    # ...and with protect-others, only the one who last built it (or an admin).
    app.config["TAG_POLICY"] = "protect-others"
    taken = submit(alice, tar_bytes({"Dockerfile": f"FROM {base_image}\nLABEL who=alice2\n"}), tag=tag)
    assert taken.status_code == 409 and "last built by bob" in taken.get_json()["error"]["message"]
    admins = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nLABEL who=admin\n"}), tag=tag)
    assert admins.status_code == 202


def test_a_page_from_another_name_for_this_machine_is_refused(make_app: Any) -> None:
    """DNS rebinding: evil.example made to point at 127.0.0.1 sends Host: evil.example."""
    app = make_app(start=False)
    anonymous = app.test_client(token=None)
    rebound = anonymous.get("/login", headers={"Host": "evil.example:8000"})
    assert rebound.status_code == 400 and b"does not answer to the name" in rebound.data
    assert anonymous.post("/login", data={"name": "x", "password": "y"}, headers={"Host": "evil.example:8000",
                          "Origin": "http://evil.example:8000"}).status_code == 400
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "127.0.0.2"):
        assert anonymous.get("/login", headers={"Host": host}).status_code == 200, host
    shared = make_app(start=False, HOST="0.0.0.0")
    assert shared.test_client(token=None).get("/login", headers={"Host": "layerdeck.lan:8000"}).status_code == 200
    public = make_app(start=False, HOST="0.0.0.0", PUBLIC_URL="https://layerdeck.example.com")
    client = public.test_client(token=None)
    assert client.get("/login", headers={"Host": "layerdeck.example.com"}).status_code == 200
    assert client.get("/login", headers={"Host": "other.example.com"}).status_code == 400


def test_parallel_wrong_passwords_are_counted_before_they_are_checked(app: Flask) -> None:
    from concurrent.futures import ThreadPoolExecutor

    add_user(app, "bob", "member")

    def attempt(_: int) -> int:
        return app.test_client(token=None).post("/login", data={"name": "bob", "password": "guess"}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(attempt, range(16)))
    assert codes.count(401) == 5 and codes.count(429) == 11  # 5 per name, however they arrive
    padded = app.test_client(token=None).post("/login", data={"name": "bob" + " " * 61 + "x", "password": PASSWORD})
    assert padded.status_code == 401  # not bob: a name with spaces is no account's name, and no new key for bob
    assert app.test_client(token=None).post("/login", data={"name": " BOB ", "password": PASSWORD}).status_code == 429


def test_a_websocket_closes_when_its_token_is_revoked(make_app: Any) -> None:
    import threading
    import time as _time

    from werkzeug.serving import make_server

    from tests.wsclient import WSClient
    from webapp import streaming

    app = make_app(start=False)  # no build workers: the build below stays queued, its socket stays open
    token = add_user(app, "vic", "viewer")
    admin = app.test_client()
    queued = admin.post("/api/v1/builds", data={"dockerfile_text": "FROM scratch\nLABEL a=b\n"}).get_json()["id"]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    old, streaming.RECHECK_S = streaming.RECHECK_S, 0.5
    try:
        ws = WSClient(f"ws://127.0.0.1:{server.server_port}/ws/builds/{queued}",
                      headers=[("Authorization", f"Bearer {token}")], timeout=30)
        assert ws.receive() is not None  # the queued status
        mine = app.test_client(token=token).get("/api/v1/tokens").get_json()["tokens"]
        assert admin.delete(f"/api/v1/tokens/{mine[0]['id']}").status_code == 200
        deadline = _time.monotonic() + 10
        while ws.receive() is not None:
            assert _time.monotonic() < deadline
        assert ws.close_code == 1008
    finally:
        streaming.RECHECK_S = old
        server.shutdown()
