"""Builds on the real Docker engine, with each builder: cache behaviour a user sees, failures, and what is
left behind."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from typing import Any

import docker
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.helpers import build_ok, submit, tar_bytes, targz_bytes, wait_for_build, zip_bytes
from webapp.extensions import db
from webapp.models import Build, BuildEvent

pytestmark = pytest.mark.engine


@pytest.fixture(params=["classic", "buildkit"])
def builder(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def own_steps(build: dict[str, Any]) -> list[dict[str, Any]]:
    """The build's steps; the classic builder's extra LABEL step for Layerdeck's label is never one."""
    assert not any(s["instruction"].startswith("LABEL layerdeck.instance=") for s in build["steps"])
    return list(build["steps"])


def statuses(build: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["instruction"].split()[0], s["status"]) for s in own_steps(build)]


def layer_steps(build: dict[str, Any]) -> list[dict[str, Any]]:
    """Steps where the engine decides about the cache (everything but FROM)."""
    return [s for s in own_steps(build) if s["cached"] is not None]


def test_first_build_caches_nothing_and_the_same_build_again_caches_every_layer_step(
    client: FlaskClient, busybox_context: dict[str, str], builder: str
) -> None:
    unique = f"{builder}-{client.application.config['INSTANCE_ID']}"
    busybox_context["requirements.txt"] = f"flask==3.0  # {unique}\n"
    first = build_ok(client, tar_bytes(busybox_context), tag="layerdeck-test/first:1", builder=builder)

    assert first["builder"] == builder
    assert [s["index"] for s in own_steps(first)] == [1, 2, 3, 4, 5, 6]
    assert own_steps(first)[0]["instruction"].startswith("FROM layerdeck-test/busybox")
    assert own_steps(first)[0]["cached"] is None
    assert statuses(first)[2:] == [("COPY", "built"), ("RUN", "built"), ("COPY", "built"), ("RUN", "built")]
    assert all(s["duration_s"] is not None and s["duration_s"] >= 0 for s in first["steps"])
    assert first["image_id"].startswith("sha256:")

    second = build_ok(client, tar_bytes(busybox_context), tag="layerdeck-test/first:1", builder=builder)
    assert [s["status"] for s in layer_steps(second)] == ["cached"] * 5
    assert second["cache"]["hits"] == second["cache"]["total"] == sum(1 for s in second["steps"] if s["cached"])
    assert second["image_id"] == first["image_id"]


def test_changing_app_code_rebuilds_only_from_copy_app(
    client: FlaskClient, busybox_context: dict[str, str], builder: str
) -> None:
    busybox_context["requirements.txt"] = f"flask==3.0  # {builder}-{client.application.config['INSTANCE_ID']}\n"
    build_ok(client, tar_bytes(busybox_context), builder=builder)

    busybox_context["app/main.py"] = "print('hello, projector')\n"
    after_code_change = build_ok(client, tar_bytes(busybox_context), builder=builder)
    assert statuses(after_code_change) == [
        ("FROM", "built"), ("WORKDIR", "cached"), ("COPY", "cached"), ("RUN", "cached"),
        ("COPY", "built"), ("RUN", "built"),
    ]

    busybox_context["requirements.txt"] += "requests==2.32\n"
    after_requirements_change = build_ok(client, tar_bytes(busybox_context), builder=builder)
    assert [status for _, status in statuses(after_requirements_change)][1:] == [
        "cached", "built", "built", "built", "built"
    ]


def test_a_failing_run_fails_the_build_with_the_engine_error_on_its_step(
    client: FlaskClient, base_image: str, builder: str
) -> None:
    dockerfile = f"FROM {base_image}\nRUN echo about to fail; echo oops >&2; exit 3\nRUN echo never\n"
    response = submit(client, tar_bytes({"Dockerfile": dockerfile}), builder=builder)
    build = wait_for_build(client, response.get_json()["id"])

    assert build["status"] == "failed"
    assert "exit code: 3" in build["error"] or "non-zero code: 3" in build["error"]
    failing = next(s for s in build["steps"] if s["index"] == 2)
    assert failing["status"] == "failed"
    assert failing["error"]
    assert "3" in failing["error"]
    assert all(s["status"] in ("pending", "skipped") for s in build["steps"] if s["index"] == 3)
    log = client.get(f"/api/v1/builds/{build['id']}/log").get_data(as_text=True)
    # stdout and stderr are separate pipes: the engine may deliver either line first.
    assert "about to fail\n" in log and "oops\n" in log
    assert build["image_id"] is None


