"""A raw archive as large as one uploaded before: the engine starts on the stored context while it arrives,
the build takes that engine build over when the bytes are the same, and stops it when they are not. An
archive named by its digest starts the engine before its build is recorded, the same way.

Uploads go to a real HTTP server (werkzeug, in this process) from a body that stops half-way, so each test
sees the engine asked while half the archive has still to come, through the Engine object's own methods.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import docker
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.helpers import containers_left, tar_bytes, wait_for_build
from webapp.builds import service
from webapp.builds.options import BuildOptions
from webapp.engine import BuildRequest
from webapp.errors import Conflict
from webapp.extensions import db
from webapp.models import Build

pytestmark = pytest.mark.engine


class EngineCalls:
    """What the app asked its engine: builds started, cancelled and tagged (the real calls still happen)."""

    def __init__(self, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
        engine = app.extensions["layerdeck.runner"].engine
        self.started: list[BuildRequest] = []
        self.cancelled: list[str] = []
        self.tagged: list[tuple[str, str]] = []
        self._changed = threading.Condition()
        start, cancel, tag = engine.start_build, engine.cancel_build, engine.tag_image

        def start_build(request: BuildRequest) -> Any:
            with self._changed:
                self.started.append(request)
                self._changed.notify_all()
            return start(request)

        def cancel_build(build_id: str) -> None:
            cancel(build_id)
            with self._changed:
                self.cancelled.append(build_id)
                self._changed.notify_all()

        def tag_image(image: str, name: str) -> None:
            tag(image, name)
            self.tagged.append((image, name))

        monkeypatch.setattr(engine, "start_build", start_build)
        monkeypatch.setattr(engine, "cancel_build", cancel_build)
        monkeypatch.setattr(engine, "tag_image", tag_image)

    def wait(self, condition: Any, timeout: float = 30) -> bool:
        with self._changed:
            return self._changed.wait_for(condition, timeout)


class PausedBody:
    """An archive as a request body of known length that stops half-way until `go` is set."""

    def __init__(self, data: bytes, go: threading.Event) -> None:
        self._data, self._go, self._pos = data, go, 0
        self.half = len(data) // 2
        self.finished = False

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self.half and not self._go.is_set():
            assert self._go.wait(60), "the test never let the upload go on"
        end = len(self._data) if size is None or size < 0 else self._pos + size
        if self._pos < self.half:
            end = min(end, self.half)
        chunk = self._data[self._pos:end]
        self._pos += len(chunk)
        self.finished = self._pos >= len(self._data)
        return chunk


def post_raw(url: str, body: Any, tag: str, **params: str) -> dict[str, Any]:
    response = requests.post(url + "/api/v1/builds", params={"tag": tag, "builder": "buildkit", **params},
                             data=body, headers={"Content-Type": "application/x-tar",
                                                 "Authorization": f"Bearer {TOKEN[url]}"}, timeout=120)
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


TOKEN: dict[str, str] = {}


@pytest.fixture
def url(app: Flask, live_server: str) -> str:
    TOKEN[live_server] = app.extensions["test.tokens"]["admin"]
    return live_server


def demo_context(base_image: str, code: str) -> bytes:
    """The cache demo's layout, with 1.5 MiB of data: below 1 MiB no upload is started early."""
    return tar_bytes({
        "Dockerfile": f"FROM {base_image}\nWORKDIR /app\nCOPY requirements.txt .\nRUN cat requirements.txt\n"
                      "COPY app ./app\nRUN ls app\n",
        "requirements.txt": "flask==3.0\n",
        "app/main.py": code,
        "app/data.bin": random.Random(code).randbytes(3 * 512 * 1024),
    })


def uploaded_once(app: Flask, url: str, archive: bytes, name: str,
                  monkeypatch: pytest.MonkeyPatch) -> tuple[EngineCalls, FlaskClient, str, dict[str, Any]]:
    """The app's engine calls watched from now on, and `archive` built once through the raw upload, tagged
    layerdeck-test/early-<name>-...:1; returns the calls, a client, the tag and that first build."""
    calls = EngineCalls(app, monkeypatch)
    client = app.test_client()
    tag = f"layerdeck-test/early-{name}-{id(app)}:1"
    first = wait_for_build(client, post_raw(url, archive, tag)["id"])
    assert first["status"] == "succeeded", first["error"]
    return calls, client, tag, first


