"""Helpers the tests share: contexts as archives, submitting builds, waiting for them."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import docker
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import BuildEvent

FINISHED = {"succeeded", "failed", "cancelled", "interrupted", "timed_out"}
MTIME = 1_700_000_000


BUSYBOX = Path("/bin/busybox")


def ensure_base_image(api: docker.APIClient) -> str:
    """A tiny base image with a shell and httpd: FROM scratch + Debian's static busybox (no image can be
    pulled here). Kept between runs: it is labelled, and named by the busybox binary's digest, so a
    changed busybox gives a new one. The benchmarks use it too."""
    data = BUSYBOX.read_bytes()
    tag = f"layerdeck-test/busybox:{hashlib.sha256(data).hexdigest()[:12]}"
    if api.images(name=tag):
        return tag
    dockerfile = ('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n'
                  'LABEL layerdeck.test="base"\n')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, raw, mode in (("Dockerfile", dockerfile.encode(), 0o644), ("busybox", data, 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(raw), mode
            tar.addfile(info, io.BytesIO(raw))
    buf.seek(0)
    for chunk in api.build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True):
        if "error" in chunk:
            raise RuntimeError(f"could not build the test base image: {chunk['error']}")
    return tag


def tar_bytes(files: dict[str, bytes | str], *, mode: int = 0o644, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in sorted(files.items()):
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mode = mode
            info.mtime = MTIME
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def targz_bytes(files: dict[str, bytes | str]) -> bytes:
    return gzip.compress(tar_bytes(files), mtime=0)


def zip_bytes(files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=time.gmtime(MTIME)[:6])
            info.external_attr = (0o100644 << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def submit(client: FlaskClient, archive: bytes | None = None, *, filename: str = "context.tar",
           dockerfile_text: str | None = None, **fields: Any) -> Any:
    data: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if archive is not None:
        data["context"] = (io.BytesIO(archive), filename)
    if dockerfile_text is not None:
        data["dockerfile_text"] = dockerfile_text
    return client.post("/api/v1/builds", data=data, content_type="multipart/form-data")


def wait_for_build(client: FlaskClient, build_id: int, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        build = client.get(f"/api/v1/builds/{build_id}").get_json()
        if build["status"] in FINISHED:
            return wait_for_end(client, build_id, build)
        time.sleep(0.1)
    raise AssertionError(f"build {build_id} did not finish within {timeout} s")


def wait_for_end(client: FlaskClient, build_id: int, build: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """Wait until the build's `end` message is stored too. The worker emits it just after the final status,
    so a poll can see that status before the `end` is even queued, and journal.sync() alone would not wait
    for it; messages are written in order, so once `end` is stored everything before it is too."""
    app: Flask = client.application
    deadline = time.monotonic() + timeout
    while True:
        app.extensions["layerdeck.journal"].sync()
        with app.app_context():
            last = db.session.scalar(select(BuildEvent.type).where(BuildEvent.build_id == build_id)
                                     .order_by(BuildEvent.seq.desc()).limit(1))
        if last == "end":
            break
        assert time.monotonic() < deadline, f"build {build_id} is {build['status']} but its end never came"
        time.sleep(0.02)
    result: dict[str, Any] = client.get(f"/api/v1/builds/{build_id}").get_json()
    return result


def build_ok(client: FlaskClient, archive: bytes | None = None, **kwargs: Any) -> dict[str, Any]:
    response = submit(client, archive, **kwargs)
    assert response.status_code == 202, response.get_json()
    build = wait_for_build(client, response.get_json()["id"])
    assert build["status"] == "succeeded", (build["error"], build["steps"])
    return build


def containers_left(docker_client: docker.DockerClient, before: set[str], timeout: float = 20) -> set[str]:
    """Containers made since `before` that are still there after waiting up to `timeout` for them to go."""
    deadline = time.monotonic() + timeout
    while True:
        left = {c.id for c in docker_client.containers.list(all=True, sparse=True)} - before
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def step_states(build: dict[str, Any]) -> list[tuple[str, bool | None]]:
    """(instruction, cached) for every step, in order."""
    return [(s["instruction"], s["cached"]) for s in build["steps"]]


# --- people ------------------------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"
_password_hash: str | None = None


def password_hash() -> str:
    """One argon2id hash of PASSWORD for every test account: hashing costs ~0.2 s, and a test needs it once."""
    global _password_hash
    if _password_hash is None:
        from webapp.auth.accounts import hash_password

        _password_hash = hash_password(PASSWORD)
    return _password_hash


def add_user(app: Flask, name: str, role: str) -> str:
    """An account with PASSWORD (unless it exists: a restarted app on the same data) and a new API token
    for it; returns the token."""
    from webapp.auth import accounts, credentials

    with app.app_context():
        user = accounts.user_by_name(name) or accounts.create_user(name, role, password_hash=password_hash())
        secret, _ = credentials.create_token(user, f"{name} tests", None)
    return secret


class TokenClient(FlaskClient):
    """A test client that signs its requests with a bearer token: the app's admin's unless told otherwise
    (`app.test_client(token=None)` is anonymous)."""

    def __init__(self, *args: Any, token: str | None | bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if token is True:
            token = self.application.extensions["test.tokens"]["admin"]
        if token:
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
