"""Clocks the deadline scheduler reads: the real monotonic clock, or ``MockClock`` for tests.

A ``Clock`` says what time it is (``now()``) and how long, in real seconds, to wait for a span
of its own time (``wait_for``; None: until woken). The runtime reads the real one; a test hands
a ``MockClock`` to a ``DeadlineScheduler`` (and so to the futures and retries it times) and
moves time with ``jump()``, as trio's ``MockClock`` does: deadline and backoff tests then run
without sleeping and cannot be late on a loaded machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["MONOTONIC", "Clock", "MockClock", "MonotonicClock"]


class Clock(Protocol):
    def now(self) -> float:
        """The current time, in seconds."""

    def wait_for(self, seconds: float) -> float | None:
        """Real seconds to wait for ``seconds`` of this clock to pass (None: until woken)."""

    def on_jump(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` whenever time moves by other means than passing (mock clocks)."""


class MonotonicClock:
    """``time.monotonic``: the clock the runtime runs on."""

    now = staticmethod(time.monotonic)

    @staticmethod
    def wait_for(seconds: float) -> float:
        return seconds

    @staticmethod
    def on_jump(wake: Callable[[], None]) -> None:
        pass  # real time only passes

    def __repr__(self) -> str:
        return "<MonotonicClock>"


#: The runtime's clock.
MONOTONIC = MonotonicClock()


class MockClock:
    """A clock that stands still until ``jump(seconds)`` moves it (thread-safe).

    It starts at ``start`` (by default the real monotonic time, so deadlines computed from it
    look like real ones). Schedulers that read it are woken at each jump.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.monotonic() if start is None else start
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._now

    def wait_for(self, seconds: float) -> None:
        return None  # time passes only by jump(), which wakes the waiter

    def on_jump(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._wakers.append(wake)

    def jump(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every scheduler reading this clock."""
        if seconds < 0:
            raise ValueError(f"time only moves forward, got jump({seconds!r})")
        with self._lock:
            self._now += seconds
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def __repr__(self) -> str:
        return f"<MockClock at {self._now:.3f}>"
