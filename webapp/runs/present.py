"""Runs -> the JSON shape of docs/API.md."""

from __future__ import annotations

import json
import time
from typing import Any

from webapp.auth.accounts import user_name
from webapp.models import Run, RunStatus, iso

# What an exit code usually means, said on the run page under "Exited with code N".
EXIT_MEANINGS = {
    0: "The command finished.",
    1: "The program reported an error.",
    2: "The program was called the wrong way (often a bad argument).",
    125: "The engine could not run the container.",
    126: "The command was found but could not be run (not executable?).",
    127: "The command was not found in the image.",
    130: "Interrupted (SIGINT).",
    137: "Killed (SIGKILL): stopped by force, or out of memory.",
    139: "It crashed (segmentation fault).",
    143: "Terminated (SIGTERM).",
}


def run_to_dict(run: Run, *, tag: str | None = None) -> dict[str, Any]:
    ports = json.loads(run.ports or "[]")
    for port in ports:
        host = "127.0.0.1" if port["host_ip"] in ("0.0.0.0", "") else port["host_ip"]
        port["url"] = f"http://{host}:{port['host_port']}" if port["protocol"] == "tcp" else None
    uptime = None
    if run.started_at is not None:
        end = time.time() if run.status == RunStatus.RUNNING else run.finished_at
        uptime = round(end - run.started_at, 1) if end is not None else None
    return {
        "id": run.id,
        "status": run.status,
        "exit_code": run.exit_code,
        "exit_meaning": EXIT_MEANINGS.get(run.exit_code) if run.status == RunStatus.EXITED and
        run.exit_code is not None else None,
        "container_id": run.container_id,
        "name": run.name,
        "image": run.image,
        "image_ref": run.image_ref,
        "build_id": run.build_id,
        "tag": tag,
        "ports": ports,
        "env": json.loads(run.env or "{}"),
        "command": json.loads(run.command) if run.command else None,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "uptime_s": uptime,
        "error": run.error,
        "created_from": run.created_from,
        "created_by": user_name(run.created_by),
        "log": {"bytes": run.log_bytes, "truncated": run.log_truncated},
        "url": f"/runs/{run.id}",
        "api_url": f"/api/v1/runs/{run.id}",
        "ws_url": f"/ws/runs/{run.id}/logs",
    }
