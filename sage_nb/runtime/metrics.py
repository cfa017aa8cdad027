"""Counters and latency samples that runtime objects expose through ``statistics()``.

Writers are the runtime's own threads, each writing only its own ``LatencyWindow`` or counters;
readers (``statistics()``, widgets) take snapshots. Nothing here locks on the hot path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

__all__ = ["ActivitySignal", "LatencyWindow", "percentile", "percentiles"]


class LatencyWindow:
    """The most recent ``size`` latencies (seconds) written by one thread, plus a total count.

    Writing is two stores and an increment; percentiles are computed when read.
    """

    __slots__ = ("_mask", "_samples", "count")

    def __init__(self, size: int = 1024) -> None:
        if size & (size - 1):
            raise ValueError(f"size must be a power of two, got {size}")
        self._samples = [0.0] * size
        self._mask = size - 1
        self.count = 0

    def add(self, seconds: float) -> None:
        self._samples[self.count & self._mask] = seconds
        self.count += 1

    def recent(self) -> list[float]:
        """The retained samples, oldest first."""
        n = self.count
        size = self._mask + 1
        if n <= size:
            return self._samples[:n]
        start = n & self._mask
        return self._samples[start:] + self._samples[:start]


def percentile(sorted_samples: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by nearest rank, or ``None`` without samples."""
    if not sorted_samples:
        return None
    rank = max(0, min(len(sorted_samples) - 1, round(q / 100 * (len(sorted_samples) - 1))))
    return sorted_samples[rank]


def percentiles(
    windows: Iterable[LatencyWindow], qs: Sequence[float] = (50, 95, 99)
) -> tuple[float | None, ...]:
    samples: list[float] = []
    for w in windows:
        samples.extend(w.recent())  # no per-sample generator step: monitors call this often
    samples.sort()
    return tuple(percentile(samples, q) for q in qs)


class ActivitySignal:
    """Wakes an observer (the notebook's publisher) when an idle environment becomes busy.

    The observer ``arm()``s it before waiting; the next call or job start sees ``armed`` (one
    attribute read on the hot path) and ``fire()``s it once. While nothing happens, the observer
    sleeps on the event without polling.
    """

    __slots__ = ("armed", "event")

    def __init__(self) -> None:
        self.armed = False
        self.event = threading.Event()

    def arm(self) -> None:
        self.event.clear()
        self.armed = True

    def fire(self) -> None:
        self.armed = False
        self.event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.event.wait(timeout)
