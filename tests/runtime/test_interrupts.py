"""``Interrupts``: Ctrl-C while a cell waits only counts, wherever the main thread is (inside
``Thread.is_alive()`` or a finalizer, raising is unsafe); ``check()`` raises it."""

from __future__ import annotations

import itertools
import signal
import sys
import threading
from typing import Any

import pytest

from sage_nb import Job, LocalEnvironment
from sage_nb.runtime.interrupts import Interrupts


class InterruptedFinalizer:
    """What the garbage collector may do in the waiting thread: run a ``__del__`` just as
    SIGINT arrives, so the handler runs inside the finalizer."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


@pytest.fixture
def unraisable(monkeypatch: Any) -> list[type[BaseException]]:
    """Exceptions Python dropped (printed as "Exception ignored")."""
    dropped: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    return dropped


def test_an_interrupt_only_counts_until_check() -> None:
    with Interrupts() as interrupts:
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        interrupts.check()  # nothing yet
        signal.raise_signal(signal.SIGINT)  # does not raise here
        signal.raise_signal(signal.SIGINT)
        assert interrupts.count == 2
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_inside_a_finalizer_is_not_lost(
    unraisable: list[type[BaseException]],
) -> None:
    # Python's own handler would raise inside __del__, where the exception is dropped.
    with Interrupts() as interrupts:
        InterruptedFinalizer()  # freed at once: SIGINT is handled inside __del__
        assert unraisable == []
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()


def test_an_interrupt_inside_is_alive_leaves_the_thread_alive() -> None:
    # gh-90882 (CPython < 3.13): a KeyboardInterrupt raised inside Thread.is_alive(), just
    # after its lock.acquire(False) returned, marks a running thread stopped; ipykernel then
    # writes to its IOPub socket from every thread. Python's own handler fails this test.
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="test/alive")
    thread.start()

    def interrupt_inside_is_alive(frame: Any, event: str, arg: Any) -> None:
        if event == "c_return" and frame.f_code.co_name == "_wait_for_tstate_lock":
            signal.raise_signal(signal.SIGINT)

    try:
        with Interrupts() as interrupts:
            sys.setprofile(interrupt_inside_is_alive)
            try:
                alive = thread.is_alive()
            except KeyboardInterrupt:
                alive = None
            finally:
                sys.setprofile(None)
        assert interrupts.count == 1
        assert alive is True and thread.is_alive()
    finally:
        stop.set()
        thread.join(10)


def test_the_previous_handler_comes_back_after_an_error() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(RuntimeError), Interrupts():
            raise RuntimeError("boom")
        signal.raise_signal(signal.SIGINT)
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_handler_that_is_not_python_is_left_alone() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with Interrupts() as interrupts:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)  # ignored, as before
            interrupts.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_nothing_is_installed() -> None:
    found: list[Any] = []

    def other() -> None:
        with Interrupts() as interrupts:
            found.append(signal.getsignal(signal.SIGINT))
            interrupts.check()
            found.append(interrupts.count)

    thread = threading.Thread(target=other, name="test/other")
    thread.start()
    thread.join(10)
    assert found == [signal.default_int_handler, 0]


def test_submit_stops_the_job_on_an_interrupt_inside_a_finalizer(
    env: LocalEnvironment, monkeypatch: Any, unraisable: list[type[BaseException]]
) -> None:
    # An endless job; while submit() waits, Ctrl-C arrives as the garbage collector runs a
    # finalizer in the waiting thread. submit() must still stop the job and raise.
    counter = itertools.count()
    env.from_source(lambda: next(counter)).sink(lambda r: None)
    start_job = env.start_job
    collected: list[bool] = []

    def start_job_whose_wait_meets_a_finalizer() -> Job:
        job = start_job()
        wait = job.wait

        def wait_then_collect(timeout: float | None = None) -> bool:
            if not collected:
                collected.append(True)
                InterruptedFinalizer()
            return wait(timeout)

        monkeypatch.setattr(job, "wait", wait_then_collect)
        return job

    monkeypatch.setattr(env, "start_job", start_job_whose_wait_meets_a_finalizer)
    with pytest.raises(KeyboardInterrupt):
        env.submit()
    assert collected and unraisable == []
    assert env.jobs[-1].status == "stopped"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_submit_stops_a_job_interrupted_while_it_starts(
    env: LocalEnvironment, monkeypatch: Any
) -> None:
    counter = itertools.count()
    env.from_source(lambda: next(counter)).sink(lambda r: None)
    start_job = env.start_job

    def start_then_interrupt() -> Job:
        job = start_job()
        signal.raise_signal(signal.SIGINT)  # submit() is still inside start_job
        return job

    monkeypatch.setattr(env, "start_job", start_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        env.submit(autostop=False)
    assert env.jobs[-1].status == "stopped"
