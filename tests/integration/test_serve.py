"""The real command a user runs: `layerdeck serve` migrates, serves pages, the API and websockets."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from tests.helpers import tar_bytes
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


@pytest.mark.engine
def test_layerdeck_serve_migrates_a_fresh_data_dir_and_serves(tmp_path: Path, base_image: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LAYERDECK_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                health = requests.get(url + "/api/v1/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            proc.kill()
            raise AssertionError(proc.stdout.read().decode() if proc.stdout else "no output")
        body = health.json()
        assert body["status"] == "ok"
        assert body["docker"]["ok"] is True and body["docker"]["api_version"]
        assert body["database"] == {"ok": True}
        assert (tmp_path / "data" / "layerdeck.db").exists()
        home = requests.get(url + "/", timeout=5)
        assert home.status_code == 200 and "Layerdeck" in home.text
        # A few megabytes through the real server's request body reader arrive intact.
        blob = os.urandom(3 * 1024**2 + 123)
        dockerfile = f"FROM {base_image}\nCOPY blob.bin /blob.bin\nRUN md5sum /blob.bin\n"
        created = requests.post(url + "/api/v1/builds", data=tar_bytes({"Dockerfile": dockerfile, "blob.bin": blob}),
                                headers={"Content-Type": "application/x-tar"}, timeout=60).json()
        for _ in range(600):
            build = requests.get(url + created["api_url"], timeout=5).json()
            if build["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert build["status"] == "succeeded", build["error"]
        assert build["context"]["bytes"] == len(blob) + len(dockerfile)
        log = requests.get(url + build["log_url"], timeout=5).text
        assert hashlib.md5(blob).hexdigest() in log
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        remove_images_of(tmp_path / "data")
    assert proc.returncode == 0, out.decode()
    assert f"serving on http://127.0.0.1:{port}" in out.decode()


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