@pytest.mark.parametrize(
    ("filename", "pack"),
    [("context.tar.gz", targz_bytes), ("context.zip", zip_bytes), ("context.tar", tar_bytes)],
)
def test_every_upload_format_hits_the_cache_of_a_tar_upload(
    client: FlaskClient, busybox_context: dict[str, str], filename: str, pack: Any, builder: str
) -> None:
    busybox_context["app/format.txt"] = f"{builder}-{client.application.config['INSTANCE_ID']}"
    build_ok(client, tar_bytes(busybox_context), builder=builder)

    again = build_ok(client, pack(busybox_context), filename=filename, builder=builder)
    assert [s["status"] for s in layer_steps(again)] == ["cached"] * 5, statuses(again)


def test_a_pasted_dockerfile_builds(client: FlaskClient, base_image: str, builder: str) -> None:
    build = build_ok(client, dockerfile_text=f"FROM {base_image}\r\nRUN echo pasted > /p\r\n", builder=builder)
    assert build["context"]["source"] == "dockerfile"
    assert statuses(build)[0] == ("FROM", "built")
    assert own_steps(build)[1]["instruction"] == "RUN echo pasted > /p"


def test_ignored_files_never_reach_the_engine_and_do_not_bust_the_cache(
    client: FlaskClient, base_image: str, builder: str
) -> None:
    files = {
        "Dockerfile": f"FROM {base_image}\nCOPY . /ctx\nRUN test ! -e /ctx/secret.txt && test ! -e /ctx/logs/x.log"
                      f" && test -e /ctx/logs/keep.log && echo clean\n",
        ".dockerignore": "secret.txt\nlogs/*.log\n!logs/keep.log\n",
        "secret.txt": "hunter2",
        "logs/x.log": "noise",
        "logs/keep.log": f"kept {builder} {client.application.config['INSTANCE_ID']}",
    }
    first = build_ok(client, tar_bytes(files), builder=builder)
    assert first["context"]["files"] == 3  # Dockerfile, .dockerignore, logs/keep.log

    files["secret.txt"] = "changed"
    files["logs/x.log"] = "more noise"
    second = build_ok(client, tar_bytes(files), builder=builder)
    assert [s["status"] for s in layer_steps(second)] == ["cached"] * 2


def test_build_args_target_and_no_cache_reach_the_engine(client: FlaskClient, base_image: str, builder: str) -> None:
    dockerfile = (
        f"FROM {base_image} AS base\nARG GREETING=hello\nRUN echo \"$GREETING from base\"\n"
        f"FROM base AS final\nRUN echo final stage\n"
    )
    build = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), target="base", builder=builder,
                     build_args=json.dumps({"GREETING": "bonjour"}), no_cache="true")
    ran = [s for s in own_steps(build) if s["status"] != "skipped"]
    assert {s["stage"] for s in ran} == {"base"}
    assert [s["instruction"] for s in ran if s["instruction"].startswith("RUN")] == ['RUN echo "$GREETING from base"']
    assert all(s["cached"] is False for s in layer_steps(build) if s["status"] != "skipped")
    skipped = [(s["index"], s["stage"], s["status"]) for s in build["steps"] if s["stage"] == "final"]
    assert skipped == [(4, "final", "skipped"), (5, "final", "skipped")]  # the stage the target does not need
    log = client.get(f"/api/v1/builds/{build['id']}/log").get_data(as_text=True)
    assert "bonjour from base" in log
    assert "final stage" not in log


def test_images_carry_layerdeck_labels_and_no_intermediate_containers_are_left(
    client: FlaskClient, base_image: str, docker_client: docker.DockerClient, builder: str
) -> None:
    before = {c.id for c in docker_client.containers.list(all=True, sparse=True)}
    dockerfile = f"FROM {base_image}\nRUN echo {builder}-{id(before)} > /x\n"
    build = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), builder=builder)
    image = docker_client.images.get(build["image_id"])
    assert image.labels["layerdeck.instance"] == client.application.config["INSTANCE_ID"]

    failed = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN exit 1\n"}), builder=builder)
    assert wait_for_build(client, failed.get_json()["id"])["status"] == "failed"
    assert {c.id for c in docker_client.containers.list(all=True, sparse=True)} - before == set()


