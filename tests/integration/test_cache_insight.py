"""Cache insight on the real engine, with each builder: every step that missed the cache says why.

Every scenario starts from the requirements-first Dockerfile the projector demo uses (conftest's
busybox_context):

    1 FROM <busybox base>
    2 WORKDIR /app
    3 COPY requirements.txt .
    4 RUN echo installing && cat requirements.txt > /installed.txt
    5 COPY ./app ./app
    6 RUN ls app > /app-files.txt
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import docker
import pytest
from flask.testing import FlaskClient

from tests.helpers import build_ok, tar_bytes

pytestmark = pytest.mark.engine


@pytest.fixture(params=["classic", "buildkit"])
def builder(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def demo(client: FlaskClient, busybox_context: dict[str, str], builder: str) -> dict[str, str]:
    """The demo context, made unique to this test so no other test's layers can be reused."""
    unique = f"{builder}-{client.application.config['INSTANCE_ID']}"
    busybox_context["requirements.txt"] = f"flask==3.0  # {unique}\n"
    return busybox_context


def reasons(build: dict[str, Any]) -> dict[int, dict[str, Any] | None]:
    return {s["index"]: s["miss_reason"] for s in build["steps"]}


def kinds(build: dict[str, Any]) -> dict[int, str | None]:
    return {i: (r or {}).get("kind") for i, r in reasons(build).items()}


def test_a_first_build_misses_because_it_is_the_first_and_a_rebuild_has_no_reasons(
    client: FlaskClient, demo: dict[str, str], builder: str
) -> None:
    first = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-first:1", builder=builder)
    missed = [s for s in first["steps"] if s["cached"] is False]
    assert [s["index"] for s in missed][-4:] == [3, 4, 5, 6]  # WORKDIR may come from another test's cache
    assert all(s["miss_reason"]["kind"] == "first_build" for s in missed)
    assert "first build of layerdeck-test/ci-first" in missed[0]["miss_reason"]["text"]
    assert first["cache"]["compared_with"] is None
    assert reasons(first)[1] is None  # FROM: no cache decision, no reason

    again = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-first:2", builder=builder)
    assert again["cache"]["compared_with"] == first["id"]  # same image name, another tag
    assert all(s["cached"] for s in again["steps"][1:])
    assert all(s["miss_reason"] is None for s in again["steps"])  # a cached step has no reason


def test_a_code_change_names_the_changed_files_and_the_steps_after_point_at_the_copy(
    client: FlaskClient, demo: dict[str, str], builder: str
) -> None:
    first = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-code:1", builder=builder)

    demo["app/main.py"] = "print('hello, projector')\n"
    demo["app/new.py"] = "x = 1\n"
    changed = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-code:1", builder=builder)
    assert kinds(changed) == {1: None, 2: None, 3: None, 4: None, 5: "files_changed", 6: "parent_missed"}
    files = reasons(changed)[5]
    assert files is not None
    assert files["modified"] == ["app/main.py"] and files["added"] == ["app/new.py"] and files["removed"] == []
    assert files["counts"] == {"added": 1, "removed": 0, "modified": 1}
    assert files["compared_with"] == first["id"]
    parent = reasons(changed)[6]
    assert parent is not None
    assert parent["step"] == 5 and parent["instruction"] == "COPY ./app ./app"

    del demo["app/new.py"]
    removed = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-code:1", builder=builder)
    assert reasons(removed)[5]["removed"] == ["app/new.py"]  # type: ignore[index]


def test_a_requirements_change_carries_down_to_every_later_step(
    client: FlaskClient, demo: dict[str, str], builder: str
) -> None:
    build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-req:1", builder=builder)
    demo["requirements.txt"] += "requests==2.32\n"
    changed = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-req:1", builder=builder)
    assert kinds(changed) == {1: None, 2: None, 3: "files_changed", 4: "parent_missed", 5: "parent_missed",
                              6: "parent_missed"}
    assert reasons(changed)[3]["modified"] == ["requirements.txt"]  # type: ignore[index]
    # Each later step points at the first miss of the run, not at the step just before it.
    assert {reasons(changed)[i]["step"] for i in (4, 5, 6)} == {3}  # type: ignore[index]


