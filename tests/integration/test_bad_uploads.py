"""Every bad input gets the right 4xx and a sentence, in JSON and in the page, and leaves nothing behind:
no build row, no temporary file, no stored context, no image."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import submit, tar_bytes, zip_bytes

pytestmark = pytest.mark.engine

GOOD = {"Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n", "a.txt": "a"}


def tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(GOOD["Dockerfile"])
        tar.addfile(info, io.BytesIO(GOOD["Dockerfile"].encode()))
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, linkname
    return info


def assert_nothing_left(app: Flask, client: FlaskClient) -> None:
    assert client.get("/api/v1/builds").get_json()["builds"] == []
    data = Path(app.config["DATA_DIR"])
    assert list((data / "tmp").iterdir()) == []
    assert not (data / "contexts").exists() or list((data / "contexts").iterdir()) == []


CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("not an archive", {"archive": b"just some text, not an archive\n" * 20}, 400, "not_an_archive",
     "not a tar, tar.gz or zip archive"),
    ("truncated tar", {"archive": tar_bytes({**GOOD, "big.bin": b"x" * 50_000})[:20_000]}, 400, "corrupt_archive",
     "damaged"),
    ("truncated gzip", {"archive": gzip.compress(tar_bytes({**GOOD, "r.bin": bytes(range(256)) * 400}))[:900]},
     400, "corrupt_archive", "damaged"),
    ("truncated zip", {"archive": zip_bytes(GOOD)[:-40], "filename": "c.zip"}, 400, "corrupt_archive", "zip"),
    ("no Dockerfile", {"archive": tar_bytes({"a.txt": "a"})}, 400, "no_dockerfile", "no Dockerfile"),
    ("Dockerfile elsewhere", {"archive": tar_bytes(GOOD), "dockerfile": "build/Dockerfile"}, 400, "no_dockerfile",
     "build/Dockerfile"),
    ("traversal", {"archive": tar_with(member("../../etc/evil", size=1), b"x")}, 400, "unsafe_member", ".."),
    ("absolute name", {"archive": tar_with(member("/etc/evil", size=1), b"x")}, 400, "unsafe_member", "absolute"),
    ("symlink", {"archive": tar_with(member("link", tarfile.SYMTYPE, linkname="/etc/passwd"))}, 400, "link_member",
     "link"),
    ("hard link", {"archive": tar_with(member("hard", tarfile.LNKTYPE, linkname="Dockerfile"))}, 400,
     "link_member", "link"),
    ("device", {"archive": tar_with(member("dev", tarfile.CHRTYPE))}, 400, "special_member", "device"),
    ("fifo", {"archive": tar_with(member("fifo", tarfile.FIFOTYPE))}, 400, "special_member", "FIFO"),
    ("invalid tag", {"archive": tar_bytes(GOOD), "tag": "Not A Tag"}, 400, "invalid_tag", "not a valid image name"),
    ("malformed build args", {"archive": tar_bytes(GOOD), "build_args": "{oops"}, 400, "invalid_build_args",
     "not valid JSON"),
    ("build args not an object", {"archive": tar_bytes(GOOD), "build_args": "[1]"}, 400, "invalid_build_args",
     "JSON object"),
    ("Dockerfile path outside", {"archive": tar_bytes(GOOD), "dockerfile": "../Dockerfile"}, 400,
     "dockerfile_outside_context", "inside the build context"),
    ("absolute Dockerfile path", {"archive": tar_bytes(GOOD), "dockerfile": "/etc/Dockerfile"}, 400,
     "dockerfile_outside_context", "inside the build context"),
    ("nothing to build", {}, 400, "no_context", "Nothing to build"),
    ("both archive and text", {"archive": tar_bytes(GOOD), "dockerfile_text": "FROM scratch"}, 400, "two_contexts",
     "not both"),
    ("empty pasted Dockerfile", {"dockerfile_text": "   "}, 400, "no_context", "Nothing to build"),
    ("unknown builder", {"archive": tar_bytes(GOOD), "builder": "kaniko"}, 400, "invalid_builder", "not a builder"),
]


@pytest.mark.parametrize(("what", "send", "status", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_sentence_and_leaves_nothing(
    app: Flask, client: FlaskClient, what: str, send: dict[str, Any], status: int, code: str, words: str
) -> None:
    send = dict(send)
    response = submit(client, send.pop("archive", None), **send)
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error"]["code"] == code
    assert words.lower() in body["error"]["message"].lower()
    assert body["error"]["message"].endswith(".")
    assert_nothing_left(app, client)


def test_an_upload_over_the_cap_gets_413_before_it_is_stored(make_app: Any) -> None:
    app = make_app(MAX_UPLOAD_SIZE=64 * 1024)
    client = app.test_client()
    response = submit(client, tar_bytes({**GOOD, "big.bin": b"\x01" * 200_000}))
    assert response.status_code == 413
    assert "larger than the 0.0625 MiB limit" in response.get_json()["error"]["message"]
    assert_nothing_left(app, client)


def test_a_gzip_bomb_is_stopped_by_counting_unpacked_bytes(make_app: Any) -> None:
    app = make_app(MAX_CONTEXT_SIZE=1024**2)
    client = app.test_client()
    bomb = gzip.compress(tar_bytes({**GOOD, "zeros.bin": b"\x00" * (16 * 1024**2)}))
    assert len(bomb) < 100_000
    response = submit(client, bomb, filename="small.tar.gz")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "context_too_large"
    assert_nothing_left(app, client)


def test_too_many_files_gets_413(make_app: Any) -> None:
    app = make_app(MAX_CONTEXT_FILES=10)
    client = app.test_client()
    files = {**GOOD, **{f"f{i}.txt": str(i) for i in range(20)}}
    response = submit(client, tar_bytes(files))
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_many_files"
    assert "10" in response.get_json()["error"]["message"]
    assert_nothing_left(app, client)


def test_the_page_shows_errors_as_html_for_a_browser(client: FlaskClient) -> None:
    response = client.get("/builds/12345", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert b"There is no build #12345." in response.data
    assert client.get("/api/v1/builds/12345").get_json()["error"]["code"] == "no_such_build"


def test_a_rebuild_of_an_unknown_build_is_404(client: FlaskClient) -> None:
    response = client.post("/api/v1/builds/999/rebuild")
    assert response.status_code == 404
    assert json.loads(response.data)["error"]["message"] == "There is no build #999."


def raw_post(client: FlaskClient, body: bytes, **params: str) -> Any:
    return client.post("/api/v1/builds", query_string=params, data=body, content_type="application/x-tar")


def test_a_raw_archive_body_is_checked_like_a_form_upload(app: Flask, client: FlaskClient) -> None:
    response = raw_post(client, b"not an archive at all" * 10, tag="demo/app:1")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "not_an_archive"
    response = raw_post(client, tar_bytes(GOOD), tag="Bad Tag")
    assert response.get_json()["error"]["code"] == "invalid_tag"
    assert_nothing_left(app, client)


def test_a_raw_archive_body_over_the_cap_gets_413(make_app: Any) -> None:
    app = make_app(MAX_UPLOAD_SIZE=64 * 1024)
    client = app.test_client()
    response = raw_post(client, tar_bytes({**GOOD, "big.bin": b"\x01" * 200_000}))
    assert response.status_code == 413
    assert_nothing_left(app, client)