def test_rebuild_uses_the_same_context_and_settings(
    client: FlaskClient, busybox_context: dict[str, str], builder: str
) -> None:
    first = build_ok(client, tar_bytes(busybox_context), tag="layerdeck-test/rebuild:1",
                     build_args=json.dumps({"X": "1"}), builder=builder)
    response = client.post(f"/api/v1/builds/{first['id']}/rebuild")
    assert response.status_code == 202
    second = wait_for_build(client, response.get_json()["id"])
    assert second["status"] == "succeeded"
    assert second["rebuild_of"] == first["id"]
    assert second["tag"] == "layerdeck-test/rebuild:1"
    assert second["options"] == first["options"]
    assert second["builder"] == builder
    assert [s["status"] for s in layer_steps(second)] == ["cached"] * 5


def test_the_stored_log_is_capped_with_a_visible_line_while_the_build_goes_on(make_app: Any, base_image: str) -> None:
    client = make_app(LOG_CAP=4096).test_client()
    dockerfile = f"FROM {base_image}\nRUN i=0; while [ $i -lt 400 ]; do echo line $i of noise; i=$((i+1)); done\n" \
                 "RUN echo after the noise\n"
    build = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), no_cache="true")
    log = client.get(f"/api/v1/builds/{build['id']}/log").get_data(as_text=True)
    assert "later lines are not stored. The build goes on." in log
    assert "line 399 of noise" not in log
    assert len(log.encode()) < 4096 + 300
    assert build["log"]["truncated"] is True
    assert build["steps"][-1]["status"] == "built"  # steps are still recorded past the cap


def test_builds_past_the_concurrency_limit_wait_their_turn(make_app: Any, base_image: str) -> None:
    mark = uuid.uuid4().hex  # no earlier build (of this run or another) has this step cached
    app = make_app(CONCURRENT_BUILDS=1)
    client = app.test_client()
    slow = {"Dockerfile": f"FROM {base_image}\nRUN sleep 2; echo {mark}\n"}
    first = submit(client, tar_bytes(slow)).get_json()
    assert first["status"] == "running"  # the free worker took it straight away
    second = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo second {mark}\n"})).get_json()
    waiting = client.get(f"/api/v1/builds/{second['id']}").get_json()
    assert waiting["status"] == "queued"
    assert waiting["queue_position"] == 1
    assert wait_for_build(client, first["id"])["status"] == "succeeded"
    assert wait_for_build(client, second["id"])["status"] == "succeeded"
    app.extensions["layerdeck.journal"].sync()
    with app.app_context():
        messages = [e.message() for e in db.session.scalars(
            select(BuildEvent).where(BuildEvent.build_id == second["id"]).order_by(BuildEvent.seq))]
    assert [m["build"]["status"] for m in messages if m["type"] == "status"] == ["queued", "running", "succeeded"]


def test_an_unreachable_engine_gives_503_and_leaves_nothing(app: Any, busybox_context: dict[str, str]) -> None:
    from webapp.engine import Engine

    app.extensions["layerdeck.runner"].engine = Engine("unix:///tmp/layerdeck-no-such-engine.sock")
    client = app.test_client()
    response = submit(client, tar_bytes(busybox_context))
    assert response.status_code == 503
    assert "Docker engine does not answer" in response.get_json()["error"]["message"]
    assert client.get("/api/v1/builds").get_json()["builds"] == []


def test_builds_left_running_by_a_dead_process_become_interrupted_with_their_log(make_app: Any) -> None:
    from webapp import start_background
    from webapp.builds.service import BuildOptions, Upload, _record_build  # noqa: F401

    dead = make_app(start=False)
    journal = dead.extensions["layerdeck.journal"]
    with dead.app_context():
        running = Build(status="running", builder="classic", context_file="contexts/x.tar", context_source="tar",
                        created_at=1.0, started_at=2.0)
        queued = Build(status="queued", builder="classic", context_file="contexts/y.tar", context_source="tar",
                       created_at=1.0)
        db.session.add_all([running, queued])
        db.session.commit()
        ids = running.id, queued.id
    journal.log(ids[0], None, "stdout", "partial output before the crash")
    journal.sync()

    start_background(dead)  # what the next `layerdeck serve` does at start-up
    client = dead.test_client()
    first, second = (client.get(f"/api/v1/builds/{i}").get_json() for i in ids)
    assert first["status"] == second["status"] == "interrupted"
    assert "restarted while this build was running" in first["error"]
    assert "restarted while this build was queued" in second["error"]
    assert client.get(f"/api/v1/builds/{ids[0]}/log").get_data(as_text=True) == "partial output before the crash\n"


