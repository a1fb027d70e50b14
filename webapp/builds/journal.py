"""The build journal: build workers' step, log, status and end messages (see webapp/journal.py)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, select

from webapp.builds.options import SECRET_MASK
from webapp.builds.present import STEP_COLUMNS, build_to_dict, step_row_to_dict
from webapp.extensions import db
from webapp.journal import Add, Journal, _Item, truncation_notice
from webapp.models import Build, BuildEvent, BuildStatus, Step


class BuildJournal(Journal):
    owner_model = Build
    event_model = BuildEvent
    owner_key = "build_id"
    what = "build"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._secrets: dict[int, list[str]] = {}
        # Steps of running builds as last written (by build, by index), and those changed since the last
        # write (key -> new row?): a step reported running, cached and done within one batch is written once.
        self._steps: dict[int, dict[int, dict[str, Any]]] = {}
        self._unwritten: dict[tuple[int, int], bool] = {}

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
        self._put(_Item(build_id, "step", step))

    def log(self, build_id: int, step: int | None, stream: str, text: str) -> None:
        self._put_log(build_id, {"step": step, "stream": stream, "text": self._mask(build_id, text)})

    def status_changes(self, owner_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        if isinstance(changes.get("error"), str):
            changes = {**changes, "error": self._mask(owner_id, changes["error"])}
        return changes

    def snapshot(self, owner: Any) -> dict[str, Any]:
        steps = self._steps.get(owner.id)
        if steps is None:  # no step of it has passed through here (none written below the ORM): read them
            return build_to_dict(owner, steps=False)
        return build_to_dict(owner, steps=False, cached=(s["cached"] for s in steps.values()))

    def truncation(self, data: dict[str, Any]) -> dict[str, Any]:
        notice = truncation_notice(self._log_cap, "The build goes on.")
        return {"step": data["step"], "stream": "system", "text": notice}

    def handle(self, owner_id: int, item: _Item, add: Add) -> None:
        if item.kind != "step":
            super().handle(owner_id, item, add)
            return
        steps = self._steps.get(owner_id)
        if steps is None:
            steps = self._steps[owner_id] = {
                r["index"]: dict(r) for r in db.session.execute(
                    select(*(Step.__table__.c[c] for c in STEP_COLUMNS)).where(Step.build_id == owner_id)
                ).mappings()
            }
        raw = item.data
        row = steps.get(raw["index"])
        if row is None:
            row = steps[raw["index"]] = {"build_id": owner_id, "index": raw["index"], "miss_reason": None}
            self._unwritten[(owner_id, raw["index"])] = True
        else:
            self._unwritten.setdefault((owner_id, raw["index"]), False)
        row.update(stage=raw["stage"], instruction=raw["instruction"], status=raw["status"], cached=raw["cached"],
                   error=raw.get("error"), started_at=raw.get("started_at"), finished_at=raw.get("finished_at"))
        if "miss_reason" in raw:
            row["miss_reason"] = json.dumps(raw["miss_reason"]) if raw["miss_reason"] is not None else None
        add(owner_id, "step", {"step": step_row_to_dict(row)})

    def plain(self, item: _Item) -> bool:
        # A step of a build whose steps were read once (the first step message of a build is not plain),
        # and a status that sets one other than queued (a queued build's snapshot counts the queue ahead).
        known = item.owner_id in self._steps and item.owner_id in self._states
        if item.kind == "status":
            return known and item.data.get("status", BuildStatus.QUEUED) != BuildStatus.QUEUED
        return (item.kind == "step" and known) or super().plain(item)

    def settle(self) -> None:
        """Write the steps changed since the last call: one statement per kind, each step once."""
        if not self._unwritten:
            return
        new = [self._steps[b][i] for (b, i), is_new in self._unwritten.items() if is_new]
        changed = [{"b_id": b, "b_index": i, **self._steps[b][i]}
                   for (b, i), is_new in self._unwritten.items() if not is_new]
        self._unwritten.clear()
        table = Step.__table__
        if new:
            self.execute_many("new steps", table.insert(), new)
        if changed:
            self.execute_many(
                "changed steps",
                table.update().where(table.c.build_id == bindparam("b_id"), table.c.index == bindparam("b_index")),
                changed)

    def drop(self, owner_id: int) -> None:
        super().drop(owner_id)
        self._steps.pop(owner_id, None)
        for key in [k for k in self._unwritten if k[0] == owner_id]:
            del self._unwritten[key]
