"""WS /ws/builds/<id>: every message of a build from the start (or after `?after=<seq>`), then live ones.

The order is what makes it gapless: subscribe to live messages first, replay what the database holds,
then forward live messages, skipping any seq already sent. Messages reach the hub only after they are
committed, so whatever is published before the replay's read is in the replay, and whatever comes
after is in the queue.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, request
from simple_websocket import ConnectionClosed
from sqlalchemy import select

from webapp.broadcast import Hub
from webapp.extensions import db, sock
from webapp.models import Build, BuildEvent

REPLAY_BATCH = 2000

bp = Blueprint("builds_ws", __name__)


def _replay(build_id: int, after: int) -> list[dict[str, Any]]:
    rows = db.session.scalars(
        select(BuildEvent.data)
        .where(BuildEvent.build_id == build_id, BuildEvent.seq > after)
        .order_by(BuildEvent.seq)
        .limit(REPLAY_BATCH)
    ).all()
    db.session.rollback()  # end the read transaction: a websocket lives long, a snapshot must not
    return [json.loads(r) for r in rows]


@sock.route("/ws/builds/<int:build_id>", bp=bp)
def build_socket(ws: Any, build_id: int) -> None:
    try:
        after = max(int(request.args.get("after", "0")), 0)
    except ValueError:
        after = 0
    exists = db.session.get(Build, build_id) is not None
    db.session.rollback()
    if not exists:
        ws.send(json.dumps({"type": "error", "seq": 0, "message": f"There is no build #{build_id}."}))
        ws.close(reason=1008, message="no such build")
        return
    hub: Hub = current_app.extensions["layerdeck.hub"]
    sub = hub.subscribe(build_id)
    last = after
    try:
        while True:
            # Catch up from the database (also after a live backlog overflowed).
            while True:
                batch = _replay(build_id, last)
                for message in batch:
                    ws.send(json.dumps(message))
                    last = message["seq"]
                    if message["type"] == "end":
                        return
                if len(batch) < REPLAY_BATCH:
                    break
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
                if live["type"] == "end":
                    return
            sub.drain_overflow()
    except ConnectionClosed:
        pass
    finally:
        hub.unsubscribe(sub)