def test_the_same_upload_again_reuses_its_stored_context(app: Any, client: FlaskClient, base_image: str) -> None:
    from pathlib import Path

    files = {"Dockerfile": f"FROM {base_image}\nCOPY a.txt /a.txt\n", "a.txt": "a"}
    first = build_ok(client, tar_bytes(files))
    second = build_ok(client, tar_bytes(files), tag="layerdeck-test/other-tag:1")  # settings may differ
    changed = build_ok(client, tar_bytes({**files, "a.txt": "b"}))
    with app.app_context():
        stored = {b.id: b.context_file for b in db.session.scalars(db.select(Build))}
    assert stored[second["id"]] == stored[first["id"]]
    assert stored[changed["id"]] != stored[first["id"]]
    assert second["context"] == first["context"]
    # The same bytes for a tag that may not be written: refused (the check runs beside the row's making,
    # and nothing of that row is left), by form and by raw body alike.
    count = len(client.get("/api/v1/builds").get_json()["builds"])
    for response in (submit(client, tar_bytes(files), tag=base_image),
                     client.post("/api/v1/builds", data=tar_bytes(files), content_type="application/x-tar",
                                 query_string={"tag": base_image})):
        assert response.status_code == 409 and response.get_json()["error"]["code"] == "tag_protected"
    assert len(client.get("/api/v1/builds").get_json()["builds"]) == count
    assert list((Path(app.config["DATA_DIR"]) / "tmp").iterdir()) == []

    (Path(app.config["DATA_DIR"]) / stored[first["id"]]).unlink()  # gone (e.g. cleaned up): unpack again
    third = build_ok(client, tar_bytes(files))
    with app.app_context():
        assert db.session.get(Build, third["id"]).context_file == f"contexts/{third['id']}.tar"


def test_a_raw_archive_body_with_options_in_the_query_string_builds(client: FlaskClient, base_image: str) -> None:
    mark = uuid.uuid4().hex  # no earlier build (of this run or another) has this step cached
    files = {"Dockerfile": f"FROM {base_image} AS one\nARG X\nRUN echo raw $X {mark}\n"
                           "FROM one AS two\nRUN echo two\n"}
    response = client.post("/api/v1/builds", data=tar_bytes(files), content_type="application/x-tar",
                           query_string={"tag": "layerdeck-test/raw:1", "target": "one",
                                         "build_args": json.dumps({"X": "body"}), "builder": "buildkit"})
    assert response.status_code == 202, response.get_json()
    build = wait_for_build(client, response.get_json()["id"])
    assert build["status"] == "succeeded"
    assert build["tag"] == "layerdeck-test/raw:1" and build["options"]["target"] == "one"
    assert "raw body" in client.get(f"/api/v1/builds/{build['id']}/log").get_data(as_text=True)


def test_a_script_can_name_a_stored_archive_by_its_digest_instead_of_sending_it(
    client: FlaskClient, base_image: str
) -> None:
    mark = uuid.uuid4().hex  # no earlier build (of this run or another) has this step cached
    import hashlib

    archive = tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo digest-first {mark}\n"})
    digest = hashlib.sha256(archive).hexdigest()
    unknown = client.post("/api/v1/builds", query_string={"context_digest": f"sha256:{digest}"})
    assert unknown.status_code == 409
    assert unknown.get_json()["error"]["code"] == "context_unknown"

    first = build_ok(client, archive)
    again = client.post("/api/v1/builds", query_string={"context_digest": digest, "tag": "layerdeck-test/dg:1"})
    assert again.status_code == 202, again.get_json()
    second = wait_for_build(client, again.get_json()["id"])
    assert second["status"] == "succeeded" and second["tag"] == "layerdeck-test/dg:1"
    assert second["context"] == first["context"]
    assert [s["status"] for s in layer_steps(second)] == ["cached"]

    other_path = client.post("/api/v1/builds", query_string={"context_digest": digest, "dockerfile": "x/Dockerfile"})
    assert other_path.status_code == 409  # what was checked depends on the Dockerfile path too
    bad = client.post("/api/v1/builds", query_string={"context_digest": "sha256:xyz"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_digest"


def test_a_build_of_a_dockerfile_that_copies_code_before_installing_gets_advice(
    client: FlaskClient, base_image: str
) -> None:
    dockerfile = (f"FROM {base_image}\nWORKDIR /app\nCOPY . .\n"
                  "RUN pip install --no-cache-dir -r requirements.txt || true\n")
    build = build_ok(client, tar_bytes({"Dockerfile": dockerfile, "requirements.txt": "flask\n"}))
    advice = build["advice"]
    assert [(a["rule"], a["line"]) for a in advice] == [("copy-before-install", 3)]
    assert "COPY requirements.txt" in advice[0]["suggestion"]
    page = client.get(f"/builds/{build['id']}").get_data(as_text=True)
    assert 'data-testid="advice-item"' in page and "line 3" in page

    reordered = dockerfile.replace(
        "COPY . .\nRUN pip install --no-cache-dir -r requirements.txt || true\n",
        "COPY requirements.txt .\nRUN pip install --no-cache-dir -r requirements.txt || true\nCOPY . .\n")
    good = build_ok(client, tar_bytes({"Dockerfile": reordered, "requirements.txt": "x\n"}))
    assert good["advice"] == []


def test_a_cached_rebuild_is_credited_with_the_time_its_steps_took_when_really_built(
    client: FlaskClient, base_image: str, builder: str
) -> None:
    mark = uuid.uuid4().hex  # no earlier build (of this run or another) has this step cached
    dockerfile = f"FROM {base_image}\nRUN echo {builder}-{mark} && sleep 1\nRUN echo second\n"
    first = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), tag="layerdeck-test/saved:1", builder=builder)
    assert first["cache"]["saved_s"] == 0.0
    again = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), tag="layerdeck-test/saved:2", builder=builder)
    built = {s["index"]: s["duration_s"] for s in first["steps"] if s["cached"] is False}
    assert again["cache"]["saved_s"] == pytest.approx(sum(built.values()), abs=0.01)
    assert again["cache"]["saved_s"] >= 1.0  # the sleeping step alone
    other_name = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), tag="layerdeck-test/elsewhere:1",
                          builder=builder)
    assert other_name["cache"]["saved_s"] == 0.0  # credited only against builds of the same image name


