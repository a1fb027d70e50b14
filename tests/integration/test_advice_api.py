"""Dockerfile advice before a build (POST /api/v1/advice, what the upload page asks) and on a build,
knowing its context's files."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import add_user, build_ok, tar_bytes

CODE_FIRST = "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nRUN pip install -r requirements.txt\nCMD python app.py\n"
MANIFEST_FIRST = ("FROM python:3.12-slim\nWORKDIR /app\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\n"
                  "COPY . .\nCMD python app.py\n")


def rules(answer: Any) -> list[str]:
    return [a["rule"] for a in answer.get_json()["advice"]]


def test_a_pasted_dockerfile_gets_advice_before_it_is_built(client: FlaskClient) -> None:
    answer = client.post("/api/v1/advice", json={"dockerfile": CODE_FIRST})
    assert answer.status_code == 200
    assert "copy-before-install" in rules(answer)
    item = next(a for a in answer.get_json()["advice"] if a["rule"] == "copy-before-install")
    assert item["line"] == 3 and "COPY requirements.txt" in item["suggestion"]
    assert "copy-before-install" not in rules(client.post("/api/v1/advice", json={"dockerfile": MANIFEST_FIRST}))


def test_a_folder_without_a_dockerignore_is_told_so_and_its_dockerignore_is_applied(client: FlaskClient) -> None:
    paths = ["Dockerfile", "requirements.txt", "app.py"] + [f"node_modules/pkg{i}/index.js" for i in range(300)]
    bare = client.post("/api/v1/advice", json={"dockerfile": MANIFEST_FIRST, "paths": paths, "bytes": 5_000_000})
    assert "no-dockerignore" in rules(bare)
    suggestion = next(a for a in bare.get_json()["advice"] if a["rule"] == "no-dockerignore")["suggestion"]
    assert "node_modules" in suggestion
    kept = client.post("/api/v1/advice", json={"dockerfile": MANIFEST_FIRST, "paths": [*paths, ".dockerignore"],
                                               "dockerignore": "node_modules\n", "bytes": 5_000})
    assert "no-dockerignore" not in rules(kept)


def test_bad_advice_requests_say_what_to_send(app: Flask, client: FlaskClient) -> None:
    for body, code in (({}, "invalid_body"), ({"dockerfile": 3}, "invalid_body"),
                       ({"dockerfile": "FROM x", "paths": "a,b"}, "invalid_body"),
                       ({"dockerfile": "FROM x", "bytes": -1}, "invalid_body"),
                       ({"dockerfile": "x" * (1024**2 + 1)}, "dockerfile_too_large"),
                       ({"dockerfile": "FROM x", "paths": ["a"], "dockerignore": "a[\n"}, "invalid_dockerignore")):
        answer = client.post("/api/v1/advice", json=body)
        assert answer.status_code == 400 and answer.get_json()["error"]["code"] == code, body
    viewer = app.test_client(token=add_user(app, "vic", "viewer"))
    assert viewer.post("/api/v1/advice", json={"dockerfile": CODE_FIRST}).status_code == 200  # nothing changes


@pytest.mark.engine
def test_a_built_context_without_a_dockerignore_gets_that_advice(client: FlaskClient, base_image: str) -> None:
    files: dict[str, bytes | str] = {"Dockerfile": f"FROM {base_image}\nWORKDIR /app\nCOPY . .\n"}
    files.update({f"vendor/lib{i}.txt": f"{i}\n" for i in range(250)})
    bare = build_ok(client, tar_bytes(files))
    assert "no-dockerignore" in [a["rule"] for a in bare["advice"]]
    files[".dockerignore"] = "*.log\n"
    ignored = build_ok(client, tar_bytes(files))
    assert "no-dockerignore" not in [a["rule"] for a in ignored["advice"]]
