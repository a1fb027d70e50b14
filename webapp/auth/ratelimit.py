"""Sign-in attempts counted per address and per user name, in memory (Layerdeck is one process).

An attempt is counted *before* its password is checked (and forgiven if it succeeds), under one lock, so
a burst of parallel requests cannot all slip in while the first ones are still hashing. A key over its
limit is refused without a password check at all. IPv6 addresses count per /64 (one host usually holds
the whole /64), and names count as the account they would sign in to."""

from __future__ import annotations

import contextlib
import ipaddress
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class FailureLimiter:
    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._attempts.setdefault(key, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def _wait(self, times: deque[float], now: float) -> int:
        return max(1, math.ceil(self.window_s - (now - times[0])))

    def reserve(self, key: str) -> tuple[int | None, float | None]:
        """Count one attempt now: (None, its stamp) if the key is under its limit, else (seconds to wait, None)."""
        with self._lock:
            now = self._clock()
            times = self._recent(key, now)
            if len(times) >= self.limit:
                return self._wait(times, now), None
            times.append(now)
            return None, now

    def forgive(self, key: str, stamp: float) -> None:
        """An attempt that succeeded does not count."""
        with self._lock:
            times = self._attempts.get(key)
            if times is not None:
                with contextlib.suppress(ValueError):
                    times.remove(stamp)
                if not times:
                    del self._attempts[key]


def address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class Attempt:
    """A sign-in attempt that was let through: forgive it if the password was right."""

    address: tuple[str, float]
    name: tuple[str, float]


class LoginLimits:
    """Per address: 20 attempts that failed in 15 minutes. Per account name: 5."""

    def __init__(self, per_address: int = 20, per_user: int = 5, window_s: float = 900.0) -> None:
        self.addresses = FailureLimiter(per_address, window_s)
        self.users = FailureLimiter(per_user, window_s)

    def begin(self, address: str, name: str) -> tuple[int | None, Attempt | None]:
        """(seconds to wait, None) when either key is over its limit, else (None, the counted attempt)."""
        addr = address_key(address)
        wait_a, stamp_a = self.addresses.reserve(addr)
        if wait_a is not None:
            return wait_a, None
        wait_u, stamp_u = self.users.reserve(name)
        if wait_u is not None:
            assert stamp_a is not None
            self.addresses.forgive(addr, stamp_a)  # refused unchecked: only the name's count holds it back
            return wait_u, None
        assert stamp_a is not None and stamp_u is not None
        return None, Attempt((addr, stamp_a), (name, stamp_u))

    def succeeded(self, attempt: Attempt) -> None:
        self.addresses.forgive(*attempt.address)
        self.users.forgive(*attempt.name)