@pytest.fixture
def engine_over_tcp() -> Any:
    """The local engine reached over plain TCP (a forwarder to its unix socket), as DOCKER_HOST=tcp://... does."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            engine = socket.socket(socket.AF_UNIX)
            engine.connect("/var/run/docker.sock")
            for a, b in ((conn, engine), (engine, conn)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


@pytest.mark.parametrize("builder", ["classic", "buildkit"])
def test_builds_reach_an_engine_over_tcp_too(make_app: Any, base_image: str, builder: str,
                                             engine_over_tcp: str) -> None:
    from webapp.engine import Engine

    app = make_app()
    app.extensions["layerdeck.runner"].engine = Engine(engine_over_tcp)
    client = app.test_client()
    dockerfile = f"FROM {base_image}\nRUN echo over tcp {id(app)}\n"
    build = wait_for_build(client, submit(client, tar_bytes({"Dockerfile": dockerfile}), builder=builder,
                                          tag=f"layerdeck-test/tcp-{id(app)}:{builder}").get_json()["id"])
    assert build["status"] == "succeeded", build["error"]
    assert f"over tcp {id(app)}" in client.get(build["log_url"]).get_data(as_text=True)
    # A refusal comes back through the same connection (the classic builder's as an HTTP error, BuildKit's in
    # its stream), in words.
    refused = wait_for_build(client, submit(client, tar_bytes({"Dockerfile": dockerfile}), builder=builder,
                                            target="no-such-stage").get_json()["id"])
    assert refused["status"] == "failed" and "no-such-stage" in refused["error"]
    if builder == "classic":
        assert refused["error"].startswith("The Docker engine refused the build: ")


def test_a_script_can_build_and_follow_the_build_in_one_request(app: Any, client: FlaskClient, base_image: str,
                                                                builder: str) -> None:
    mark = uuid.uuid4().hex  # no earlier build (of this run or another) has this step cached
    dockerfile = f"FROM {base_image}\nRUN echo followed {mark} {builder}\nRUN echo second\n"
    response = client.post("/api/v1/builds", data=tar_bytes({"Dockerfile": dockerfile}),
                           content_type="application/x-tar", query_string={"follow": "1", "builder": builder})
    assert response.status_code == 202 and response.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines() if line]
    reply, messages = lines[0], lines[1:]
    assert reply["status"] == "running" and reply["ws_url"] == f"/ws/builds/{reply['id']}"
    # Exactly what its websocket replays: every message in order, ending with the end.
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[-1] == {"type": "end", "seq": len(messages), "status": "succeeded"}
    assert any(m["type"] == "log" and f"followed {mark}" in m["text"] for m in messages)
    app.extensions["layerdeck.journal"].sync()
    with app.app_context():
        stored = [e.message() for e in db.session.scalars(
            select(BuildEvent).where(BuildEvent.build_id == reply["id"]).order_by(BuildEvent.seq))]
    assert messages == stored
    bad = client.post("/api/v1/builds", data=tar_bytes({"Dockerfile": dockerfile}),
                      content_type="application/x-tar", query_string={"follow": "perhaps"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_option"
