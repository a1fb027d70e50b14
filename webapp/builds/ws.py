"""WS /ws/builds/<id>: every message of a build from the start (or after `?after=<seq>`), then live ones
(the gapless loop is webapp/streaming.py)."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from flask import Blueprint, current_app, request

from webapp.auth.access import Level, access
from webapp.auth.gate import viewer_still_allowed
from webapp.broadcast import Hub
from webapp.extensions import db, sock
from webapp.models import Build, BuildEvent
from webapp.streaming import follow, send_messages, stored_messages

bp = Blueprint("builds_ws", __name__)


@sock.route("/ws/builds/<int:build_id>", bp=bp)
@access(Level.READ)
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
    send_messages(ws, build_messages(build_id, after))


def build_messages(build_id: int, after: int) -> Generator[dict[str, Any] | None]:
    """A build's messages after seq `after`, stored then live, until its `end` (streaming.follow), for as
    long as the caller may watch: its websocket and a `?follow=1` response alike."""
    hub: Hub = current_app.extensions["layerdeck.hub"]
    return follow(hub, build_id, after=after,
                  replay=lambda seq, limit: stored_messages(BuildEvent, BuildEvent.build_id, build_id, seq, limit),
                  over=lambda: True,  # a build's `end` is its last message
                  allowed=viewer_still_allowed())
