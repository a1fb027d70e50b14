"""Runs -> the JSON shape of docs/API.md."""

from __future__ import annotations

import json
import time
from typing import Any

from webapp.models import Run, RunStatus, iso


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
        "log": {"bytes": run.log_bytes, "truncated": run.log_truncated},
        "url": f"/runs/{run.id}",
        "api_url": f"/api/v1/runs/{run.id}",
        "ws_url": f"/ws/runs/{run.id}/logs",
    }
