"""One thread that fails async calls whose deadline passed.

::

    ServiceManager.call_async ──add(future, deadline)──▶ DeadlineScheduler
    ServiceFuture.deliver ──────discard(future)────────▶ (drops it from its bucket)
    sage_nb/deadlines/<env> thread ──at each deadline──▶ future.expire()

Futures are kept in buckets of ``resolution`` seconds, so completing a call removes it in O(1)
and nothing accumulates for calls that finished in time: a bucket emptied by completions is
dropped at once, not when its deadline comes (at 40k calls/s with a 30 s timeout, empty buckets
kept until then held tens of MB for half a minute after a burst). The thread sleeps on a
condition until the earliest bucket is due, or until an earlier one is added; it never polls,
and it ends after a second with nothing to watch (the next async call starts it again).
"""

from __future__ import annotations

import heapq
import logging
import threading
from typing import Protocol

from ..clock import MONOTONIC, Clock
from ..threads import make_thread

__all__ = ["DeadlineScheduler", "Expirable"]

log = logging.getLogger(__name__)


class Expirable(Protocol):
    def expire(self) -> None: ...

    def abandon(self, reason: str) -> None: ...


class DeadlineScheduler:
    """Calls ``expire()`` on each registered object once its deadline has passed.

    Parameters
    ----------
    name:
        Used in the thread's name, ``sage_nb/deadlines/<name>``.
    resolution:
        Deadlines are rounded up to a multiple of this many seconds.
    clock:
        What time it is (``runtime/clock.py``): the real monotonic clock, or a ``MockClock``
        in tests, which moves only when the test says so.
    """

    def __init__(
        self,
        name: str,
        resolution: float = 0.005,
        linger: float = 1.0,
        *,
        clock: Clock = MONOTONIC,
    ) -> None:
        self.name = name
        self.clock = clock
        self._resolution = resolution
        self._linger = linger
        # Invariants: _buckets and _ticks change only under _cond, except that add() may put an
        # item into a bucket it found without the lock and then checks the bucket is still
        # registered (see discard); _queued is the set of ticks in _ticks, each there once, and
        # holds every key of _buckets (a tick whose bucket was dropped stays until it is due,
        # so a bucket made again for it is not pushed twice); _thread is the running
        # thread or None (it exits after ``linger`` seconds with nothing registered and is
        # started again by the next add); _closed never goes back.
        self._cond = threading.Condition(threading.Lock())
        self._buckets: dict[int, set[Expirable]] = {}
        self._ticks: list[int] = []
        self._queued: set[int] = set()
        self._closed = False
        self._thread: threading.Thread | None = None
        clock.on_jump(self._wake)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def add(self, item: Expirable, deadline: float) -> int:
        """Register ``item`` to expire at ``deadline`` (``time.monotonic()``); return its tick."""
        tick = int(deadline / self._resolution) + 1
        bucket = self._buckets.get(tick)
        # Fast path, no lock: the bucket exists and is not due yet, so the thread (alive while
        # any bucket exists) cannot be popping it now.
        if bucket is not None and deadline > self.clock.now() + 2 * self._resolution:
            bucket.add(item)
            if self._buckets.get(tick) is bucket:
                return tick
            # discard() dropped the bucket as empty meanwhile: register the item again below.
        with self._cond:
            if self._closed:
                raise RuntimeError(f"deadline scheduler {self.name!r} is closed")
            bucket = self._buckets.get(tick)
            if bucket is None:
                bucket = self._buckets[tick] = set()
                if tick not in self._queued:
                    self._queued.add(tick)
                    heapq.heappush(self._ticks, tick)
                    if self._ticks[0] == tick:
                        self._cond.notify()
            bucket.add(item)
            if self._thread is None:
                self._thread = make_thread(f"sage_nb/deadlines/{self.name}", self._run)
                self._thread.start()
        return tick

    def discard(self, item: Expirable, tick: int) -> None:
        """Forget ``item`` (it completed in time). Safe from any thread; takes the lock only
        to drop a bucket it emptied."""
        bucket = self._buckets.get(tick)
        if bucket is None:
            return
        bucket.discard(item)
        if bucket:
            return
        with self._cond:
            if self._buckets.get(tick) is bucket and not bucket:
                del self._buckets[tick]
                # add() may have put an item in between its lookup and our delete: it then
                # finds the bucket gone and registers again, unless we put the bucket back here.
                if bucket:
                    self._buckets[tick] = bucket

    def pending(self) -> int:
        """How many registered items have neither completed nor expired."""
        with self._cond:
            return sum(len(b) for b in self._buckets.values())

    def close(
        self, timeout: float | None = 2.0, reason: str = "the environment was closed"
    ) -> None:
        """Stop the thread; every item still registered is abandoned with ``reason``."""
        with self._cond:
            self._closed = True
            left = [item for bucket in self._buckets.values() for item in bucket]
            self._buckets.clear()
            self._ticks.clear()
            self._queued.clear()
            self._cond.notify()
            thread = self._thread
        for item in left:
            item.abandon(reason)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        res = self._resolution
        cond = self._cond
        clock = self.clock
        with cond:
            while not self._closed:
                if not self._ticks:
                    if not cond.wait(self._linger) and not self._ticks:
                        self._thread = None  # idle: a later add() starts a new thread
                        return
                    continue
                due = self._ticks[0] * res - clock.now()
                if due > 0:
                    cond.wait(clock.wait_for(due))
                    continue
                tick = heapq.heappop(self._ticks)
                self._queued.discard(tick)
                expired = list(self._buckets.pop(tick, ()))
                if not expired:
                    continue
                cond.release()
                try:
                    for item in expired:
                        try:
                            item.expire()
                        except Exception:  # pragma: no cover - expire() does not raise
                            log.exception("expiring %r failed", item)
                finally:
                    cond.acquire()
