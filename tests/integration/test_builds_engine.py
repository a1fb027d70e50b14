"""Builds on the real Docker engine: cache behaviour a user sees, failures, and what is left behind."""

from __future__ import annotations

import json
import time
from typing import Any

import docker
import pytest
from flask.testing import FlaskClient

from tests.helpers import build_ok, submit, tar_bytes, targz_bytes, wait_for_build, zip_bytes

pytestmark = pytest.mark.engine


def layer_steps(build: dict[str, Any]) -> list[dict[str, Any]]:
    """Steps where the engine decides about the cache (everything but FROM)."""
    return [s for s in build["steps"] if s["cached"] is not None]


def test_first_build_caches_nothing_and_the_same_build_again_caches_every_layer_step(
    client: FlaskClient, busybox_context: dict[str, str]
) -> None:
    # A unique file makes the first build's layers new to the engine even if other tests ran before.
    busybox_context["app/unique.txt"] = f"first-build-{id(client)}-{client.application.config['INSTANCE_ID']}"
    busybox_context["requirements.txt"] = f"flask==3.0  # {client.application.config['INSTANCE_ID']}\n"
    first = build_ok(client, tar_bytes(busybox_context), tag="layerdeck-test/first:1")

    # The classic builder applies Layerdeck's label as a last LABEL step of its own.
    assert [s["index"] for s in first["steps"]] == [1, 2, 3, 4, 5, 6, 7]
    assert first["steps"][-1]["instruction"] == f"LABEL layerdeck.instance={client.application.config['INSTANCE_ID']}"
    assert first["steps"][0]["instruction"].startswith("FROM layerdeck-test/busybox")
    assert first["steps"][0]["cached"] is None
    assert [s["status"] for s in layer_steps(first)][2:] == ["built"] * 4
    assert first["steps"][2]["cached"] is False  # COPY requirements.txt: new content
    assert first["cache"]["hits"] <= 1  # WORKDIR /app may be cached from another build
    assert all(s["duration_s"] is not None and s["duration_s"] >= 0 for s in first["steps"])
    assert first["image_id"].startswith("sha256:")

    second = build_ok(client, tar_bytes(busybox_context), tag="layerdeck-test/first:1")
    assert [s["status"] for s in layer_steps(second)] == ["cached"] * 6
    assert second["cache"] == {"hits": 6, "total": 6}
    assert second["image_id"] == first["image_id"]


def test_changing_app_code_rebuilds_only_from_copy_app(client: FlaskClient, busybox_context: dict[str, str]) -> None:
    busybox_context["requirements.txt"] = f"flask==3.0  # {client.application.config['INSTANCE_ID']}\n"
    build_ok(client, tar_bytes(busybox_context))

    busybox_context["app/main.py"] = "print('hello, projector')\n"
    after_code_change = build_ok(client, tar_bytes(busybox_context))
    statuses = [(s["instruction"].split()[0], s["status"]) for s in after_code_change["steps"]]
    assert statuses == [
        ("FROM", "built"), ("WORKDIR", "cached"), ("COPY", "cached"), ("RUN", "cached"),
        ("COPY", "built"), ("RUN", "built"), ("LABEL", "built"),
    ]
    assert after_code_change["cache"] == {"hits": 3, "total": 6}

    busybox_context["requirements.txt"] += "requests==2.32\n"
    after_requirements_change = build_ok(client, tar_bytes(busybox_context))
    assert [s["status"] for s in after_requirements_change["steps"]][1:] == [
        "cached", "built", "built", "built", "built", "built"
    ]


def test_a_failing_run_fails_the_build_with_the_engine_error_on_its_step(client: FlaskClient, base_image: str) -> None:
    dockerfile = f"FROM {base_image}\nRUN echo about to fail; echo oops >&2; exit 3\nRUN echo never\n"
    response = submit(client, tar_bytes({"Dockerfile": dockerfile}))
    build = wait_for_build(client, response.get_json()["id"])

    assert build["status"] == "failed"
    assert "returned a non-zero code: 3" in build["error"]
    failing = build["steps"][1]
    assert failing["status"] == "failed"
    assert failing["error"] == build["error"]
    assert len(build["steps"]) == 2  # the steps after the failure never started
    log = client.get(f"/api/v1/builds/{build['id']}/log").get_data(as_text=True)
    # stdout and stderr are separate pipes: the engine may deliver either line first.
    assert "about to fail\n" in log and "oops\n" in log
    assert build["image_id"] is None


@pytest.mark.parametrize(
    ("filename", "pack"),
    [("context.tar.gz", targz_bytes), ("context.zip", zip_bytes), ("context.tar", tar_bytes)],
)
def test_every_upload_format_hits_the_cache_of_a_tar_upload(
    client: FlaskClient, busybox_context: dict[str, str], filename: str, pack: Any
) -> None:
    busybox_context["app/format.txt"] = f"{client.application.config['INSTANCE_ID']}"
    build_ok(client, tar_bytes(busybox_context))

    again = build_ok(client, pack(busybox_context), filename=filename)
    assert again["cache"] == {"hits": 6, "total": 6}, [(s["instruction"], s["status"]) for s in again["steps"]]


def test_a_pasted_dockerfile_builds(client: FlaskClient, base_image: str) -> None:
    build = build_ok(client, dockerfile_text=f"FROM {base_image}\nRUN echo pasted > /p\n")
    assert build["context"]["source"] == "dockerfile"
    assert [s["status"] for s in build["steps"]][:1] == ["built"]