def test_ignored_files_are_never_named_as_changes(client: FlaskClient, demo: dict[str, str], builder: str) -> None:
    demo[".dockerignore"] = "app/*.log\n"
    demo["app/debug.log"] = "noise"
    build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-ignore:1", builder=builder)
    demo["app/debug.log"] = "more noise"
    demo["app/main.py"] = "print('changed')\n"
    changed = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-ignore:1", builder=builder)
    assert reasons(changed)[5]["modified"] == ["app/main.py"]  # type: ignore[index]


def test_a_changed_instruction_shows_old_and_new_text_and_a_new_step_is_a_first(
    client: FlaskClient, demo: dict[str, str], builder: str
) -> None:
    build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-instr:1", builder=builder)
    demo["Dockerfile"] = demo["Dockerfile"].replace("RUN ls app >", "RUN ls -a app >") + "RUN echo one more\n"
    changed = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-instr:1", builder=builder)
    # Step 7 is new: no earlier build reached it, whatever came before.
    assert kinds(changed) == {1: None, 2: None, 3: None, 4: None, 5: None, 6: "instruction_changed",
                              7: "first_build"}
    reason = reasons(changed)[6]
    assert reason is not None
    assert reason["old"] == "RUN ls app > /app-files.txt" and reason["new"] == "RUN ls -a app > /app-files.txt"

    demo["Dockerfile"] = demo["Dockerfile"].replace("RUN ls -a app >", "RUN ls app >")
    build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-instr:2", builder=builder)  # 6 cached, 7 built
    demo["Dockerfile"] += "RUN echo and another\n"
    longer = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-instr:2", builder=builder)
    assert kinds(longer)[8] == "first_build"  # no earlier build reached step 8
    assert "did not reach this step" in reasons(longer)[8]["text"]  # type: ignore[index]


def test_no_cache_is_the_reason_when_asked_for(client: FlaskClient, demo: dict[str, str], builder: str) -> None:
    build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-nocache:1", builder=builder)
    fresh = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-nocache:1", builder=builder, no_cache="true")
    missed = {s["index"] for s in fresh["steps"] if s["cached"] is False}
    assert missed >= {3, 4, 5, 6}
    assert {i: k for i, k in kinds(fresh).items() if k} == dict.fromkeys(missed, "no_cache")


def test_a_changed_build_arg_is_named_and_a_secret_one_never_shows_its_value(
    client: FlaskClient, demo: dict[str, str], builder: str
) -> None:
    demo["Dockerfile"] = demo["Dockerfile"].replace(
        "RUN echo installing", "ARG MIRROR=pypi\nARG INDEX_TOKEN\nRUN echo installing from $MIRROR")
    # Now: 3 COPY requirements, 4 ARG MIRROR, 5 ARG INDEX_TOKEN, 6 RUN, 7 COPY app, 8 RUN ls
    args = {"MIRROR": "mirror-one", "INDEX_TOKEN": "hunter2-first"}
    build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-args:1", builder=builder, build_args=json.dumps(args))

    args = {"MIRROR": "mirror-two", "INDEX_TOKEN": "hunter2-second"}
    changed = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-args:1", builder=builder,
                       build_args=json.dumps(args))
    reason = reasons(changed)[6]
    assert reason is not None and reason["kind"] == "build_arg_changed"
    assert reason["args"] == [
        {"name": "INDEX_TOKEN", "old": "********", "new": "********", "secret": True},
        {"name": "MIRROR", "old": "mirror-one", "new": "mirror-two", "secret": False},
    ]
    assert kinds(changed).get(4) is None and kinds(changed).get(5) is None  # ARGs (steps of the classic builder)
    assert {reasons(changed)[i]["step"] for i in (7, 8)} == {6}  # type: ignore[index]
    every_reason = json.dumps([s["miss_reason"] for s in changed["steps"]])
    assert "hunter2" not in every_reason

    args = {"MIRROR": "mirror-two", "INDEX_TOKEN": "hunter2-third"}
    secret_only = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-args:1", builder=builder,
                           build_args=json.dumps(args))
    assert reasons(secret_only)[6]["args"] == [  # type: ignore[index]
        {"name": "INDEX_TOKEN", "old": "********", "new": "********", "secret": True}]


