"""WS /ws/runs/<id>/logs: a container's log, the last lines first, then live; `?after=<seq>` resumes.

The same gapless order as a build's socket (webapp/builds/ws.py): subscribe, replay from the database,
then forward live messages, skipping seqs already sent.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, request
from simple_websocket import ConnectionClosed
from sqlalchemy import func, select

from webapp.broadcast import Hub
from webapp.errors import NotFound
from webapp.extensions import db, sock
from webapp.models import RunEvent, RunStatus
from webapp.runs import service

bp = Blueprint("runs_ws", __name__)

REPLAY_BATCH = 2000
FIRST_LINES = 1000  # a viewer without ?after starts this many messages before the newest


def _replay(run_id: int, after: int) -> list[dict[str, Any]]:
    rows = db.session.scalars(
        select(RunEvent.data).where(RunEvent.run_id == run_id, RunEvent.seq > after)
        .order_by(RunEvent.seq).limit(REPLAY_BATCH)
    ).all()
    db.session.rollback()  # end the read transaction: a websocket lives long
    return [json.loads(r) for r in rows]


def _running(run_id: int) -> bool:
    run = service.find_run(str(run_id))
    running = run.status == RunStatus.RUNNING
    db.session.rollback()
    return running


@sock.route("/ws/runs/<ref>/logs", bp=bp)
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
    sub = hub.subscribe(run_id)
    last = after
    try:
        while True:
            while True:
                batch = _replay(run_id, last)
                for message in batch:
                    ws.send(json.dumps(message))
                    last = message["seq"]
                if len(batch) < REPLAY_BATCH:
                    break
            # An `end` closes the socket once the container is no longer running (a restarted one goes on).
            if batch and batch[-1]["type"] == "end" and not _running(run_id):
                return
            if not batch and last > 0 and not _running(run_id) and _ended(run_id, last):
                return
            while not sub.overflowed:
                live = sub.get(timeout=1.0)
                if live is None:
                    if not ws.connected:
                        return
                    continue
                if live["seq"] <= last:
                    continue
                if live["seq"] != last + 1:
                    break  # a gap can only mean a lost backlog: replay from the database
                ws.send(json.dumps(live))
                last = live["seq"]
                if live["type"] == "end" and not _running(run_id):
                    return
            sub.drain_overflow()
    except ConnectionClosed:
        pass
    finally:
        hub.unsubscribe(sub)


def _ended(run_id: int, seq: int) -> bool:
    """Whether message `seq` of this run is its `end`."""
    kind = db.session.scalar(select(RunEvent.type).where(RunEvent.run_id == run_id, RunEvent.seq == seq))
    db.session.rollback()
    return kind == "end"
