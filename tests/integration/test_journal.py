"""The build journal on the real database: one batch of messages becomes rows and messages that agree."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.journal import _Item
from webapp.models import Build, BuildEvent, Step


def new_build(app: Flask) -> int:
    with app.app_context():
        build = Build(status="running", builder="buildkit", context_file="contexts/x.tar", context_source="tar",
                      created_at=1.0, started_at=2.0)
        db.session.add(build)
        db.session.commit()
        return build.id


def step(index: int, status: str, cached: bool | None, **more: Any) -> dict[str, Any]:
    return {"index": index, "stage": "0", "instruction": f"RUN echo {index}", "status": status, "cached": cached,
            "started_at": 10.0, "finished_at": 10.5 if status != "running" else None, "error": None, **more}


def test_one_batch_writes_each_step_once_and_its_status_counts_them(make_app: Any) -> None:
    app = make_app(start=False)
    journal = app.extensions["layerdeck.journal"]
    build_id = new_build(app)
    items = [
        _Item(build_id, "step", step(1, "running", None)),
        _Item(build_id, "log", {"step": 1, "stream": "stdout", "text": "hello"}),
        _Item(build_id, "step", step(1, "cached", True)),
        _Item(build_id, "step", step(2, "running", None)),
        _Item(build_id, "step", step(2, "built", False, miss_reason={"kind": "files_changed", "paths": ["a"]})),
        _Item(build_id, "status", {"status": "succeeded", "finished_at": time.time()}, end=True),
    ]
    with app.app_context():
        journal._write(items)  # as the journal thread does with whatever has arrived since its last commit
    with app.app_context():
        rows = {s.index: s for s in db.session.scalars(select(Step).where(Step.build_id == build_id))}
        events = [e.message() for e in db.session.scalars(
            select(BuildEvent).where(BuildEvent.build_id == build_id).order_by(BuildEvent.seq))]
        build = db.session.get(Build, build_id)
        assert build is not None
        assert (build.status, build.log_bytes) == ("succeeded", len("hello") + 1)
    assert sorted(rows) == [1, 2]
    assert (rows[1].status, rows[1].cached, rows[1].miss_reason) == ("cached", True, None)
    assert (rows[2].status, rows[2].cached, rows[2].reason()) == ("built", False, {"kind": "files_changed",
                                                                                    "paths": ["a"]})
    # Every message is there in order; the status sent with them already counts the steps written with it.
    assert [e["type"] for e in events] == ["step", "log", "step", "step", "step", "status", "end"]
    assert [e["seq"] for e in events] == list(range(1, 8))
    status = events[5]["build"]
    assert status["cache"]["hits"] == 1 and status["cache"]["total"] == 2
    assert status["log"] == {"bytes": 6, "truncated": False}
    assert events[4]["step"]["miss_reason"] == {"kind": "files_changed", "paths": ["a"]}
    assert events[4]["step"]["duration_s"] == 0.5
    # The messages a live viewer got are the ones stored, and the API shows the same steps.
    client = app.test_client()
    assert client.get(f"/api/v1/builds/{build_id}").get_json()["steps"] == [events[2]["step"], events[4]["step"]]


def test_a_step_reported_again_in_a_later_batch_updates_its_row(make_app: Any) -> None:
    app = make_app(start=False)
    journal = app.extensions["layerdeck.journal"]
    build_id = new_build(app)
    journal.step(build_id, step(1, "running", None))
    journal.sync()
    journal.step(build_id, step(1, "failed", False, error="exit code 1"))
    journal.sync()
    with app.app_context():
        rows = list(db.session.scalars(select(Step).where(Step.build_id == build_id)))
    assert [(r.status, r.error) for r in rows] == [("failed", "exit code 1")]


def test_lines_and_steps_of_a_known_build_go_through_the_journals_own_connection(make_app: Any) -> None:
    app = make_app(start=False)
    journal = app.extensions["layerdeck.journal"]
    build_id = new_build(app)
    first = [_Item(build_id, "step", step(1, "running", None)), _Item(build_id, "log", {"step": 1, "stream": "stdout",
                                                                                         "text": "one"})]
    assert not any(journal.plain(item) for item in first)  # the build's state and steps are not read yet
    with app.app_context():
        journal._write(first)
    later = [_Item(build_id, "log", {"step": 1, "stream": "stdout", "text": "two"}),
             _Item(build_id, "step", step(1, "built", False)), _Item(build_id, "step", step(2, "running", None))]
    assert all(journal.plain(item) for item in later)
    assert not journal.plain(_Item(build_id, "status", {})) and not journal.plain(_Item(build_id, "status", {},
                                                                                         end=True))
    assert not journal.plain(_Item(build_id + 1, "log", {"step": None, "stream": "stdout", "text": "x"}))
    plain = journal._plain_connection()
    assert plain is not None
    live = app.extensions["layerdeck.hub"].subscribe(build_id)
    journal._write(later, plain)  # no app context: no session is involved
    assert not plain.in_transaction
    assert [m["seq"] for m in live.get(timeout=1) or []] == [3, 4, 5]
    with app.app_context():
        rows = {s.index: s.status for s in db.session.scalars(select(Step).where(Step.build_id == build_id))}
        events = [e.message() for e in db.session.scalars(
            select(BuildEvent).where(BuildEvent.build_id == build_id).order_by(BuildEvent.seq))]
        build = db.session.get(Build, build_id)
        assert build is not None and build.log_bytes == len("one\n") + len("two\n")
    assert rows == {1: "built", 2: "running"}
    assert [(e["seq"], e["type"]) for e in events] == [(1, "step"), (2, "log"), (3, "log"), (4, "step"), (5, "step")]


def test_a_plain_batch_that_fails_leaves_nothing_and_publishes_nothing(make_app: Any) -> None:
    app = make_app(start=False)
    journal = app.extensions["layerdeck.journal"]
    build_id = new_build(app)
    with app.app_context():
        journal._write([_Item(build_id, "step", step(1, "running", None))])
    plain = journal._plain_connection()
    live = app.extensions["layerdeck.hub"].subscribe(build_id)
    # The step's update is written, then the line's event breaks a constraint (its seq is taken already).
    journal._states[build_id].seq = 0
    batch = [_Item(build_id, "step", step(1, "built", False)),
             _Item(build_id, "log", {"step": 1, "stream": "stdout", "text": "x"})]
    assert all(journal.plain(item) for item in batch)
    with pytest.raises(sqlite3.IntegrityError):
        journal._write(batch, plain)
    assert not plain.in_transaction and live.get(timeout=0.1) is None
    with app.app_context():
        assert [s.status for s in db.session.scalars(select(Step).where(Step.build_id == build_id))] == ["running"]
        assert db.session.scalar(select(func.count()).select_from(BuildEvent)
                                 .where(BuildEvent.build_id == build_id)) == 1


def test_finish_sends_the_last_status_and_the_end_as_one_batch(make_app: Any) -> None:
    app = make_app(start=False)
    journal = app.extensions["layerdeck.journal"]
    build_id = new_build(app)
    live = app.extensions["layerdeck.hub"].subscribe(build_id)
    journal.finish(build_id, status="failed", finished_at=time.time(), error="it broke")
    journal.sync()
    batch = live.get(timeout=5)
    assert batch is not None and [m["type"] for m in batch] == ["status", "end"]
    assert batch[0]["build"]["status"] == "failed" and batch[1] == {"type": "end", "seq": 2, "status": "failed"}
    assert live.get(timeout=0.1) is None


def test_a_plain_last_status_says_what_the_api_says(make_app: Any) -> None:
    app = make_app(start=False)
    journal = app.extensions["layerdeck.journal"]
    build_id = new_build(app)
    with app.app_context():
        build = db.session.get(Build, build_id)
        assert build is not None
        build.no_cache, build.tag = True, "demo/app:1"  # a boolean SQLite hands back as 1
        db.session.commit()
        journal._write([_Item(build_id, "step", step(1, "running", None))])
    last = _Item(build_id, "status", {"status": "succeeded", "finished_at": 12.5, "image_id": "sha256:abc",
                                      "saved_s": 1.5}, end=True)
    batch = [_Item(build_id, "step", step(1, "cached", True)),
             _Item(build_id, "log", {"step": 1, "stream": "stdout", "text": "done"}), last]
    assert all(journal.plain(item) for item in batch)
    assert not journal.plain(_Item(build_id, "status", {}))  # the row as it is: may be queued
    assert not journal.plain(_Item(build_id, "status", {"status": "queued"}))
    live = app.extensions["layerdeck.hub"].subscribe(build_id)
    plain = journal._plain_connection()
    assert plain is not None
    with app.app_context():
        journal._write(batch, plain)
    messages = live.get(timeout=1)
    assert messages is not None and [m["type"] for m in messages] == ["step", "log", "status", "end"]
    status = messages[2]["build"]
    api = app.test_client().get(f"/api/v1/builds/{build_id}").get_json()
    assert status == {k: v for k, v in api.items() if k not in ("steps", "advice")}
    assert status["options"]["no_cache"] is True and status["status"] == "succeeded"
    assert status["log"] == {"bytes": len("done\n"), "truncated": False} and status["cache"]["hits"] == 1
    assert messages[3] == {"type": "end", "seq": 5, "status": "succeeded"}
    assert build_id not in journal._states  # ended: forgotten


def test_what_is_emitted_together_is_written_and_published_as_one_batch(make_app: Any) -> None:
    app = make_app(start=False)
    journal = app.extensions["layerdeck.journal"]
    build_id = new_build(app)
    live = app.extensions["layerdeck.hub"].subscribe(build_id)
    with journal.together():
        journal.log(build_id, None, "system", "Successfully tagged demo/app:1")
        journal.finish(build_id, status="succeeded", finished_at=time.time())
        with pytest.raises(RuntimeError):
            journal.sync()  # would wait for what is only sent when the block ends
        with pytest.raises(RuntimeError), journal.together():
            pass
        assert live.get(timeout=0.2) is None  # nothing sent before the block ends
    journal.sync()
    batch = live.get(timeout=5)
    assert batch is not None and [(m["seq"], m["type"]) for m in batch] == [(1, "log"), (2, "status"), (3, "end")]
    journal.log(build_id, None, "system", "after")  # outside the block: sent as it comes again
    journal.sync()
    after = live.get(timeout=5)
    assert after is not None and [m["text"] for m in after] == ["after"]
