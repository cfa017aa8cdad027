"""Deadlines and retry backoffs on a ``MockClock``: time moves only when the test says, so
these tests never sleep and cannot be late on a loaded machine (as trio's ``MockClock``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support import WAIT, wait_until

from sage_nb.errors import ServiceTimeoutError, ServiceUnavailableError
from sage_nb.runtime.clock import MockClock
from sage_nb.runtime.retry import RetryPolicy
from sage_nb.runtime.service.callbacks import CallbackExecutor
from sage_nb.runtime.service.deadlines import DeadlineScheduler
from sage_nb.runtime.service.futures import AwaitableFuture
from sage_nb.runtime.service.service_manager import RetryingFuture


class Item:
    def __init__(self) -> None:
        self.expired = threading.Event()
        self.abandoned: str | None = None

    def expire(self) -> None:
        self.expired.set()

    def abandon(self, reason: str) -> None:
        self.abandoned = reason


@pytest.fixture
def clock() -> MockClock:
    return MockClock(start=1000.0)


@pytest.fixture
def scheduler(clock: MockClock) -> Iterator[DeadlineScheduler]:
    made = DeadlineScheduler("mock", clock=clock)
    yield made
    made.close()


@pytest.fixture
def executor() -> Iterator[CallbackExecutor]:
    made = CallbackExecutor("mock")
    yield made
    made.close(WAIT)


def test_nothing_expires_until_the_clock_reaches_it(
    clock: MockClock, scheduler: DeadlineScheduler
) -> None:
    items = [Item() for _ in range(3)]
    for seconds, item in zip((1.0, 2.0, 3.0), items):
        scheduler.add(item, clock.now() + seconds)
    clock.jump(1.5)
    assert items[0].expired.wait(WAIT)
    # The thread expires due buckets in order, then waits for the clock: the next one is due
    # at +2 s, and the clock stands at +1.5 s.
    assert not items[1].expired.is_set() and not items[2].expired.is_set()
    assert scheduler.pending() == 2
    clock.jump(10)
    assert items[1].expired.wait(WAIT) and items[2].expired.wait(WAIT)
    assert scheduler.pending() == 0


def test_an_earlier_deadline_added_later_fires_first(
    clock: MockClock, scheduler: DeadlineScheduler
) -> None:
    late, early = Item(), Item()
    scheduler.add(late, clock.now() + 5)
    scheduler.add(early, clock.now() + 1)
    clock.jump(1.01)
    assert early.expired.wait(WAIT)
    assert not late.expired.is_set()
    assert scheduler.pending() == 1


def test_close_abandons_what_is_left(clock: MockClock, scheduler: DeadlineScheduler) -> None:
    item = Item()
    scheduler.add(item, clock.now() + 60)
    scheduler.close(reason="closed by the test")
    assert item.abandoned == "closed by the test"
    assert not item.expired.is_set()


def failing_attempts(log: list[Any]) -> Any:
    """``submit(left, retry)`` whose attempts fail at once (a service that is unavailable),
    recording each attempt's time left, whether it is a retry and the thread making it."""

    def submit(left: float, retry: bool) -> AwaitableFuture:
        log.append((round(left, 6), retry, threading.current_thread().name))
        future = AwaitableFuture()
        future.set_exception(ServiceUnavailableError("not yet"))
        return future

    return submit


def test_retries_wait_their_backoff_on_the_clock(
    clock: MockClock, scheduler: DeadlineScheduler, executor: CallbackExecutor
) -> None:
    log: list[Any] = []
    policy = RetryPolicy(retries=3, backoff=1.0, multiplier=2.0, max_backoff=60, jitter=0)
    future = RetryingFuture(
        failing_attempts(log), "svc", "process", 10.0, policy, scheduler, executor
    )
    assert [(left, retry) for left, retry, _ in log] == [(10.0, False)]
    clock.jump(0.99)  # the first retry is due after 1 s: not yet
    assert len(log) == 1 and not future.done()
    clock.jump(0.02)
    assert wait_until(lambda: len(log) == 2)
    clock.jump(1.5)  # the second is due 2 s after the first retry failed
    assert len(log) == 2
    clock.jump(0.6)
    assert wait_until(lambda: len(log) == 3)
    clock.jump(4.1)  # third retry: 4 s later, the last one the policy allows
    assert isinstance(future.exception(timeout=WAIT), ServiceUnavailableError)
    assert [retry for _, retry, _ in log] == [False, True, True, True]
    assert [left for left, _, _ in log] == [10.0, pytest.approx(8.99), 6.89, 2.79]
    # Retries run on the callback executor, never on the deadline thread.
    assert all(name == "sage_nb/callbacks/mock" for _, _, name in log[1:]), log
    assert future.attempts == 4


def test_no_retry_starts_past_the_deadline(
    clock: MockClock, scheduler: DeadlineScheduler, executor: CallbackExecutor
) -> None:
    log: list[Any] = []
    policy = RetryPolicy(retries=10, backoff=2.0, multiplier=1.0, max_backoff=60, jitter=0)
    future = RetryingFuture(
        failing_attempts(log), "svc", "process", 3.0, policy, scheduler, executor
    )
    clock.jump(2.01)
    assert wait_until(lambda: len(log) == 2)
    # The next retry would be due at 4.01 s, past the 3 s deadline: the last failure stands.
    assert isinstance(future.exception(timeout=WAIT), ServiceUnavailableError)
    assert len(log) == 2


def test_an_attempt_that_never_answers_times_out_on_the_clock(
    clock: MockClock, scheduler: DeadlineScheduler
) -> None:
    from sage_nb.runtime.service.context import ServiceContext
    from sage_nb.runtime.service.service_manager import ServiceFuture

    ctx = ServiceContext("svc", "mock")
    future = ServiceFuture(ctx, 1, "process", 5.0, scheduler)
    future._tick = scheduler.add(future, clock.now() + 5.0)
    clock.jump(4.9)
    assert not future.done()
    clock.jump(0.2)
    assert isinstance(future.exception(timeout=WAIT), ServiceTimeoutError)
    assert ctx.timed_out == 1
