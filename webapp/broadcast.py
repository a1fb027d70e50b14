"""One build's messages -> many live viewers.

Messages are published only after the journal has committed them, so anything a viewer receives live is
also in the database: a viewer subscribes first, then replays from the database, then drains its queue,
dropping what it already sent (by seq). That order leaves no gap and no repeat.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from typing import Any

# A viewer that falls this far behind is cut loose and catches up from the database instead, so a stalled
# browser cannot make the server hold an unbounded backlog for it.
MAX_BACKLOG = 5000


class Subscription:
    """One viewer's live messages, in the batches the journal committed them in: one wake-up per batch."""

    def __init__(self, build_id: int) -> None:
        self.build_id = build_id
        self._queue: queue.SimpleQueue[list[dict[str, Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._held = 0  # messages in the queue
        self.overflowed = False

    def put(self, messages: list[dict[str, Any]]) -> None:
        with self._lock:
            if self._held + len(messages) > MAX_BACKLOG:
                self.overflowed = True
                return
            self._held += len(messages)
        self._queue.put(messages)

    def get(self, timeout: float) -> list[dict[str, Any]] | None:
        """The next batch, oldest first; None when none came within `timeout` seconds."""
        try:
            batch = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._held -= len(batch)
        return batch

    def drain_overflow(self) -> None:
        """Forget the backlog after an overflow; the caller replays from the database."""
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                self._held -= len(batch)
        self.overflowed = False


class Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[int, set[Subscription]] = defaultdict(set)

    def subscribe(self, build_id: int) -> Subscription:
        sub = Subscription(build_id)
        with self._lock:
            self._subs[build_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.build_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.build_id]

    def publish(self, build_id: int, messages: list[dict[str, Any]]) -> None:
        with self._lock:
            subs = list(self._subs.get(build_id, ()))
        for sub in subs:
            sub.put(messages)
