"""DeadlineScheduler: completed calls leave nothing behind; what is not discarded expires."""

from __future__ import annotations

import threading
import time

from support import WAIT

from sage_nb import LocalEnvironment
from sage_nb.runtime.service.deadlines import DeadlineScheduler


class _Item:
    def __init__(self) -> None:
        self.expired = threading.Event()
        self.abandoned = ""

    def expire(self) -> None:
        self.expired.set()

    def abandon(self, reason: str) -> None:
        self.abandoned = reason


def test_completed_async_calls_leave_no_bucket_until_their_deadline(
    env: LocalEnvironment,
) -> None:
    # Regression: buckets emptied by completions stayed until their deadline (60 s here),
    # holding memory proportional to call rate x timeout.
    env.register_service("echo", lambda x: x)
    futures = [env.call_service_async("echo", i, timeout=60) for i in range(5000)]
    assert [f.result(timeout=WAIT) for f in futures] == list(range(5000))
    scheduler = env._service_manager._deadlines
    assert scheduler.pending() == 0
    assert scheduler._buckets == {}


def test_one_call_at_a_time_does_not_grow_the_tick_heap() -> None:
    # Regression: each bucket re-made after a completion emptied it pushed its tick again,
    # so sequential calls with one deadline left one heap entry per call until it was due.
    scheduler = DeadlineScheduler("sequential")
    due = time.monotonic() + 30
    try:
        for _ in range(5000):
            item = _Item()
            scheduler.discard(item, scheduler.add(item, due))
        assert scheduler._buckets == {}
        assert len(scheduler._ticks) == 1
    finally:
        scheduler.close()


def test_items_added_while_others_are_discarded_still_expire() -> None:
    # add() and discard() race on the same buckets from several threads; every item that was
    # not discarded must still expire (none lost in a dropped bucket).
    scheduler = DeadlineScheduler("race", resolution=0.05)
    kept: list[_Item] = []
    lock = threading.Lock()
    due = time.monotonic() + 0.5

    def churn(seed: int) -> None:
        mine = []
        for i in range(3000):
            item = _Item()
            tick = scheduler.add(item, due + (i % 3) * 0.05)
            if (i + seed) % 7:
                scheduler.discard(item, tick)
            else:
                mine.append(item)
        with lock:
            kept.extend(mine)

    threads = [threading.Thread(target=churn, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    try:
        assert len(kept) > 1000
        for item in kept:
            assert item.expired.wait(WAIT), "an item that was not discarded never expired"
        assert scheduler.pending() == 0
    finally:
        scheduler.close()
