"""How a run reads in the API: the exit code's usual meaning, ports as links."""

from __future__ import annotations

import json

from webapp.models import Run
from webapp.runs.present import run_to_dict


def a_run(**fields: object) -> Run:
    base = {"id": 1, "image": "sha256:x", "image_ref": "demo:1", "status": "exited", "created_at": 1.0,
            "ports": json.dumps([{"container_port": 80, "protocol": "tcp", "host_ip": "0.0.0.0", "host_port": 20001}]),
            "env": "{}", "log_bytes": 0, "log_truncated": False}
    base.update(fields)
    return Run(**base)


def test_a_common_exit_code_is_explained_and_an_unknown_one_is_not() -> None:
    assert run_to_dict(a_run(exit_code=137))["exit_meaning"].startswith("Killed (SIGKILL)")
    assert run_to_dict(a_run(exit_code=3))["exit_meaning"] is None
    assert run_to_dict(a_run(status="running", exit_code=None))["exit_meaning"] is None


def test_a_port_published_on_every_address_links_to_localhost() -> None:
    assert run_to_dict(a_run())["ports"][0]["url"] == "http://127.0.0.1:20001"
