"""Run pages and the runs JSON API. Views parse input, call one service function, and answer."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from sqlalchemy import select

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


@bp.post("/api/v1/runs")
def create_run() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("Send the run as a JSON object (Content-Type: application/json).",
                         code="invalid_run")
    run = service.start_run(_app(), service.parse_run_request(body), request.remote_addr)
    return jsonify(runs_to_dicts([run])[0]), 201


@bp.get("/api/v1/runs")
def list_runs() -> Response:
    runs, next_before = newest_first(Run)
    return jsonify({"runs": runs_to_dicts(runs), "next_before": next_before})


@bp.get("/api/v1/runs/<ref>")
def get_run(ref: str) -> Response:
    return jsonify(runs_to_dicts([service.find_run(ref)])[0])


@bp.post("/api/v1/runs/<ref>/stop")
def stop_run(ref: str) -> Response:
    run = service.stop_run(_app(), service.find_run(ref))
    return jsonify(runs_to_dicts([run])[0])


@bp.post("/api/v1/runs/<ref>/restart")
def restart_run(ref: str) -> Response:
    run = service.restart_run(_app(), service.find_run(ref))
    return jsonify(runs_to_dicts([run])[0])


@bp.delete("/api/v1/runs/<ref>")
def remove_run(ref: str) -> Response:
    run = service.remove_run(_app(), service.find_run(ref))
    return jsonify(runs_to_dicts([run])[0])


@bp.get("/api/v1/builds/<int:build_id>/run-defaults")
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
def runs_page() -> str:
    runs, next_before = newest_first(Run)
    return render_template("runs.html", runs=runs_to_dicts(runs), next_before=next_before)


@bp.get("/runs/<ref>")
def run_page(ref: str) -> str:
    run = runs_to_dicts([service.find_run(ref)])[0]
    return render_template("run.html", run=run, run_json=json.dumps(run))
