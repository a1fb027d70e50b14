"""Editing a stored context's text files and rebuilding, on the real engine: the projector demo ("change the
code: only the last steps rebuild; change requirements.txt: the install runs again"), and what is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import add_user, build_ok, submit, tar_bytes, wait_for_build

pytestmark = pytest.mark.engine


@pytest.fixture(params=["buildkit", "classic"])
def builder(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def statuses(build: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["instruction"].split()[0], s["status"]) for s in build["steps"]]


def edit(client: FlaskClient, build: dict[str, Any], files: dict[str, str], **body: Any) -> Any:
    return client.post(f"{build['api_url']}/edit", json={"files": files, **body})


def stored_files(app: Flask) -> list[str]:
    data = Path(app.config["DATA_DIR"])
    return sorted(str(p.relative_to(data)) for p in (data / "contexts").glob("*")) + \
        sorted(str(p.relative_to(data)) for p in (data / "tmp").glob("*"))


def test_edit_the_code_then_the_requirements_and_watch_which_steps_rebuild(
    app: Flask, client: FlaskClient, busybox_context: dict[str, str], builder: str
) -> None:
    busybox_context["requirements.txt"] = f"flask==3.0  # {builder}-{app.config['INSTANCE_ID']}\n"
    first = build_ok(client, tar_bytes(busybox_context), builder=builder)

    listing = client.get(f"{first['api_url']}/files").get_json()
    assert [(f["path"], f["text"], f["editable"]) for f in listing["files"]] == [
        ("Dockerfile", True, True), ("app/main.py", True, True), ("requirements.txt", True, True)]
    assert listing["truncated"] is False and listing["dockerfile"] == "Dockerfile"
    code = client.get(f"{first['api_url']}/files/app/main.py").get_json()
    assert code["content"] == "print('hello')\n" and code["path"] == "app/main.py"

    # Change the app code: everything up to COPY ./app comes from the cache.
    started = edit(client, first, {"app/main.py": "print('hello, projector')\n"})
    assert started.status_code == 202, started.get_json()
    reply = started.get_json()
    assert reply["changed"] == ["app/main.py"] and reply["url"] == f"/builds/{reply['id']}"
    after_code = wait_for_build(client, reply["id"])
    assert after_code["status"] == "succeeded", after_code["error"]
    assert statuses(after_code)[1:] == [("WORKDIR", "cached"), ("COPY", "cached"), ("RUN", "cached"),
                                        ("COPY", "built"), ("RUN", "built")]
    assert after_code["rebuild_of"] == first["id"]
    assert after_code["context"]["source"] == "edited"
    assert after_code["builder"] == builder
    assert after_code["cache"]["hits"] == 3 and after_code["cache"]["saved_s"] > 0
    # The new build's context holds the edit; the first build's is untouched.
    assert client.get(f"{after_code['api_url']}/files/app/main.py").get_json()["content"] == \
        "print('hello, projector')\n"
    assert client.get(f"{first['api_url']}/files/app/main.py").get_json()["content"] == "print('hello')\n"

    # Change requirements.txt: the install step runs again, and so does everything after it.
    started = edit(client, after_code, {"requirements.txt": busybox_context["requirements.txt"] + "requests\n"})
    assert started.status_code == 202, started.get_json()
    after_requirements = wait_for_build(client, started.get_json()["id"])
    assert statuses(after_requirements)[1:] == [("WORKDIR", "cached"), ("COPY", "built"), ("RUN", "built"),
                                                ("COPY", "built"), ("RUN", "built")]

    events = client.get("/api/v1/audit?action=build.edit").get_json()["events"]
    assert [(e["target"], e["detail"]["files"], e["detail"]["edit_of"]) for e in reversed(events)] == [
        (f"build {after_code['id']}", ["app/main.py"], first["id"]),
        (f"build {after_requirements['id']}", ["requirements.txt"], after_code["id"]),
    ]


def test_an_edit_that_changes_nothing_rebuilds_the_same_context(
    app: Flask, client: FlaskClient, base_image: str
) -> None:
    first = build_ok(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nCOPY a.txt /\n", "a.txt": "same\n"}))
    started = edit(client, first, {"a.txt": "same\n"})
    assert started.status_code == 202 and started.get_json()["changed"] == []
    again = wait_for_build(client, started.get_json()["id"])
    assert again["context"] == first["context"] and [s["status"] for s in again["steps"]][1:] == ["cached"]


def test_an_edited_dockerfile_is_the_one_built(app: Flask, client: FlaskClient, base_image: str) -> None:
    first = build_ok(client, tar_bytes({"Dockerfile": f"FROM {base_image}\nRUN echo one\n"}))
    started = edit(client, first, {"Dockerfile": f"FROM {base_image}\nRUN echo two\n"})
    build = wait_for_build(client, started.get_json()["id"])
    assert build["status"] == "succeeded" and build["steps"][-1]["instruction"] == "RUN echo two"
    assert "two" in client.get(build["log_url"]).get_data(as_text=True)


def test_refused_edits_say_why_and_leave_nothing_behind(app: Flask, client: FlaskClient, base_image: str) -> None:
    files = {"Dockerfile": f"FROM {base_image}\nCOPY . /ctx\n", "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00",
             "notes.txt": "hello\n"}
    first = wait_for_build(client, submit(client, tar_bytes(files)).get_json()["id"])
    before = stored_files(app)
    count = len(client.get("/api/v1/builds").get_json()["builds"])

    refusals = [
        ({"missing.txt": "x"}, 400, "no_such_file", "no file"),
        ({"logo.png": "x"}, 400, "not_text", "not a text file"),
        ({"../x": "x"}, 400, "unsafe_path", '".."'),
        ({"/etc/passwd": "x"}, 400, "unsafe_path", "absolute"),
        ({"notes.txt": "x" * (300 * 1024)}, 413, "file_too_large", "at most"),
        ({}, 400, "invalid_edit", "files"),
    ]
    for changes, status, code, words in refusals:
        refused = edit(client, first, changes)
        assert refused.status_code == status, (changes, refused.get_json())
        error = refused.get_json()["error"]
        assert error["code"] == code and words in error["message"], error
    assert client.post(f"{first['api_url']}/edit", data="not json").get_json()["error"]["code"] == "invalid_edit"
    assert client.post("/api/v1/builds/999/edit", json={"files": {"a": "b"}}).status_code == 404

    # Reading: binary files and paths outside the context are refused too.
    assert client.get(f"{first['api_url']}/files/logo.png").get_json()["error"]["code"] == "not_text"
    assert client.get(f"{first['api_url']}/files/nope.txt").status_code == 404
    assert client.get(f"{first['api_url']}/files/..%2Fnotes.txt").get_json()["error"]["code"] == "unsafe_path"
    assert client.get("/api/v1/builds/999/files").status_code == 404

    assert stored_files(app) == before
    assert len(client.get("/api/v1/builds").get_json()["builds"]) == count
    assert client.get("/api/v1/audit?action=build.edit").get_json()["events"] == []

    # A build whose context is gone cannot be edited (nor listed).
    (Path(app.config["DATA_DIR"]) / "contexts" / f"{first['id']}.tar").unlink()
    assert client.get(f"{first['api_url']}/files").get_json()["error"]["code"] == "context_gone"
    assert edit(client, first, {"notes.txt": "x"}).get_json()["error"]["code"] == "context_gone"


def test_viewers_read_the_files_but_only_members_and_admins_edit(
    app: Flask, client: FlaskClient, base_image: str
) -> None:
    first = wait_for_build(client, submit(client, tar_bytes({"Dockerfile": f"FROM {base_image}\n"})).get_json()["id"])
    viewer = app.test_client(token=add_user(app, "vic", "viewer"))
    member = app.test_client(token=add_user(app, "alice", "member"))
    anonymous = app.test_client(token=None)

    assert viewer.get(f"{first['api_url']}/files").status_code == 200
    assert viewer.get(f"{first['api_url']}/files/Dockerfile").status_code == 200
    page = viewer.get(f"/builds/{first['id']}/present")
    assert page.status_code == 200 and b'data-testid="present"' in page.data
    assert b'data-testid="editor"' not in page.data and b'data-testid="present-rebuild"' not in page.data
    refused = edit(viewer, first, {"Dockerfile": f"FROM {base_image}\nLABEL x=y\n"})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    for url in (f"{first['api_url']}/files", f"{first['api_url']}/files/Dockerfile"):
        assert anonymous.get(url).status_code == 401
    assert edit(anonymous, first, {"Dockerfile": "x"}).status_code == 401

    # A member may edit someone else's build: like a rebuild, it makes a new build of their own.
    started = edit(member, first, {"Dockerfile": f"FROM {base_image}\nLABEL x=y\n"})
    assert started.status_code == 202
    assert wait_for_build(member, started.get_json()["id"])["created_by"] == "alice"


def test_an_edit_of_a_build_with_secret_args_needs_their_values_again(client: FlaskClient, base_image: str) -> None:
    dockerfile = f'FROM {base_image}\nARG API_TOKEN\nCOPY app.txt /\nRUN echo "token $API_TOKEN"\n'
    created = submit(client, tar_bytes({"Dockerfile": dockerfile, "app.txt": "one\n"}),
                     build_args=json.dumps({"API_TOKEN": "tok-123"}))
    first = wait_for_build(client, created.get_json()["id"])
    refused = edit(client, first, {"app.txt": "two\n"})
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "secrets_needed"
    assert refused.get_json()["error"]["secret_build_args"] == ["API_TOKEN"]
    started = edit(client, first, {"app.txt": "two\n"}, build_args={"API_TOKEN": "tok-123"})
    assert started.status_code == 202
    assert wait_for_build(client, started.get_json()["id"])["status"] == "succeeded"
