"""Timing helpers shared by the floors and the sage_nb measurements."""

from __future__ import annotations

import gc
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["percentile", "quiet", "sliding_window", "summarize_ns", "time_each"]


def quiet() -> None:
    """Collect garbage left by the previous measurement so it is not charged to the next."""
    gc.collect()


def time_each(call: Callable[[int], Any], n: int) -> list[int]:
    """Call ``call(i)`` for ``i`` in ``range(n)``; return each call's duration in ns."""
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        call(i)
        samples[i] = clock() - t0
    return samples


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[k])


def summarize_ns(samples: list[int]) -> dict[str, float]:
    """p50 / p99 / mean of per-call ns samples, in µs."""
    ordered = sorted(samples)
    return {
        "p50": percentile(ordered, 0.50) / 1e3,
        "p99": percentile(ordered, 0.99) / 1e3,
        "mean": statistics.fmean(ordered) / 1e3,
    }


def sliding_window(submit: Callable[[int], Any], n: int, window: int) -> float:
    """Keep ``window`` futures outstanding until ``n`` were submitted and all completed.

    The oldest future is waited for first, and each completion lets one more call in. Returns
    the wall time in seconds. Results are checked: call ``i`` must return ``i``.
    """
    pending: deque[tuple[int, Any]] = deque()
    push = pending.append
    pop = pending.popleft
    start = time.perf_counter()
    first = min(window, n)
    for i in range(first):
        push((i, submit(i)))
    for i in range(first, n):
        j, fut = pop()
        if fut.result() != j:
            raise AssertionError(f"call {j} returned a wrong result")
        push((i, submit(i)))
    while pending:
        j, fut = pop()
        if fut.result() != j:
            raise AssertionError(f"call {j} returned a wrong result")
    return time.perf_counter() - start
