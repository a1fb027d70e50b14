"""GET /api/v1/health, and the engine status every page shows in its header."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import text

from webapp.auth.access import Level, access
from webapp.auth.gate import current_identity
from webapp.errors import EngineUnavailable
from webapp.extensions import db

bp = Blueprint("health", __name__)

# Pages show the engine's state on every load; asking it at most this often keeps pages fast.
ENGINE_STATUS_TTL = 3.0


def engine_status(app: Flask, *, fresh: bool = False) -> dict[str, Any]:
    cached = app.extensions.get("layerdeck.engine_status")
    if cached and not fresh and time.monotonic() - cached[0] < ENGINE_STATUS_TTL:
        return dict(cached[1])
    try:
        info = app.extensions["layerdeck.engine"].version()
        status = {"ok": True, "version": info.get("Version"), "api_version": info.get("ApiVersion"),
                  "error": None}
    except EngineUnavailable as exc:
        status = {"ok": False, "version": None, "api_version": None, "error": exc.message}
    app.extensions["layerdeck.engine_status"] = (time.monotonic(), status)
    return dict(status)


@bp.get("/api/v1/health")
@access(Level.PUBLIC)
def health() -> Response:
    """Signed-in callers get the engine's version and any error; anyone else (a load balancer, a container
    health check) gets only whether each part answers, from the status pages share (asked at most every
    few seconds, so anonymous callers cannot make Layerdeck hammer the engine)."""
    signed_in = current_identity() is not None
    docker = engine_status(current_app._get_current_object(), fresh=signed_in)  # type: ignore[attr-defined]
    try:
        db.session.execute(text("SELECT 1"))
        database: dict[str, Any] = {"ok": True}
    except Exception as exc:  # the health check reports, it never raises
        database = {"ok": False, "error": str(exc)}
    ok = docker["ok"] and database["ok"]
    if not signed_in:
        docker, database = {"ok": docker["ok"]}, {"ok": database["ok"]}
    return jsonify({"status": "ok" if ok else "degraded", "docker": docker, "database": database})
