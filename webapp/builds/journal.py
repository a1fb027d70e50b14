"""The build journal: build workers' step, log, status and end messages (see webapp/journal.py)."""

from __future__ import annotations

import json
from typing import Any

from webapp.builds.options import SECRET_MASK
from webapp.builds.present import build_to_dict, step_to_dict
from webapp.journal import Add, Journal, _Item, truncation_notice
from webapp.models import Build, BuildEvent, Step


class BuildJournal(Journal):
    owner_model = Build
    event_model = BuildEvent
    owner_key = "build_id"
    what = "build"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._secrets: dict[int, list[str]] = {}

    def hide(self, build_id: int, values: list[str]) -> None:
        """Mask these values (secret build args) wherever the build's messages would show them."""
        self._secrets[build_id] = sorted({v for v in values if v}, key=len, reverse=True)

    def forget(self, build_id: int) -> None:
        self._secrets.pop(build_id, None)

    def _mask(self, build_id: int, text: str | None) -> str | None:
        for value in self._secrets.get(build_id, ()):
            if text and value in text:
                text = text.replace(value, SECRET_MASK)
        return text

    def step(self, build_id: int, step: dict[str, Any]) -> None:
        """A step as the parser reports it (times as UNIX seconds)."""
        step = dict(step)
        for key in ("instruction", "error"):
            if isinstance(step.get(key), str):
                step[key] = self._mask(build_id, step[key])
        self._queue.put(_Item(build_id, "step", step))

    def log(self, build_id: int, step: int | None, stream: str, text: str) -> None:
        self._put_log(build_id, {"step": step, "stream": stream, "text": self._mask(build_id, text)})

    def status(self, owner_id: int, **changes: Any) -> None:
        if isinstance(changes.get("error"), str):
            changes["error"] = self._mask(owner_id, changes["error"])
        super().status(owner_id, **changes)

    def snapshot(self, owner: Any) -> dict[str, Any]:
        return build_to_dict(owner, steps=False)

    def truncation(self, data: dict[str, Any]) -> dict[str, Any]:
        notice = truncation_notice(self._log_cap, "The build goes on.")
        return {"step": data["step"], "stream": "system", "text": notice}

    def handle(self, owner: Any, item: _Item, add: Add) -> None:
        if item.kind != "step":
            super().handle(owner, item, add)
            return
        row = _apply_step(owner, item.data)
        add(owner, "step", {"step": step_to_dict(row)})


def _apply_step(build: Build, raw: dict[str, Any]) -> Step:
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
    if "miss_reason" in raw:
        row.miss_reason = json.dumps(raw["miss_reason"]) if raw["miss_reason"] is not None else None
    return row