def test_ignored_files_never_reach_the_engine_and_do_not_bust_the_cache(client: FlaskClient, base_image: str) -> None:
    files = {
        "Dockerfile": f"FROM {base_image}\nCOPY . /ctx\nRUN test ! -e /ctx/secret.txt && test ! -e /ctx/logs/x.log"
                      f" && test -e /ctx/logs/keep.log && echo clean\n",
        ".dockerignore": "secret.txt\nlogs/*.log\n!logs/keep.log\n",
        "secret.txt": "hunter2",
        "logs/x.log": "noise",
        "logs/keep.log": f"kept {client.application.config['INSTANCE_ID']}",
    }
    first = build_ok(client, tar_bytes(files))
    assert first["context"]["files"] == 3  # Dockerfile, .dockerignore, logs/keep.log

    files["secret.txt"] = "changed"
    files["logs/x.log"] = "more noise"
    second = build_ok(client, tar_bytes(files))
    assert second["cache"] == {"hits": 3, "total": 3}


def test_build_args_target_and_no_cache_reach_the_engine(client: FlaskClient, base_image: str) -> None:
    dockerfile = (
        f"FROM {base_image} AS base\nARG GREETING=hello\nRUN echo \"$GREETING from base\"\n"
        f"FROM base AS final\nRUN echo final stage\n"
    )
    build = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), target="base",
                     build_args=json.dumps({"GREETING": "bonjour"}), no_cache="true")
    assert [s["stage"] for s in build["steps"]] == ["base"] * 4
    assert all(s["cached"] is False for s in layer_steps(build))
    log = client.get(f"/api/v1/builds/{build['id']}/log").get_data(as_text=True)
    assert "bonjour from base" in log
    assert "final stage" not in log


def test_images_carry_layerdeck_labels_and_no_intermediate_containers_are_left(
    client: FlaskClient, base_image: str, docker_client: docker.DockerClient
) -> None:
    before = {c.id for c in docker_client.containers.list(all=True)}
    build = build_ok(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo {id(before)} > /x\n"}))
    image = docker_client.images.get(build["image_id"])
    assert image.labels["layerdeck.instance"] == client.application.config["INSTANCE_ID"]

    failed = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN exit 1\n"}))
    assert wait_for_build(client, failed.get_json()["id"])["status"] == "failed"
    assert {c.id for c in docker_client.containers.list(all=True)} - before == set()


def test_rebuild_uses_the_same_context_and_settings(client: FlaskClient, busybox_context: dict[str, str]) -> None:
    first = build_ok(client, tar_bytes(busybox_context), tag="layerdeck-test/rebuild:1",
                     build_args=json.dumps({"X": "1"}))
    response = client.post(f"/api/v1/builds/{first['id']}/rebuild")
    assert response.status_code == 202
    second = wait_for_build(client, response.get_json()["id"])
    assert second["status"] == "succeeded"
    assert second["rebuild_of"] == first["id"]
    assert second["tag"] == "layerdeck-test/rebuild:1"
    assert second["options"] == first["options"]
    assert second["cache"] == {"hits": 6, "total": 6}


def test_the_stored_log_is_capped_with_a_visible_line_while_the_build_goes_on(make_app: Any, base_image: str) -> None:
    client = make_app(LOG_CAP=4096).test_client()
    dockerfile = f"FROM {base_image}\nRUN i=0; while [ $i -lt 400 ]; do echo line $i of noise; i=$((i+1)); done\n" \
                 "RUN echo after the noise\n"
    build = build_ok(client, tar_bytes({"Dockerfile": dockerfile}))
    log = client.get(f"/api/v1/builds/{build['id']}/log").get_data(as_text=True)
    assert "later lines are not stored. The build goes on." in log
    assert "line 399 of noise" not in log
    assert len(log.encode()) < 4096 + 300
    assert build["log"]["truncated"] is True
    assert build["steps"][-1]["status"] == "built"  # steps are still recorded past the cap


def test_builds_past_the_concurrency_limit_wait_their_turn(make_app: Any, base_image: str) -> None:
    client = make_app(CONCURRENT_BUILDS=1).test_client()
    slow = {"Dockerfile": f"FROM {base_image}\nRUN sleep 2; echo {id(client)}\n"}
    first = submit(client, tar_bytes(slow)).get_json()
    while client.get(f"/api/v1/builds/{first['id']}").get_json()["status"] == "queued":
        time.sleep(0.05)
    second = submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo second {id(client)}\n"})).get_json()
    waiting = client.get(f"/api/v1/builds/{second['id']}").get_json()
    assert waiting["status"] == "queued"
    assert waiting["queue_position"] == 1
    assert wait_for_build(client, first["id"])["status"] == "succeeded"
    assert wait_for_build(client, second["id"])["status"] == "succeeded"


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
    from webapp.extensions import db
    from webapp.models import Build

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

    from webapp.extensions import db
    from webapp.models import Build

    files = {"Dockerfile": f"FROM {base_image}\nCOPY a.txt /a.txt\n", "a.txt": "a"}
    first = build_ok(client, tar_bytes(files))
    second = build_ok(client, tar_bytes(files), tag="layerdeck-test/other-tag:1")  # settings may differ
    changed = build_ok(client, tar_bytes({**files, "a.txt": "b"}))
    with app.app_context():
        stored = {b.id: b.context_file for b in db.session.scalars(db.select(Build))}
    assert stored[second["id"]] == stored[first["id"]]
    assert stored[changed["id"]] != stored[first["id"]]
    assert second["context"] == first["context"]

    (Path(app.config["DATA_DIR"]) / stored[first["id"]]).unlink()  # gone (e.g. cleaned up): unpack again
    third = build_ok(client, tar_bytes(files))
    with app.app_context():
        assert db.session.get(Build, third["id"]).context_file == f"contexts/{third['id']}.tar"
