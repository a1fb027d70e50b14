"""Pieces of the build runner that need no engine: the deadline keeper, the handover of a build, and the
engine build started while an upload arrives."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from webapp.builds.service import EarlyStart, Handover, StoredContext, UploadSizes, _Active, _Deadlines
from webapp.engine import BuildRequest, EngineError


def wait_until(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.01)
    return False


def test_deadlines_stop_running_builds_in_time_order_and_leave_finished_ones_alone() -> None:
    deadlines = _Deadlines()
    late, early, finished = _Active(), _Active(), _Active()
    finished.finish()
    now = time.monotonic()
    deadlines.add(now + 1.0, late)  # far enough after `early` that no stall of the test's thread passes it
    deadlines.add(now + 0.05, early)
    deadlines.add(now + 0.01, finished)
    assert wait_until(lambda: early.reason == "timed_out")
    assert late.reason is None  # not yet
    assert wait_until(lambda: late.reason == "timed_out")
    assert finished.reason is None
    assert wait_until(lambda: deadlines._thread is None)  # nothing left to watch: its thread ends


def test_a_finished_build_is_forgotten_at_once() -> None:
    deadlines = _Deadlines()
    active = _Active()
    deadlines.add(time.monotonic() + 3600, active)
    thread = deadlines._thread
    assert thread is not None and thread.is_alive()
    active.finish()
    deadlines.done()
    thread.join(timeout=5)
    assert not thread.is_alive() and active.reason is None


def test_a_handover_tells_the_worker_whether_the_build_was_recorded() -> None:
    kept, dropped = Handover(), Handover()
    answers: dict[str, bool] = {}
    waiters = [threading.Thread(target=lambda h=h, k=k: answers.__setitem__(k, h.wait()))
               for k, h in (("kept", kept), ("dropped", dropped))]
    for waiter in waiters:
        waiter.start()
    kept.recorded()
    dropped.abandon()
    for waiter in waiters:
        waiter.join(timeout=5)
    assert answers == {"kept": True, "dropped": False}


class FakeStream:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeEngine:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.stream = FakeStream()
        self.cancelled: list[str] = []

    def start_build(self, request: BuildRequest) -> FakeStream:
        if self.refuse:
            raise EngineError("no such image")
        return self.stream

    def cancel_build(self, build_id: str) -> None:
        self.cancelled.append(build_id)


class FakeRunner:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.early_slots = threading.Semaphore(1)


EARLY = BuildRequest(context=Path("/data/contexts/1.tar"), builder="buildkit", build_args={"V": "1"},
                     labels={"layerdeck.instance": "x"}, build_id="layerdeck-x-early-1")


def slot_free(runner: FakeRunner) -> bool:
    if runner.early_slots.acquire(blocking=False):
        runner.early_slots.release()
        return True
    return False


def test_the_build_recorded_for_the_same_request_takes_the_early_engine_build_over_once() -> None:
    engine = FakeEngine()
    runner = FakeRunner(engine)
    assert runner.early_slots.acquire(blocking=False)  # what _begin_early takes
    early = EarlyStart(runner, EARLY, "digest")  # type: ignore[arg-type]
    recorded = dataclasses.replace(EARLY, tag="app:1", build_id="layerdeck-x-7-abcd")  # its own tag and id
    assert early.take(recorded)
    assert early.stream() is engine.stream
    assert not early.take(recorded)  # one build only
    early.abandon()  # too late: the build that took it owns it now
    assert slot_free(runner)  # the slot went with it: it counts as that build's now
    time.sleep(0.05)
    assert engine.cancelled == [] and not engine.stream.closed


def test_an_early_build_asked_for_something_else_is_stopped_and_frees_its_slot() -> None:
    engine = FakeEngine()
    runner = FakeRunner(engine)
    assert runner.early_slots.acquire(blocking=False)
    early = EarlyStart(runner, EARLY, "digest")  # type: ignore[arg-type]
    assert not early.take(dataclasses.replace(EARLY, build_args={"V": "2"}))
    assert not early.take(dataclasses.replace(EARLY, context=Path("/data/contexts/2.tar")))
    early.abandon()
    assert wait_until(lambda: engine.stream.closed)
    assert engine.cancelled == ["layerdeck-x-early-1"]
    assert wait_until(lambda: slot_free(runner))
    assert not early.take(EARLY)  # abandoned for good


def test_an_early_build_the_engine_refused_frees_its_slot_without_a_cancel() -> None:
    engine = FakeEngine(refuse=True)
    runner = FakeRunner(engine)
    assert runner.early_slots.acquire(blocking=False)
    early = EarlyStart(runner, EARLY, "digest")  # type: ignore[arg-type]
    early.abandon()
    assert wait_until(lambda: slot_free(runner))
    assert engine.cancelled == []


def stored(name: str) -> StoredContext:
    return StoredContext("tar", 1, 10, name, "FROM scratch\n", existing=f"contexts/{name}.tar")


def test_upload_sizes_keep_the_latest_context_of_each_size_and_path() -> None:
    sizes = UploadSizes(keep=2)
    sizes.remember(100, "Dockerfile", stored("a"))
    sizes.remember(100, "Dockerfile", stored("b"))  # the same size again: the latest wins
    sizes.remember(100, "docker/Dockerfile", stored("c"))  # another Dockerfile path packs differently
    got: Any = sizes.get(100, "Dockerfile")
    assert got.digest == "b"
    assert sizes.get(100, "docker/Dockerfile").digest == "c"  # type: ignore[union-attr]
    assert sizes.get(200, "Dockerfile") is None
    sizes.remember(300, "Dockerfile", stored("d"))  # keeps two: the least recently remembered goes
    assert sizes.get(100, "Dockerfile") is None
    assert sizes.get(300, "Dockerfile").digest == "d"  # type: ignore[union-attr]
