"""webapp.streaming.follow over a real Hub, with a list standing in for the database: the gapless order
(subscribe, replay, live), a live backlog that overflows, a lost batch, the end, a quiet second, a viewer
whose access ends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from webapp import broadcast, streaming
from webapp.broadcast import Hub
from webapp.streaming import IDLE, Revoked, follow

KEY = 7


class Store:
    """The committed messages of one owner, and the hub they are published to after each commit."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.rows: list[dict[str, Any]] = []
        self.replays = 0

    def commit(self, *types: str, publish: bool = True) -> list[dict[str, Any]]:
        batch = [{"type": kind, "seq": len(self.rows) + i + 1} for i, kind in enumerate(types)]
        self.rows.extend(batch)
        if publish:
            self.hub.publish(KEY, batch)
        return batch

    def replay(self, after: int, limit: int) -> list[dict[str, Any]]:
        self.replays += 1
        return [m for m in self.rows if m["seq"] > after][:limit]


def seqs(messages: list[dict[str, Any] | None]) -> list[int]:
    return [m["seq"] for m in messages if m is not None]


def test_what_was_stored_then_what_comes_live_each_once_until_the_end() -> None:
    store = Store(Hub())
    store.commit("status", "log")
    messages = follow(store.hub, KEY, after=0, replay=store.replay, over=lambda: True)
    got = [next(messages), next(messages)]  # the replay; the follower is subscribed from here on
    store.commit("log", "step")
    store.commit("status", "end")
    got += list(messages)
    assert seqs(got) == [1, 2, 3, 4, 5, 6] and got[-1]["type"] == "end"
    assert store.hub._subs == {}  # unsubscribed once it ended


def test_a_batch_both_replayed_and_published_is_sent_once() -> None:
    store = Store(Hub())

    def replay(after: int, limit: int) -> list[dict[str, Any]]:
        if not store.rows:  # committed and published after the follower subscribed, before its read
            store.commit("status")
        return store.replay(after, limit)

    messages = follow(store.hub, KEY, after=0, replay=replay, over=lambda: True)
    assert seqs([next(messages)]) == [1]
    store.commit("log", "end")
    assert seqs(list(messages)) == [2, 3]


def test_after_resumes_where_the_viewer_was() -> None:
    store = Store(Hub())
    store.commit("status", "log", "log", "end")
    assert seqs(list(follow(store.hub, KEY, after=2, replay=store.replay, over=lambda: True))) == [3, 4]


def test_a_backlog_past_its_cap_is_dropped_and_caught_up_from_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broadcast, "MAX_BACKLOG", 10)
    store = Store(Hub())
    messages = follow(store.hub, KEY, after=0, replay=store.replay, over=lambda: True)
    store.commit("status")
    assert seqs([next(messages)]) == [1]
    for _ in range(6):  # 12 messages while the viewer reads none: the last batches are not queued
        store.commit("log", "log")
    store.commit("end")
    replays = store.replays
    assert seqs(list(messages)) == list(range(2, 15))
    assert store.replays > replays


def test_a_lost_batch_is_read_back_from_the_store() -> None:
    store = Store(Hub())
    messages = follow(store.hub, KEY, after=0, replay=store.replay, over=lambda: True)
    store.commit("status")
    assert seqs([next(messages)]) == [1]
    store.commit("log", "log", publish=False)  # committed, never published: the next batch shows a gap
    store.commit("log", "end")
    assert seqs(list(messages)) == [2, 3, 4, 5]


def test_an_end_that_is_not_over_goes_on_and_quiet_seconds_say_idle() -> None:
    store = Store(Hub())
    done = threading.Event()
    messages = follow(store.hub, KEY, after=0, replay=store.replay, over=done.is_set)
    store.commit("status", "end")  # a container that stopped, and may be started again
    assert seqs([next(messages), next(messages)]) == [1, 2]
    assert next(messages) is IDLE  # a second with nothing
    store.commit("status", "end")
    done.set()
    assert seqs(list(messages)) == [3, 4]


def test_a_viewer_no_longer_allowed_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "RECHECK_S", 0.0)
    store = Store(Hub())
    store.commit("status")
    messages = follow(store.hub, KEY, after=0, replay=store.replay, over=lambda: False, allowed=lambda: False)
    assert seqs([next(messages)]) == [1]
    with pytest.raises(Revoked):
        next(messages)
    assert store.hub._subs == {}
