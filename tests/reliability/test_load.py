"""Load: one million calls from several caller threads with 1,024 in flight.

Every request gets exactly one response (counted per request on both sides: the service runs
each request once, the caller settles each future once, with its own request's result), nothing
stays queued or registered afterwards, and the process's memory returns to within 10% of what
it was before the run.

It runs in the normal test command (``make test`` / ``pytest``); on a 2-vCPU machine it takes
about 15-40 s. ``pytest tests/reliability/test_load.py -s`` prints the figures quoted in
docs/reliability.md.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from sage_nb import LocalEnvironment

CALLS = 1_000_000
CALLERS = 4
IN_FLIGHT = 1024
WARMUP = 20_000
#: A single call waits at most this long; the whole test at most ``timeout`` below.
CALL_TIMEOUT = 60.0


def rss_bytes() -> int | None:
    """Resident set size of this process, read in-process from /proc (None without /proc:
    the test then checks Python's allocated blocks only)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


class LoadRun:
    """Callers that keep ``IN_FLIGHT // CALLERS`` async calls outstanding each."""

    def __init__(self, env: LocalEnvironment, executed: bytearray) -> None:
        self.env = env
        self.executed = executed
        self.answered = bytearray(len(executed))
        self.wrong: list[tuple[int, Any]] = []
        self.outstanding = [0] * CALLERS  # each caller writes only its own slot
        self.max_outstanding = 0
        self.max_queued = 0

    def caller(self, slot: int, first: int, stop: int) -> None:
        call = self.env.call_service_async
        answered, wrong, outstanding = self.answered, self.wrong, self.outstanding
        window: deque[tuple[int, Any]] = deque()
        per_caller = IN_FLIGHT // CALLERS

        def settle() -> None:
            i, future = window.popleft()
            try:
                result = future.result(CALL_TIMEOUT)
            except BaseException as exc:  # recorded, then the test fails on it
                wrong.append((i, exc))
            else:
                if result != i:
                    wrong.append((i, result))
            answered[i] += 1

        for i in range(first, stop):
            if len(window) >= per_caller:
                settle()
            window.append((i, call("echo", i, timeout=CALL_TIMEOUT)))
            outstanding[slot] = len(window)
        while window:
            settle()
        outstanding[slot] = 0

    def run(self, first: int, stop: int, observe: bool = False) -> None:
        per = (stop - first) // CALLERS
        assert per * CALLERS == stop - first
        threads = [
            threading.Thread(
                target=self.caller, args=(k, first + k * per, first + (k + 1) * per), daemon=True
            )
            for k in range(CALLERS)
        ]
        done = threading.Event()
        watcher = threading.Thread(target=self.watch, args=(done,), daemon=True)
        if observe:
            watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        done.set()
        if observe:
            watcher.join(5)
        assert not any(t.is_alive() for t in threads), "a caller thread hung"

    def watch(self, done: threading.Event) -> None:
        """Sample how many calls are outstanding and how many wait in the service's queue."""
        pending = self.env._dispatcher.contexts()["echo"].pending
        while not done.wait(0.01):
            self.max_outstanding = max(self.max_outstanding, sum(self.outstanding))
            self.max_queued = max(self.max_queued, len(pending))


def make_echo(executed: bytearray) -> Callable[[int], int]:
    def echo(i: int) -> int:
        executed[i] += 1
        return i

    return echo


@pytest.mark.slow  # 15-40 s on two CPUs
@pytest.mark.timeout(300)
def test_a_million_calls_with_1024_in_flight_get_exactly_one_response_each(
    make_env: Callable[..., LocalEnvironment],
) -> None:
    env = make_env("load")
    total = WARMUP + CALLS
    executed = bytearray(total)
    env.register_service("echo", make_echo(executed), max_queued=IN_FLIGHT)
    load = LoadRun(env, executed)

    # Warm up (first calls build the deadline thread, method caches, free lists), then measure.
    load.run(0, WARMUP)
    gc.collect()
    rss_before, blocks_before = rss_bytes(), sys.getallocatedblocks()

    start = time.perf_counter()
    load.run(WARMUP, total, observe=True)
    elapsed = time.perf_counter() - start

    gc.collect()
    rss_after, blocks_after = rss_bytes(), sys.getallocatedblocks()
    (stats,) = env.statistics().services
    rss = (
        f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB "
        f"({(rss_after - rss_before) / rss_before:+.1%})"
        if rss_before is not None and rss_after is not None
        else "RSS not available"
    )
    print(
        f"\nload: {CALLS:,} async calls from {CALLERS} callers, {IN_FLIGHT} in flight: "
        f"{elapsed:.1f} s, {CALLS / elapsed:,.0f} calls/s; "
        f"max outstanding seen {load.max_outstanding}, max queued at the service "
        f"{load.max_queued}; {rss}; Python blocks {blocks_before:,} -> "
        f"{blocks_after:,} ({(blocks_after - blocks_before) / blocks_before:+.1%})"
    )

    # Exactly one response per request, each with its own request's result.
    assert load.wrong == []
    missing = load.answered.count(0)
    duplicated = total - missing - load.answered.count(1)
    assert (missing, duplicated) == (0, 0)
    # ... and the service ran each request exactly once.
    assert executed.count(1) == total
    assert (stats.done, stats.failed, stats.timed_out, stats.cancelled) == (total, 0, 0, 0)
    # The callers really kept 1,024 calls outstanding.
    assert load.max_outstanding == IN_FLIGHT
    # Nothing stays behind: no queued request, no registered deadline.
    assert stats.queued == 0 and stats.in_flight == 0
    assert env._service_manager.in_flight() == 0
    # Memory returns to within 10% of before.
    if rss_before is not None and rss_after is not None:
        assert rss_after <= rss_before * 1.10
    assert blocks_after <= blocks_before * 1.10
