"""Cancel and timeouts on both builders, what each builder can and cannot do, and the default builder."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import docker
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from tests.helpers import build_ok, containers_left, submit, tar_bytes, wait_for_build
from webapp.extensions import db
from webapp.models import BuildEvent

pytestmark = pytest.mark.engine


@pytest.fixture(params=["classic", "buildkit"])
def builder(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sleeping(base_image: str, marker: str) -> bytes:
    return tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo {marker}; echo started; sleep 30; echo never\n"})


def wait_for_running_step(client: FlaskClient, build_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        build = client.get(f"/api/v1/builds/{build_id}").get_json()
        if any(s["status"] == "running" and s["instruction"].startswith("RUN") for s in build["steps"]):
            log = client.get(f"/api/v1/builds/{build_id}/log").get_data(as_text=True)
            if "started" in log:
                return build  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError("the RUN step never started")


def test_cancel_stops_a_running_build_and_leaves_nothing_running(
    client: FlaskClient, base_image: str, builder: str, docker_client: docker.DockerClient
) -> None:
    before = {c.id for c in docker_client.containers.list(all=True, sparse=True)}
    build_id = submit(client, sleeping(base_image, f"cancel-{builder}-{id(client)}"), builder=builder).get_json()["id"]
    wait_for_running_step(client, build_id)

    response = client.post(f"/api/v1/builds/{build_id}/cancel")
    assert response.status_code == 202
    # Long before the step's 30 s sleep ends (how fast is measured in bench/cancel_latency.py).
    build = wait_for_build(client, build_id, timeout=15)

    assert build["status"] == "cancelled"
    run = next(s for s in build["steps"] if s["instruction"].startswith("RUN"))
    assert run["status"] == "cancelled"
    assert "started" in client.get(f"/api/v1/builds/{build_id}/log").get_data(as_text=True)  # log so far kept
    assert client.post(f"/api/v1/builds/{build_id}/cancel").status_code == 409
    # The engine stops the step's container and removes it (the classic builder within its own stop timeout).
    assert containers_left(docker_client, before) == set()


def test_a_queued_build_simply_leaves_the_queue(make_app: Any, base_image: str) -> None:
    client = make_app(CONCURRENT_BUILDS=1).test_client()
    first = submit(client, sleeping(base_image, f"queue-{id(client)}"), builder="buildkit").get_json()["id"]
    second = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo second\n"})).get_json()["id"]
    assert client.get(f"/api/v1/builds/{second}").get_json()["status"] == "queued"
    assert client.post(f"/api/v1/builds/{second}/cancel").status_code == 202
    cancelled = wait_for_build(client, second, timeout=10)
    assert cancelled["status"] == "cancelled" and cancelled["steps"] == []
    assert cancelled["error"] == "Cancelled before it started."
    client.post(f"/api/v1/builds/{first}/cancel")
    assert wait_for_build(client, first, timeout=10)["status"] == "cancelled"


def test_a_build_past_the_time_limit_ends_timed_out(make_app: Any, base_image: str, builder: str) -> None:
    client = make_app(BUILD_TIMEOUT=3).test_client()
    build_id = submit(client, sleeping(base_image, f"timeout-{builder}-{id(client)}"), builder=builder).get_json()["id"]
    build = wait_for_build(client, build_id, timeout=30)
    assert build["status"] == "timed_out"
    assert "3 s time limit" in build["error"]
    assert "never" not in client.get(f"/api/v1/builds/{build_id}/log").get_data(as_text=True).splitlines()


def test_a_cache_mount_builds_with_buildkit_and_the_classic_builder_refuses_it(
    client: FlaskClient, base_image: str
) -> None:
    dockerfile = (f"FROM {base_image}\n"
                  "RUN --mount=type=cache,target=/cache echo x >> /cache/f && wc -l /cache/f\n")
    build = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), builder="buildkit")
    assert [s["status"] for s in build["steps"]][-1] in ("built", "cached")

    refused = submit(client, tar_bytes({"Dockerfile": dockerfile}), builder="classic")
    assert refused.status_code == 400
    error = refused.get_json()["error"]
    assert error["code"] == "builder_unsupported"
    assert "classic builder cannot run RUN --mount" in error["message"]
    assert "Choose BuildKit" in error["message"]


@pytest.mark.parametrize(("dockerfile", "builder", "words"), [
    ("FROM scratch\nRUN --mount=type=secret,id=tok cat /run/secrets/tok\n", "buildkit", "needs a client session"),
    ("FROM scratch\nRUN --mount=type=ssh ssh-add -l\n", "buildkit", "needs a client session"),
    ("FROM scratch\nRUN <<EOF\necho hi\nEOF\n", "classic", "heredocs"),
    ("FROM scratch\nCOPY --chmod=755 a /a\n", "classic", "--chmod"),
])
def test_what_a_builder_cannot_do_here_is_refused_before_it_starts(
    app: Any, client: FlaskClient, dockerfile: str, builder: str, words: str
) -> None:
    response = submit(client, dockerfile_text=dockerfile, builder=builder)
    assert response.status_code == 400
    assert words in response.get_json()["error"]["message"]
    assert client.get("/api/v1/builds").get_json()["builds"] == []


def test_the_default_builder_is_buildkit_when_the_engine_has_it(client: FlaskClient, base_image: str) -> None:
    build = build_ok(client, dockerfile_text=f"FROM {base_image}\nRUN echo default\n")
    assert build["builder"] == "buildkit"
    page = client.get("/").get_data(as_text=True)
    assert 'value="buildkit"' in page


def test_multi_stage_buildkit_build_groups_steps_by_stage(client: FlaskClient, base_image: str) -> None:
    dockerfile = (
        f"FROM {base_image} AS deps\nRUN echo deps > /deps\n"
        f"FROM {base_image} AS assets\nRUN echo assets > /assets\n"
        f"FROM {base_image} AS final\nCOPY --from=deps /deps /deps\nCOPY --from=assets /assets /assets\n"
    )
    build = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), builder="buildkit", no_cache="true")
    by_stage = {(s["index"], s["stage"], s["instruction"].split()[0]) for s in build["steps"]}
    assert {(2, "deps", "RUN"), (4, "assets", "RUN"), (6, "final", "COPY"), (7, "final", "COPY")} <= by_stage
    assert all(s["started_at"] and s["finished_at"] for s in build["steps"] if s["status"] == "built")


class EngineProxy:
    """A unix-socket proxy to the real engine that a test can cut, as if the engine went away."""

    def __init__(self, path: str, target: str = "/var/run/docker.sock") -> None:
        import socket
        import threading

        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(16)
        self.conns: list[Any] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        import socket

        self.server.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


def test_losing_the_engine_mid_build_fails_the_build_with_that_reason(
    app: Any, base_image: str, builder: str, tmp_path: Any
) -> None:
    from webapp.engine import Engine

    proxy = EngineProxy(str(tmp_path / "engine.sock"))
    app.extensions["layerdeck.runner"].engine = Engine(f"unix://{proxy.path}")
    client = app.test_client()
    build_id = submit(client, sleeping(base_image, f"lost-{builder}-{id(proxy)}"), builder=builder).get_json()["id"]
    wait_for_running_step(client, build_id)
    proxy.cut()
    build = wait_for_build(client, build_id, timeout=20)
    assert build["status"] == "failed"
    assert "Lost the connection to the Docker engine" in build["error"]
    run = next(s for s in build["steps"] if s["instruction"].startswith("RUN"))
    assert run["status"] == "failed"


def test_always_pull_without_a_reachable_registry_fails_with_what_to_change(
    client: FlaskClient, base_image: str, builder: str
) -> None:
    # The test base image exists only on this engine: asking its registry for it can only fail.
    response = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo pulled\n"}),
                      builder=builder, pull="true")
    build = wait_for_build(client, response.get_json()["id"], timeout=120)
    assert build["status"] == "failed"
    assert build["options"]["pull"] is True
    assert "Always pull" in build["error"] and "turn it off" in build["error"]


def test_a_build_whose_row_fails_to_commit_after_the_handover_leaves_nothing(
    make_app: Any, base_image: str, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A free worker gets a build before its row is committed and asks the engine at once; when that commit
    fails, the engine build is stopped, nothing is written, and the worker is free again."""
    app = make_app(CONCURRENT_BUILDS=1)
    client = app.test_client()
    runner = app.extensions["layerdeck.runner"]
    handed_in: list[int] = []
    real_hand, real_commit = runner.hand, db.session.commit

    def hand(job: Any) -> None:
        real_hand(job)
        handed_in.append(threading.get_ident())

    def commit() -> None:
        if handed_in and handed_in[0] == threading.get_ident():
            handed_in.clear()
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        real_commit()

    monkeypatch.setattr(runner, "hand", hand)
    monkeypatch.setattr(db.session, "commit", commit)
    before = {c.id for c in docker_client.containers.list(all=True, sparse=True)}
    tag = f"layerdeck-test/abandoned-{id(app)}:1"
    try:
        response = submit(client, sleeping(base_image, f"abandoned-{id(app)}"), builder="buildkit", tag=tag)
        assert response.status_code == 500
    except OperationalError:
        pass  # the test client may hand the error on instead of answering 500
    monkeypatch.undo()

    assert client.get("/api/v1/builds").get_json()["builds"] == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(BuildEvent)) == 0
    # The worker is free again once it has stopped the engine's build (with its one worker taken for good,
    # this build would wait in the queue for ever).
    again = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo after {id(app)}\n"}),
                   builder="buildkit").get_json()
    assert wait_for_build(client, again["id"], timeout=60)["status"] == "succeeded"
    # The engine's build of it was stopped: no image took the tag, no step container is left.
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
    assert containers_left(docker_client, before) == set()