def test_a_base_image_that_changed_under_the_same_name_is_the_reason(
    client: FlaskClient, demo: dict[str, str], builder: str, base_image: str, docker_client: docker.DockerClient
) -> None:
    instance = client.application.config["INSTANCE_ID"]
    base = f"layerdeck-test/ci-base-{builder}:{instance[:12]}"

    def make_base(version: str) -> str:
        files = {"Dockerfile": f"FROM {base_image}\nRUN echo {version} {instance} > /base-version\n"}
        image, _ = docker_client.images.build(fileobj=io.BytesIO(tar_bytes(files)), custom_context=True, tag=base,
                                              labels={"layerdeck.instance": instance}, rm=True, forcerm=True)
        return str(image.id)

    first_id = make_base("one")
    demo["Dockerfile"] = demo["Dockerfile"].replace(f"FROM {base_image}", f"FROM {base}")
    build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-base:1", builder=builder)

    second_id = make_base("two")
    changed = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-base:1", builder=builder)
    assert kinds(changed) == {1: None, 2: "base_image_changed", 3: "parent_missed", 4: "parent_missed",
                              5: "parent_missed", 6: "parent_missed"}
    reason = reasons(changed)[2]
    assert reason is not None
    assert reason["image"] == base and reason["old_id"] == first_id and reason["new_id"] == second_id
    assert reasons(changed)[6]["step"] == 2  # type: ignore[index]


def test_two_builds_side_by_side(client: FlaskClient, demo: dict[str, str], builder: str) -> None:
    first = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-compare:1", builder=builder)
    demo["app/main.py"] = "print('compare me')\n"
    second = build_ok(client, tar_bytes(demo), tag="layerdeck-test/ci-compare:1", builder=builder,
                      build_args=json.dumps({"UNUSED": "1"}))

    response = client.get(f"/api/v1/builds/{first['id']}/compare/{second['id']}")
    assert response.status_code == 200
    compared = response.get_json()
    assert compared["a"]["id"] == first["id"] and compared["b"]["id"] == second["id"]
    rows = compared["rows"]
    assert [r["b"]["instruction"].split()[0] for r in rows] == ["FROM", "WORKDIR", "COPY", "RUN", "COPY", "RUN"]
    assert all(r["same_instruction"] for r in rows)
    copy_app = rows[4]
    assert copy_app["a"]["step"]["cached"] is False and copy_app["b"]["step"]["cached"] is False
    assert copy_app["b"]["step"]["miss_reason"]["kind"] == "files_changed"
    assert copy_app["files"]["modified"] == ["app/main.py"]
    assert rows[2]["files"]["counts"] == {"added": 0, "removed": 0, "modified": 0}
    assert compared["files"]["modified"] == ["app/main.py"]
    assert compared["args"] == [{"name": "UNUSED", "a": None, "b": "1", "secret": False}]
    assert rows[3]["b"]["step"]["duration_s"] is not None

    page = client.get(f"/builds/{first['id']}/compare/{second['id']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="compare-row"' in html and "app/main.py" in html
    build_page = client.get(f"/builds/{second['id']}").get_data(as_text=True)
    assert f"/builds/{first['id']}/compare/{second['id']}" in build_page

    assert client.get(f"/api/v1/builds/{first['id']}/compare/999999").status_code == 404

    # History: tick two builds (in any order) and press Compare.
    picked = client.get(f"/builds/compare?id={second['id']}&id={first['id']}")
    assert picked.status_code == 302
    assert picked.headers["Location"].endswith(f"/builds/{first['id']}/compare/{second['id']}")
    assert client.get(f"/builds/compare?id={first['id']}").status_code == 400


def test_the_history_shows_the_time_the_cache_saved(client: FlaskClient, base_image: str, builder: str) -> None:
    mark = uuid.uuid4().hex  # no earlier build (of this run or another) has this step cached
    dockerfile = f"FROM {base_image}\nRUN echo {builder}-{mark} && sleep 1\n"
    build_ok(client, tar_bytes({"Dockerfile": dockerfile}), tag="layerdeck-test/ci-saved:1", builder=builder)
    again = build_ok(client, tar_bytes({"Dockerfile": dockerfile}), tag="layerdeck-test/ci-saved:1", builder=builder)
    assert again["cache"]["saved_s"] >= 1.0
    listed = client.get("/api/v1/builds").get_json()["builds"]
    assert listed[0]["cache"]["saved_s"] == again["cache"]["saved_s"]
    history = client.get("/builds").get_data(as_text=True)
    assert history.count('data-testid="history-saved"') == 1
    assert 'data-testid="compare-pick"' in history

