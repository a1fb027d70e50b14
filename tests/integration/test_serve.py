"""The real command a user runs: `layerdeck serve` migrates, serves pages, the API and websockets."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from tests.helpers import tar_bytes
from tests.wsclient import WSClient
from webapp.extensions import db

ROOT = Path(__file__).resolve().parents[2]


def remove_images_of(data_dir: Path) -> None:
    import docker

    instance = (data_dir / "instance-id").read_text().strip()
    client = docker.from_env()
    for image in client.images.list(filters={"label": f"layerdeck.instance={instance}"}):
        client.images.remove(image.id, force=True)


def test_models_and_migrations_agree(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def layerdeck(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webapp.cli", *args], env=env, cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.engine
def test_a_fresh_install_prints_a_setup_link_then_serves_a_signed_in_team(tmp_path: Path, base_image: str) -> None:
    """What a new user does: start it, open the printed setup link, create the admin, make a token for a
    script, build with it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LAYERDECK_DATA_DIR": str(tmp_path / "data"), "LAYERDECK_DATABASE_URL": ""}
    proc = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        link = None
        for _ in range(300):
            link = next((m.group(0) for line in output if (m := re.search(rf"{url}/setup/\S+", line))), None)
            if link:
                break
            time.sleep(0.1)
        assert link, "".join(output)
        body = requests.get(url + "/api/v1/health", timeout=5).json()
        assert body["status"] == "ok" and body["docker"]["ok"] is True and body["database"] == {"ok": True}
        assert (tmp_path / "data" / "layerdeck.db").exists()

        home = requests.get(url + "/", timeout=5, allow_redirects=False)
        assert home.status_code == 302 and home.headers["Location"].startswith("/login")
        assert requests.get(url + "/api/v1/builds", timeout=5).status_code == 401
        assert requests.get(link.replace("/setup/", "/setup/x"), timeout=5).status_code == 404

        browser = requests.Session()
        assert "Create the first admin" in browser.get(link, timeout=5).text
        claimed = browser.post(link, data={"name": "Ada", "password": "a long passphrase", "password2":
                                           "a long passphrase"}, headers={"Origin": url}, allow_redirects=False)
        assert claimed.status_code == 302, claimed.text
        cookie = claimed.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # plain http here
        assert 'data-testid="who"' in browser.get(url + "/", timeout=5).text
        assert requests.get(link, timeout=5).status_code == 404  # one time only

        made = layerdeck("create-token", "ci script", env=env)
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip().splitlines()[-1]
        assert token.startswith("ldk_")
        script = requests.Session()
        script.headers["Authorization"] = f"Bearer {token}"

        # A few megabytes through the real server's request body reader arrive intact.
        blob = os.urandom(3 * 1024**2 + 123)
        dockerfile = f"FROM {base_image}\nCOPY blob.bin /blob.bin\nRUN md5sum /blob.bin\n"
        created = script.post(url + "/api/v1/builds", data=tar_bytes({"Dockerfile": dockerfile, "blob.bin": blob}),
                              headers={"Content-Type": "application/x-tar"}, timeout=60).json()
        for _ in range(600):
            build = script.get(url + created["api_url"], timeout=5).json()
            if build["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert build["status"] == "succeeded", build["error"]
        assert build["created_by"] == "ada"
        assert build["context"]["bytes"] == len(blob) + len(dockerfile)
        log = script.get(url + build["log_url"], timeout=5).text
        assert hashlib.md5(blob).hexdigest() in log

        # The same build again, followed in the response: gunicorn streams the messages as they come.
        with script.post(url + "/api/v1/builds?follow=1", data=tar_bytes({"Dockerfile": dockerfile, "blob.bin": blob}),
                         headers={"Content-Type": "application/x-tar"}, timeout=60, stream=True) as followed:
            lines = [json.loads(line) for line in followed.iter_lines() if line]
        assert followed.status_code == 202
        assert lines[-1] == {"type": "end", "seq": len(lines) - 1, "status": "succeeded"}
        assert any(m["type"] == "step" and m["step"]["cached"] for m in lines[1:])

        # A page that followed a build live over the websocket and left: the server still stops at once
        # (the socket's reader thread used to hold the exit for the whole 20 s graceful timeout).
        again = script.post(url + "/api/v1/builds", data={"dockerfile_text": f"FROM {base_image}\nRUN echo live\n"},
                            timeout=60).json()
        ws = WSClient(url.replace("http://", "ws://") + again["ws_url"], headers=[("Authorization", f"Bearer {token}")])
        replayed = []
        while (data := ws.receive()) is not None:
            replayed.append(json.loads(data))
            if replayed[-1]["type"] == "end":
                break
        ws.close()
        assert replayed[-1] == {"type": "end", "seq": len(replayed), "status": "succeeded"}
        proc.terminate()
        proc.wait(timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=5)
        remove_images_of(tmp_path / "data")
    assert proc.returncode == 0, "".join(output)
    assert f"serving on {url}" in "".join(output)


def test_create_user_reads_the_password_twice_from_stdin_and_refuses_a_mismatch(tmp_path: Path) -> None:
    env = {**os.environ, "LAYERDECK_DATA_DIR": str(tmp_path / "data"), "LAYERDECK_DATABASE_URL": ""}
    refused = layerdeck("create-user", "bob", "--role", "admin", "--password-stdin", env=env,
                        stdin="first password\nsecond password\n")
    assert refused.returncode == 1 and "differ" in refused.stderr
    weak = layerdeck("create-user", "bob", "--password-stdin", env=env, stdin="short\n")
    assert weak.returncode == 1 and "at least 10" in weak.stderr
    made = layerdeck("create-user", "Bob", "--role", "viewer", "--password-stdin", env=env,
                     stdin="a fine password\na fine password\n")
    assert made.returncode == 0, made.stderr
    assert "viewer bob" in made.stdout
    again = layerdeck("create-user", "bob", "--password-stdin", env=env, stdin="a fine password\n")
    assert again.returncode == 1 and "already a user" in again.stderr
    no_admin = layerdeck("create-token", "ci", env=env)
    assert no_admin.returncode == 1 and "no admin" in no_admin.stderr
    token = layerdeck("create-token", "ci", "--user", "bob", env=env)
    assert token.returncode == 0 and token.stdout.strip().splitlines()[-1].startswith("ldk_")
    reset = layerdeck("set-password", "BOB", "--password-stdin", env=env, stdin="another fine one\nanother fine one\n")
    assert reset.returncode == 0 and "New password set for bob" in reset.stdout
    from webapp import create_app
    from webapp.auth.accounts import check_password

    with create_app({"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": ""}).app_context():
        assert check_password("bob", "another fine one").user is not None
        assert check_password("bob", "a fine password").user is None
    nobody = layerdeck("set-password", "nobody", "--password-stdin", env=env, stdin="another fine one\n")
    assert nobody.returncode == 1 and "no user named" in nobody.stderr
    db_bytes = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("layerdeck.db*"))  # with its WAL
    assert token.stdout.strip().splitlines()[-1].encode() not in db_bytes and b"a fine password" not in db_bytes
    assert b"$argon2id$" in db_bytes


def test_serving_on_every_address_prints_a_warning(tmp_path: Path) -> None:
    env = {**os.environ, "LAYERDECK_DATA_DIR": str(tmp_path / "data"), "LAYERDECK_DATABASE_URL": ""}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve", "--host", "0.0.0.0", "--port", str(port)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(300):
            try:
                requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "WARNING: Layerdeck listens on 0.0.0.0" in out and "root on this host" in out
    assert "http://127.0.0.1:" in out and "/setup/" in out  # the link names an address a browser can open


def test_health_says_degraded_when_the_engine_does_not_answer(app: Flask) -> None:
    from webapp.engine import Engine

    app.extensions["layerdeck.engine"] = Engine("unix:///tmp/layerdeck-no-such-engine.sock")
    body = app.test_client().get("/api/v1/health").get_json()
    assert body["status"] == "degraded"
    assert body["docker"]["ok"] is False
    assert "does not answer" in body["docker"]["error"]
    assert body["database"] == {"ok": True}
    page = app.test_client().get("/")
    assert page.status_code == 200  # pages still load
