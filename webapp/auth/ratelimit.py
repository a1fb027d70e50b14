"""Failed sign-ins counted per address and per user name, in memory (Layerdeck is one process).

A key with too many failures in the window is refused before its password is even checked, so guessing
stays slow whichever of the two an attacker varies. A successful sign-in clears the name's count."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, key: str) -> int | None:
        """Seconds until this key may try again, or None if it may now."""
        with self._lock:
            now = self._clock()
            times = self._recent(key, now)
            if len(times) < self.limit:
                return None
            return max(1, math.ceil(self.window_s - (now - times[0])))

    def fail(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class LoginLimits:
    """Per address: 20 failures in 15 minutes. Per user name: 5 failures in 15 minutes."""

    def __init__(self, per_address: int = 20, per_user: int = 5, window_s: float = 900.0) -> None:
        self.addresses = FailureLimiter(per_address, window_s)
        self.users = FailureLimiter(per_user, window_s)

    def retry_after(self, address: str, name: str) -> int | None:
        waits = [w for w in (self.addresses.retry_after(address), self.users.retry_after(name)) if w]
        return max(waits) if waits else None

    def fail(self, address: str, name: str) -> None:
        self.addresses.fail(address)
        self.users.fail(name)

    def succeeded(self, name: str) -> None:
        self.users.clear(name)
