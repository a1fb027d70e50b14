"""WS /ws/runs/<id>/logs: a container's log, the last lines first, then live; `?after=<seq>` resumes
(the gapless loop is webapp/streaming.py)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, request
from sqlalchemy import func, select

from webapp.auth.access import Level, access
from webapp.auth.gate import viewer_still_allowed
from webapp.broadcast import Hub
from webapp.errors import NotFound
from webapp.extensions import db, sock
from webapp.models import RunEvent, RunStatus
from webapp.runs import service
from webapp.streaming import follow, send_messages, stored_messages

bp = Blueprint("runs_ws", __name__)

FIRST_LINES = 1000  # a viewer without ?after starts this many messages before the newest


def _stopped(run_id: int) -> bool:
    """Whether nothing more will come: the container is not running (a restarted one goes on)."""
    running = service.find_run(str(run_id)).status == RunStatus.RUNNING
    db.session.rollback()
    return not running


@sock.route("/ws/runs/<ref>/logs", bp=bp)
@access(Level.READ)
def run_socket(ws: Any, ref: str) -> None:
    try:
        run = service.find_run(ref)
    except NotFound as exc:
        ws.send(json.dumps({"type": "error", "seq": 0, "message": exc.message}))
        ws.close(reason=1008, message="no such run")
        return
    run_id = run.id
    if request.args.get("after"):
        try:
            after = max(int(request.args["after"]), 0)
        except ValueError:
            after = 0
    else:
        newest = db.session.scalar(select(func.max(RunEvent.seq)).where(RunEvent.run_id == run_id)) or 0
        after = max(newest - FIRST_LINES, 0)
    db.session.rollback()
    hub: Hub = current_app.extensions["layerdeck.run_hub"]
    send_messages(ws, follow(hub, run_id, after=after,
                             replay=lambda seq, limit: stored_messages(RunEvent, RunEvent.run_id, run_id, seq, limit),
                             over=lambda: _stopped(run_id), allowed=viewer_still_allowed()))
