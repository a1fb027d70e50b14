"""One websocket loop for every log a page follows (a build's, a container's).

The order is what makes it gapless: subscribe to live messages first, replay what the database holds,
then forward live messages, skipping any seq already sent. Messages reach the hub only after they are
committed, so whatever is published before the replay's read is in the replay, and whatever comes after
is in the queue. A viewer whose live backlog overflowed, or who sees a gap, replays from the database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from typing import Any

from simple_websocket import ConnectionClosed
from sqlalchemy import select

from webapp.broadcast import Hub
from webapp.extensions import db

REPLAY_BATCH = 2000
# How often a websocket asks whether its viewer is still signed in (signed out, disabled, token revoked).
RECHECK_S = 10.0


def stored_messages(event_model: Any, owner_column: Any, owner_id: int, after: int,
                    limit: int) -> list[dict[str, Any]]:
    """An owner's stored messages after seq `after`, oldest first."""
    rows = db.session.scalars(
        select(event_model.data).where(owner_column == owner_id, event_model.seq > after)
        .order_by(event_model.seq).limit(limit)
    ).all()
    db.session.rollback()  # end the read transaction: a websocket lives long, a snapshot must not
    return [json.loads(r) for r in rows]


class Revoked(Exception):
    """The viewer's session or token is gone (signed out, disabled, revoked) while it was following."""


IDLE = None  # what follow() yields when nothing came for a second: the caller may look at its client


def follow(hub: Hub, key: int, *, after: int, replay: Callable[[int, int], list[dict[str, Any]]],
           over: Callable[[], bool], allowed: Callable[[], bool] = lambda: True) -> Generator[dict[str, Any] | None]:
    """Every message after `after`, in order, without gaps or repeats, until an `end` when `over()` says
    nothing more will come (a restarted container goes on after its `end`); IDLE after each quiet second.

    replay(after, limit) reads stored messages; over() asks whether the owner has finished; allowed() whether
    the viewer may still watch (asked every RECHECK_S; when not, Revoked is raised)."""
    sub = hub.subscribe(key)
    last, last_type = after, None
    checked = time.monotonic()
    try:
        while True:
            while True:
                batch = replay(last, REPLAY_BATCH)
                for message in batch:
                    yield message
                    last, last_type = message["seq"], message["type"]
                if len(batch) < REPLAY_BATCH:
                    break
            if last_type is None and last > 0:  # resumed with ?after: what was the last message it saw?
                seen = replay(last - 1, 1)
                last_type = seen[0]["type"] if seen else None
            if last_type == "end" and over():
                return
            while not sub.overflowed:
                if time.monotonic() - checked > RECHECK_S:
                    if not allowed():
                        raise Revoked
                    checked = time.monotonic()
                live_batch = sub.get(timeout=1.0)
                if live_batch is None:
                    yield IDLE
                    continue
                gap = False
                for live in live_batch:
                    if live["seq"] <= last:
                        continue
                    if live["seq"] != last + 1:
                        gap = True  # a gap can only mean a lost backlog: replay from the database
                        break
                    yield live
                    last, last_type = live["seq"], live["type"]
                    if last_type == "end" and over():
                        return
                if gap:
                    break
            sub.drain_overflow()
    finally:
        hub.unsubscribe(sub)


def send_messages(ws: Any, messages: Generator[dict[str, Any] | None]) -> None:
    """What follow() gives, onto a websocket, until the end or until the viewer leaves; a viewer no longer
    allowed to watch is closed with 1008."""
    try:
        for message in messages:
            if message is IDLE:
                if not ws.connected:
                    return
                continue
            ws.send(json.dumps(message))
    except Revoked:
        ws.close(reason=1008, message="signed out")
    except ConnectionClosed:
        pass
    finally:
        messages.close()
