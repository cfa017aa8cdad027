"""``Transit``: batches on their way between the tasks of a job, so a source can wait until the
graph is quiet.

Used by jobs that run record at a time (SAGE's semantics, ``Semantics.record_at_a_time``):
each source record must go through the whole graph before the next one is read, so what a later
operator writes through a service for record i is seen by an earlier one for record i+1. And by
jobs with a feedback loop (``from_future``): once their sources are drained, the loop has died
out when nothing is in transit, and the tasks it feeds are told so (``on_quiet``)::

    source task ── put batch ──▶ sent()      task ── takes batch, runs it, puts its outputs
         │                                     │     (sent() for each) ── done()
         └── wait_quiet(): until every sent batch is done, or the job stops

A batch's outputs are counted before the batch itself is done, so the count never touches 0
while records are still inside the graph.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Transit"]


class Transit:
    """How many batches are queued or being processed between tasks."""

    def __init__(
        self, stop_event: threading.Event, on_quiet: Callable[[], None] | None = None
    ) -> None:
        # Invariants: _pending changes under _cond; waiters are woken when it reaches 0, and
        # on_quiet (which must not wait) is called after, outside the lock.
        self._cond = threading.Condition()
        self._pending = 0
        self._stop_event = stop_event
        self.on_quiet = on_quiet

    def sent(self, batches: int = 1) -> None:
        with self._cond:
            self._pending += batches

    def done(self) -> None:
        with self._cond:
            self._pending -= 1
            quiet = self._pending <= 0
            if quiet:
                self._cond.notify_all()
        if quiet and self.on_quiet is not None:
            self.on_quiet()

    def wake(self) -> None:
        """Wake waiters (the job is stopping)."""
        with self._cond:
            self._cond.notify_all()

    def wait_quiet(self, tick: float = 0.1) -> bool:
        """Wait until no batch is in transit; False if the job stopped first."""
        stop = self._stop_event
        with self._cond:
            while self._pending > 0:
                if stop.is_set():
                    return False
                self._cond.wait(tick)
        return not stop.is_set()

    @property
    def pending(self) -> int:
        return self._pending
