"""AwaitableFuture keeps the concurrent.futures.Future contract while being lazy."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import (
    FIRST_COMPLETED,
    CancelledError,
    Future,
    InvalidStateError,
    TimeoutError,
    as_completed,
    wait,
)

import pytest

from sage_nb.runtime.service.futures import AwaitableFuture


def test_is_a_future_and_completes_without_a_waiter() -> None:
    fut = AwaitableFuture()
    assert isinstance(fut, Future)
    assert not fut.done()
    fut.set_result(42)
    assert fut.done() and fut.result() == 42 and fut.exception() is None
    assert fut._cond is None  # nobody waited: no Condition was built


def test_exception_is_raised_by_result() -> None:
    fut = AwaitableFuture()
    fut.set_exception(KeyError("k"))
    with pytest.raises(KeyError):
        fut.result()
    assert isinstance(fut.exception(), KeyError)


def test_second_completion_raises_invalid_state() -> None:
    fut = AwaitableFuture()
    fut.set_result(1)
    with pytest.raises(InvalidStateError):
        fut.set_result(2)
    with pytest.raises(InvalidStateError):
        fut.set_exception(ValueError())
    assert fut.result() == 1


def test_result_waits_for_another_thread() -> None:
    fut = AwaitableFuture()
    started = threading.Event()

    def complete() -> None:
        started.wait(5)
        fut.set_result("late")

    t = threading.Thread(target=complete)
    t.start()
    started.set()
    assert fut.result(timeout=5) == "late"
    t.join(5)


def test_result_times_out_when_nothing_completes_it() -> None:
    fut = AwaitableFuture()
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        fut.exception(timeout=0.01)


def test_done_callbacks_run_on_both_paths() -> None:
    seen: list[object] = []
    early = AwaitableFuture()
    early.add_done_callback(lambda f: seen.append(f.result()))
    early.set_result("early")
    late = AwaitableFuture()
    late.set_result("late")
    late.add_done_callback(lambda f: seen.append(f.result()))
    assert seen == ["early", "late"]


def test_works_with_wait_and_as_completed() -> None:
    futs = [AwaitableFuture() for _ in range(3)]
    timer = threading.Timer(0.01, futs[1].set_result, args=(1,))
    timer.start()
    done, not_done = wait(futs, timeout=5, return_when=FIRST_COMPLETED)
    assert done == {futs[1]} and len(not_done) == 2
    futs[0].set_result(0)
    futs[2].set_exception(ValueError("x"))
    assert set(as_completed(futs, timeout=5)) == set(futs)
    timer.join(5)


def test_cancel_of_a_pending_future() -> None:
    fut = AwaitableFuture()
    assert fut.cancel()
    assert fut.cancelled() and fut.done()
    with pytest.raises(CancelledError):
        fut.result()
    with pytest.raises(InvalidStateError):
        fut.set_result(1)


def test_await_in_an_event_loop() -> None:
    fut = AwaitableFuture()

    async def main() -> object:
        asyncio.get_running_loop().call_later(0.01, fut.set_result, "awaited")
        return await fut

    assert asyncio.run(main()) == "awaited"
