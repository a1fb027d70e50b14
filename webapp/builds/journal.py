"""The build journal: the one writer of build events.

Build workers emit step, log, status and end messages; one thread writes them to SQLite in batches (one
`BEGIN IMMEDIATE` transaction for whatever has arrived since the last commit), assigns each its `seq`,
and only after the commit publishes them to live viewers. Batching is natural, not timed: while one
batch commits, the next one gathers, so a quiet build gets each line at once and a chatty one gets
large batches. Log bytes are capped here, so every path into the log obeys the cap.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import func, insert, select

from webapp.builds.broadcast import Hub
from webapp.builds.present import build_to_dict, step_to_dict
from webapp.db import begin_write
from webapp.extensions import db
from webapp.models import Build, BuildEvent, Step

log = logging.getLogger(__name__)

MAX_BATCH = 2000


@dataclass
class _Item:
    build_id: int
    kind: str  # step | log | status | end | sync
    data: dict[str, Any] = field(default_factory=dict)
    done: threading.Event | None = None


@dataclass
class _BuildState:
    seq: int
    log_bytes: int
    truncated: bool


def truncation_notice(cap: int) -> str:
    return (
        f"[layerdeck] The log passed its cap of {cap / 1024**2:g} MiB; later lines are not stored. "
        "The build goes on."
    )


class Journal:
    def __init__(self, app: Flask, hub: Hub, log_cap: int) -> None:
        self._app = app
        self._hub = hub
        self._log_cap = log_cap
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._states: dict[int, _BuildState] = {}
        self._thread = threading.Thread(target=self._run, name="layerdeck-journal", daemon=True)
        self._thread.start()

    # --- emitting (any thread) -------------------------------------------------------------------------

    def step(self, build_id: int, step: dict[str, Any]) -> None:
        """A step as the parser reports it (times as UNIX seconds)."""
        self._queue.put(_Item(build_id, "step", dict(step)))

    def log(self, build_id: int, step: int | None, stream: str, text: str) -> None:
        self._queue.put(_Item(build_id, "log", {"step": step, "stream": stream, "text": text}))

    def status(self, build_id: int, **changes: Any) -> None:
        """Apply changes to the build row (possibly none) and send the build as it then is."""
        self._queue.put(_Item(build_id, "status", changes))

    def end(self, build_id: int) -> None:
        self._queue.put(_Item(build_id, "end"))

    def sync(self, timeout: float = 30) -> None:
        """Wait until everything emitted before this call is committed and published."""
        done = threading.Event()
        self._queue.put(_Item(0, "sync", done=done))
        if not done.wait(timeout):
            raise TimeoutError("the build journal did not catch up")

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    # --- writing (the journal thread) ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = [first]
            stopping = False
            while len(items) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                items.append(nxt)
            try:
                with self._app.app_context():
                    self._write(items)
            except Exception:  # the journal must outlive one bad batch
                log.exception("could not write %d build events", len(items))
                self._states.clear()
            finally:
                for item in items:
                    if item.done is not None:
                        item.done.set()
            if stopping:
                return

    def _state(self, build: Build) -> _BuildState:
        state = self._states.get(build.id)
        if state is None:
            last = db.session.scalar(select(func.max(BuildEvent.seq)).where(BuildEvent.build_id == build.id))
            state = _BuildState(int(last or 0), build.log_bytes, build.log_truncated)
            self._states[build.id] = state
        return state

    def _write(self, items: list[_Item]) -> None:
        session = db.session
        begin_write()
        rows: list[dict[str, Any]] = []
        published: dict[int, list[dict[str, Any]]] = defaultdict(list)
        builds: dict[int, Build] = {}
        ended: list[int] = []

        def add(build: Build, kind: str, data: dict[str, Any]) -> None:
            state = self._state(build)
            state.seq += 1
            message = {"type": kind, "seq": state.seq, **data}
            rows.append({"build_id": build.id, "seq": state.seq, "type": kind, "data": json.dumps(message)})
            published[build.id].append(message)

        for item in items:
            if item.kind == "sync":
                continue
            build = builds.get(item.build_id) or session.get(Build, item.build_id)
            if build is None:
                log.warning("event for unknown build %s dropped", item.build_id)
                continue
            builds[build.id] = build
            if item.kind == "log":
                self._add_log(build, item.data, add)
            elif item.kind == "step":
                row = self._apply_step(build, item.data)
                add(build, "step", {"step": step_to_dict(row)})
            elif item.kind == "status":
                for key, value in item.data.items():
                    setattr(build, key, value)
                session.flush()
                add(build, "status", {"build": build_to_dict(build, steps=False)})
            elif item.kind == "end":
                add(build, "end", {"status": build.status})
                ended.append(build.id)
        for build in builds.values():
            state = self._states.get(build.id)
            if state is not None:
                build.log_bytes = state.log_bytes
                build.log_truncated = state.truncated
        if rows:
            session.execute(insert(BuildEvent), rows)
        session.commit()
        for build_id, messages in published.items():
            self._hub.publish(build_id, messages)
        for build_id in ended:
            self._states.pop(build_id, None)

    def _add_log(self, build: Build, data: dict[str, Any], add: Any) -> None:
        state = self._state(build)
        if state.truncated:
            return
        size = len(data["text"].encode("utf-8", "replace")) + 1
        if state.log_bytes + size > self._log_cap:
            state.truncated = True
            notice = truncation_notice(self._log_cap)
            add(build, "log", {"step": data["step"], "stream": "system", "text": notice})
            return
        state.log_bytes += size
        add(build, "log", data)

    def _apply_step(self, build: Build, raw: dict[str, Any]) -> Step:
        row = next((s for s in build.steps if s.index == raw["index"]), None)
        if row is None:
            row = Step(index=raw["index"])
            build.steps.append(row)
        row.stage = raw["stage"]
        row.instruction = raw["instruction"]
        row.status = raw["status"]
        row.cached = raw["cached"]
        row.error = raw.get("error")
        row.started_at = raw.get("started_at")
        row.finished_at = raw.get("finished_at")
        return row
