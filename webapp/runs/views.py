"""Run pages and the runs JSON API. Views parse input, call one service function, and answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from sqlalchemy import select

from webapp.auth import audit
from webapp.auth.access import Level, access
from webapp.auth.gate import require_identity, require_owner
from webapp.builds.views import find_build
from webapp.errors import BadRequest
from webapp.extensions import db
from webapp.models import Build, Run
from webapp.paging import newest_first
from webapp.runs import service
from webapp.runs.present import run_to_dict

bp = Blueprint("runs", __name__)

def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


def runs_to_dicts(runs: list[Run]) -> list[dict[str, Any]]:
    """Runs as the API shows them, checked against the engine first, with their builds' tags."""
    service.refresh_runs(_app(), runs)
    build_ids = {r.build_id for r in runs if r.build_id}
    tags: dict[int, str | None] = {}
    if build_ids:
        rows = db.session.execute(select(Build.id, Build.tag).where(Build.id.in_(build_ids)))
        tags = {row.id: row.tag for row in rows}
    return [run_to_dict(r, tag=tags.get(r.build_id) if r.build_id else None) for r in runs]


def owned_run(ref: str) -> Run:
    run = service.find_run(ref)
    require_owner(run.created_by, "run")
    return run


def audit_run(action: str, run: Run, **detail: object) -> None:
    audit.record(action, f"run {run.id}", detail={"name": run.name, "container": (run.container_id or "")[:12],
                                                  **detail})


@bp.post("/api/v1/runs")
@access(Level.BUILD)
def create_run() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("Send the run as a JSON object (Content-Type: application/json).",
                         code="invalid_run")
    run = service.start_run(_app(), service.parse_run_request(body), request.remote_addr,
                            created_by=require_identity().user_id)
    reply = runs_to_dicts([run])[0]
    audit_run("run.create", run, image=run.image_ref, ports=[p["host_port"] for p in reply["ports"]])
    return jsonify(reply), 201


@bp.get("/api/v1/runs")
@access(Level.READ)
def list_runs() -> Response:
    runs, next_before = newest_first(Run)
    return jsonify({"runs": runs_to_dicts(runs), "next_before": next_before})


@bp.get("/api/v1/runs/<ref>")
@access(Level.READ)
def get_run(ref: str) -> Response:
    return jsonify(runs_to_dicts([service.find_run(ref)])[0])


def act_on_run(ref: str, action: Callable[[Flask, Run], Run], audited: str) -> Response:
    """Stop, restart or remove: the owner's or an admin's, recorded in the audit log."""
    run = action(_app(), owned_run(ref))
    audit_run(audited, run)
    return jsonify(runs_to_dicts([run])[0])


@bp.post("/api/v1/runs/<ref>/stop")
@access(Level.BUILD)
def stop_run(ref: str) -> Response:
    return act_on_run(ref, service.stop_run, "run.stop")


@bp.post("/api/v1/runs/<ref>/restart")
@access(Level.BUILD)
def restart_run(ref: str) -> Response:
    return act_on_run(ref, service.restart_run, "run.restart")


@bp.delete("/api/v1/runs/<ref>")
@access(Level.BUILD)
def remove_run(ref: str) -> Response:
    return act_on_run(ref, service.remove_run, "run.remove")


@bp.get("/api/v1/builds/<int:build_id>/run-defaults")
@access(Level.READ)
def run_defaults(build_id: int) -> Response:
    build = find_build(build_id)
    info = _app().extensions["layerdeck.engine"].inspect_image(build.image_id) if build.image_id else None
    if info is None:
        raise BadRequest(f"Build #{build_id} has no image on the engine to run.", code="no_image")
    config = info.get("Config") or {}
    ports = []
    for key in sorted(config.get("ExposedPorts") or {}):
        number, _, protocol = key.partition("/")
        ports.append({"container_port": int(number), "protocol": protocol or "tcp"})
    return jsonify({"image": info["Id"], "ports": ports, "cmd": config.get("Cmd"),
                    "entrypoint": config.get("Entrypoint")})


# --- pages ----------------------------------------------------------------------------------------------


@bp.get("/runs")
@access(Level.READ)
def runs_page() -> str:
    runs, next_before = newest_first(Run)
    return render_template("runs.html", runs=runs_to_dicts(runs), next_before=next_before)


@bp.get("/runs/<ref>")
@access(Level.READ)
def run_page(ref: str) -> str:
    run = runs_to_dicts([service.find_run(ref)])[0]
    return render_template("run.html", run=run, run_json=json.dumps(run))
