"""The run journal: container log lines and status changes (see webapp/journal.py)."""

from __future__ import annotations

from typing import Any

from webapp.journal import Journal, truncation_notice
from webapp.models import Run, RunEvent
from webapp.runs.present import run_to_dict


class RunJournal(Journal):
    owner_model = Run
    event_model = RunEvent
    owner_key = "run_id"
    what = "run"

    def log(self, run_id: int, stream: str, text: str, when: str | None) -> None:
        self._put_log(run_id, {"stream": stream, "text": text, "time": when})

    def snapshot(self, owner: Any) -> dict[str, Any]:
        return run_to_dict(owner)

    def end_message(self, owner: Any) -> dict[str, Any]:
        return {"status": owner.status, "exit_code": owner.exit_code}

    def truncation(self, data: dict[str, Any]) -> dict[str, Any]:
        notice = truncation_notice(self._log_cap, "The container goes on.")
        return {"stream": "stderr", "text": notice, "time": data.get("time")}