def paused_upload(url: str, archive: bytes, tag: str, calls: EngineCalls, **params: str) -> tuple[BuildRequest,
                                                                                                    dict[str, Any]]:
    """Upload `archive`, stopping half-way until the engine has been asked for a build; returns that request
    (made while half the archive had still to come) and Layerdeck's reply."""
    go, reply = threading.Event(), {}
    body = PausedBody(archive, go)
    asked = len(calls.started)
    sender = threading.Thread(target=lambda: reply.update(post_raw(url, body, tag, **params)), daemon=True)
    sender.start()
    try:
        assert calls.wait(lambda: len(calls.started) > asked), "the engine was not asked while the upload arrived"
        assert not body.finished
        early = calls.started[asked]
    finally:
        go.set()
        sender.join(timeout=120)
    assert body.finished and reply
    return early, reply


def test_an_identical_reupload_is_built_by_the_engine_build_started_while_it_arrived(
    app: Flask, url: str, base_image: str, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = demo_context(base_image, "print('hello')\n")
    calls, client, tag, first = uploaded_once(app, url, archive, "same", monkeypatch)
    assert [r.tag for r in calls.started] == [tag]  # nothing of that size was known: the ordinary way

    early, reply = paused_upload(url, archive, tag, calls)
    assert early.tag is None  # untagged until the bytes are known to be the same
    assert early.context == Path(app.config["DATA_DIR"]).resolve() / "contexts" / f"{first['id']}.tar"
    again = wait_for_build(client, reply["id"])
    assert again["status"] == "succeeded", again["error"]
    assert len(calls.started) == 2  # its worker took the early build over rather than start another
    assert calls.cancelled == []
    assert calls.tagged == [(again["image_id"], tag)]  # tagged once built
    assert again["image_id"] == first["image_id"] == docker_client.images.get(tag).id
    assert [s["cached"] for s in again["steps"] if not s["instruction"].startswith("FROM")] == [True] * 5
    assert again["tag"] == tag and again["builder"] == "buildkit"
    # Its preparation ends as a build the engine tagged itself does.
    log = client.get(f"/api/v1/builds/{again['id']}/log").get_data(as_text=True).splitlines()
    assert log[-1].endswith(f"Successfully tagged {tag}")
    first_log = client.get(f"/api/v1/builds/{first['id']}/log").get_data(as_text=True).splitlines()
    assert first_log[-1].endswith(f"Successfully tagged {tag}")


def test_other_bytes_of_the_same_size_stop_the_early_build_and_build_their_own(
    app: Flask, url: str, base_image: str, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    nonce = uuid.uuid4().hex  # the engine's cache outlives the test: these bytes must be new to it
    archive = demo_context(base_image, f"print('hello {nonce}')\n")
    changed = demo_context(base_image, f"print('hellp {nonce}')\n")  # the demo's one-letter code change
    assert len(changed) == len(archive) and changed != archive
    calls, client, tag, first = uploaded_once(app, url, archive, "other", monkeypatch)

    early, reply = paused_upload(url, changed, tag, calls)
    assert early.tag is None
    assert calls.wait(lambda: early.build_id in calls.cancelled)  # stopped: the digest said other bytes
    build = wait_for_build(client, reply["id"])
    assert build["status"] == "succeeded", build["error"]
    own = calls.started[-1]
    assert own is not early and own.tag == tag and own.build_id != early.build_id  # its own engine build
    assert calls.tagged == []  # the engine tagged it, as every ordinary build
    assert build["image_id"] != first["image_id"]
    assert docker_client.images.get(tag).id == build["image_id"]  # the tag never pointed at a wrong image
    cached = {s["instruction"]: s["cached"] for s in build["steps"]}
    assert cached["COPY requirements.txt ."] is True and cached["COPY app ./app"] is False


def test_a_client_gone_half_way_leaves_no_build_and_stops_the_early_one(
    app: Flask, url: str, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = demo_context(base_image, "print('hello')\n")
    calls, client, tag, _ = uploaded_once(app, url, archive, "gone", monkeypatch)

    address = urlsplit(url)
    query = urlencode({"tag": tag, "builder": "buildkit"})
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(f"POST /api/v1/builds?{query} HTTP/1.1\r\nHost: {address.netloc}\r\n"
                     f"Authorization: Bearer {TOKEN[url]}\r\nContent-Type: application/x-tar\r\n"
                     f"Content-Length: {len(archive)}\r\n\r\n".encode() + archive[:len(archive) // 2])
        assert calls.wait(lambda: len(calls.started) == 2)
    early = calls.started[1]
    assert early.tag is None
    assert calls.wait(lambda: early.build_id in calls.cancelled)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Build)) == 1
    deadline = time.monotonic() + 10
    while any((Path(app.config["DATA_DIR"]) / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list((Path(app.config["DATA_DIR"]) / "tmp").iterdir()) == []


def test_builds_a_wrong_guess_would_make_expensive_are_never_started_early(
    app: Flask, url: str, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = demo_context(base_image, "print('hello')\n")
    calls, client, tag, _ = uploaded_once(app, url, archive, "not", monkeypatch)
    small = tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n"})
    assert wait_for_build(client, post_raw(url, small, tag)["id"])["status"] == "succeeded"
    size = len(archive)
    ordinary = BuildOptions(builder="buildkit", tag=tag)
    never = {
        "no cache": BuildOptions(builder="buildkit", no_cache=True),
        "always pull": BuildOptions(builder="buildkit", pull=True),
        "a secret build arg": BuildOptions(builder="buildkit", build_args={"API_TOKEN": "s3cret"}),
        "the classic builder": BuildOptions(builder="classic"),
        "another Dockerfile path": BuildOptions(builder="buildkit", dockerfile="other/Dockerfile"),
    }
    with app.test_request_context():
        for why, options in never.items():
            assert service._begin_early(app, options, size) is None, why
        assert service._begin_early(app, ordinary, size + 512) is None  # no upload of that size
        assert service._begin_early(app, ordinary, len(small)) is None  # small tars share sizes: no guess
        assert service._begin_early(app, ordinary, None) is None  # a chunked body: no size known
        early = service._begin_early(app, ordinary, size)
        assert early is not None  # the ordinary case does start
        early.abandon()
        assert calls.wait(lambda: early.request.build_id in calls.cancelled)
        # The context the guess would use is gone (its file removed): nothing to start on.
        stored = Path(app.config["DATA_DIR"]) / "contexts" / "1.tar"
        stored.rename(stored.with_suffix(".away"))
        try:
            assert service._begin_early(app, ordinary, size) is None
        finally:
            stored.with_suffix(".away").rename(stored)


def test_an_archive_named_by_its_digest_has_the_engine_started_before_its_build_is_recorded(
    app: Flask, url: str, base_image: str, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = demo_context(base_image, f"print('hello {uuid.uuid4().hex}')\n")
    calls, client, tag, first = uploaded_once(app, url, archive, "digest", monkeypatch)

    response = client.post("/api/v1/builds", query_string={
        "tag": tag, "builder": "buildkit", "context_digest": hashlib.sha256(archive).hexdigest()})
    assert response.status_code == 202, response.get_json()
    build = wait_for_build(client, response.get_json()["id"])
    assert build["status"] == "succeeded", build["error"]
    assert [r.tag for r in calls.started] == [tag, None]  # untagged: asked before the row existed
    assert calls.tagged == [(build["image_id"], tag)] and calls.cancelled == []
    assert build["image_id"] == first["image_id"] == docker_client.images.get(tag).id


def test_the_rebuild_button_has_the_engine_started_before_its_build_is_recorded(
    app: Flask, url: str, base_image: str, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = demo_context(base_image, f"print('hello {uuid.uuid4().hex}')\n")
    calls, client, tag, first = uploaded_once(app, url, archive, "rebuild", monkeypatch)

    response = client.post(f"/api/v1/builds/{first['id']}/rebuild")
    assert response.status_code == 202, response.get_json()
    build = wait_for_build(client, response.get_json()["id"])
    assert build["status"] == "succeeded", build["error"]
    assert build["rebuild_of"] == first["id"] and build["tag"] == tag
    assert [r.tag for r in calls.started] == [tag, None]  # untagged: asked before the row existed
    assert calls.tagged == [(build["image_id"], tag)] and calls.cancelled == []
    assert build["image_id"] == first["image_id"] == docker_client.images.get(tag).id

    # A rebuild refused by its checks (here the tag policy) stops the engine build it started.
    def refuse(*_: Any) -> None:
        raise Conflict("The tag is protected.", code="tag_protected")

    monkeypatch.setattr(service, "check_tag_policy", refuse)
    refused = client.post(f"/api/v1/builds/{first['id']}/rebuild")
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "tag_protected"
    assert calls.wait(lambda: len(calls.started) == 3)
    early = calls.started[2]
    assert early.tag is None
    assert calls.wait(lambda: early.build_id in calls.cancelled)
    assert calls.tagged == [(build["image_id"], tag)]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Build)) == 2


def test_with_every_worker_busy_nothing_is_started_early(
    make_app: Any, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that will wait in the queue would only leave an early engine build to be stopped."""
    app = make_app(CONCURRENT_BUILDS=1)
    calls = EngineCalls(app, monkeypatch)
    client = app.test_client()
    tag = f"layerdeck-test/early-busy-{id(app)}:1"
    archive = demo_context(base_image, f"print('hello {uuid.uuid4().hex}')\n")
    digest = hashlib.sha256(archive).hexdigest()
    assert client.post("/api/v1/builds", data=archive, content_type="application/x-tar",
                       query_string={"tag": tag, "builder": "buildkit"}).status_code == 202
    first = wait_for_build(client, 1)
    assert first["status"] == "succeeded"
    runner = app.extensions["layerdeck.runner"]
    deadline = time.monotonic() + 10  # its worker frees itself just after the build's last message
    while not runner.has_idle_worker():
        assert time.monotonic() < deadline, "the worker never came free"
        time.sleep(0.01)
    busy = client.post("/api/v1/builds", data=tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN sleep 30\n"}),
                       content_type="application/x-tar", query_string={"builder": "buildkit"}).get_json()
    assert busy["status"] == "running"
    queued = client.post("/api/v1/builds", query_string={"tag": tag, "builder": "buildkit",
                                                         "context_digest": digest}).get_json()
    assert queued["status"] == "queued"
    assert calls.wait(lambda: len(calls.started) >= 2)  # the busy build's worker asks the engine on its own time
    assert [r.tag for r in calls.started] == [tag, None]  # the first build, and the sleeping one: no guess
    assert client.post(f"/api/v1/builds/{busy['id']}/cancel").status_code in (200, 202)
    build = wait_for_build(client, queued["id"])
    assert build["status"] == "succeeded"
    assert calls.started[-1].tag == tag and calls.tagged == []
    assert calls.cancelled == [calls.started[1].build_id]  # only the sleeping build, by the cancel above


def test_cancel_stops_a_build_that_took_an_early_engine_build_over(
    app: Flask, url: str, base_image: str, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    nonce = uuid.uuid4().hex
    archive = tar_bytes({
        "Dockerfile": f"FROM {base_image}\nARG PAUSE=0\nCOPY data.bin .\nRUN echo {nonce} started; sleep $PAUSE\n",
        "data.bin": random.Random(nonce).randbytes(3 * 512 * 1024),
    })
    calls, client, tag, _ = uploaded_once(app, url, archive, "cancel", monkeypatch)
    before = {c.id for c in docker_client.containers.list(all=True, sparse=True)}

    # The same archive with a long pause: started early, taken over, then cancelled while it sleeps.
    early, reply = paused_upload(url, archive, tag, calls, build_args='{"PAUSE": "30"}')
    assert early.tag is None and early.build_args == {"PAUSE": "30"}
    build_id = reply["id"]
    deadline = time.monotonic() + 60
    while "started" not in client.get(f"/api/v1/builds/{build_id}/log").get_data(as_text=True):
        assert time.monotonic() < deadline, "the RUN step never started"
        time.sleep(0.1)
    assert client.post(f"/api/v1/builds/{build_id}/cancel").status_code == 202
    build = wait_for_build(client, build_id, timeout=15)  # long before the 30 s sleep ends
    assert build["status"] == "cancelled"
    assert calls.cancelled == [early.build_id]  # the engine build it took over is the one stopped
    assert len(calls.started) == 2 and calls.tagged == []
    assert containers_left(docker_client, before) == set()


def test_garbage_of_a_known_size_is_refused_and_its_early_build_stopped(
    app: Flask, url: str, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = demo_context(base_image, f"print('hello {uuid.uuid4().hex}')\n")
    calls, client, tag, _ = uploaded_once(app, url, archive, "garbage", monkeypatch)

    garbage = random.Random(7).randbytes(len(archive))
    response = requests.post(url + "/api/v1/builds", params={"tag": tag, "builder": "buildkit"}, data=garbage,
                             headers={"Content-Type": "application/x-tar", "Authorization": f"Bearer {TOKEN[url]}"},
                             timeout=60)
    assert response.status_code == 400
    assert "archive" in response.json()["error"]["message"]  # a sentence that says what is wrong
    assert calls.wait(lambda: len(calls.started) == 2)  # asked on a side thread: maybe after the reply
    early = calls.started[1]
    assert early.tag is None
    assert calls.wait(lambda: early.build_id in calls.cancelled)
    assert len(calls.started) == 2 and calls.tagged == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Build)) == 1
    assert list((Path(app.config["DATA_DIR"]) / "tmp").iterdir()) == []
