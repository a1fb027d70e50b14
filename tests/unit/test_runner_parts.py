"""Pieces of the build runner that need no engine: the deadline keeper and the handover of a build."""

from __future__ import annotations

import threading
import time

from webapp.builds.service import Handover, _Active, _Deadlines


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
    deadlines.add(now + 0.3, late)
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
