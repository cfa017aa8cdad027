"""``Interrupts``: Ctrl-C while a cell waits is remembered, held back while a job starts, and
seen even when Python dropped the ``KeyboardInterrupt`` (raised inside a finalizer)."""

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
    SIGINT arrives, so the handler runs (and its exception is raised) inside the finalizer."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


@pytest.fixture
def unraisable(monkeypatch: Any) -> list[type[BaseException]]:
    """Exceptions Python dropped (printed as "Exception ignored")."""
    dropped: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    return dropped


def test_an_interrupt_raises_and_is_remembered() -> None:
    with Interrupts() as interrupts:
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert interrupts.pending
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_dropped_in_a_finalizer_is_still_seen(
    unraisable: list[type[BaseException]],
) -> None:
    with Interrupts() as interrupts:
        interrupts.check()  # nothing yet
        InterruptedFinalizer()  # freed at once: the KeyboardInterrupt is raised in __del__
        assert unraisable == [KeyboardInterrupt]  # ... and Python dropped it
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()


def test_held_interrupts_wait_for_check() -> None:
    with Interrupts() as interrupts:
        with interrupts.held():
            signal.raise_signal(signal.SIGINT)  # does not raise here
            assert interrupts.pending
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        with pytest.raises(KeyboardInterrupt):  # held no more: raised at once
            signal.raise_signal(signal.SIGINT)


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
            found.append(interrupts.pending)

    thread = threading.Thread(target=other, name="test/other")
    thread.start()
    thread.join(10)
    assert found == [signal.default_int_handler, False]


def test_submit_stops_the_job_on_an_interrupt_python_dropped(
    env: LocalEnvironment, monkeypatch: Any, unraisable: list[type[BaseException]]
) -> None:
    # An endless job; while submit() waits, a finalizer in the waiting thread swallows the
    # KeyboardInterrupt of a Ctrl-C. submit() must still stop the job and raise.
    counter = itertools.count()
    env.from_source(lambda: next(counter)).sink(lambda r: None)
    start_job = env.start_job

    def start_job_whose_wait_meets_a_finalizer() -> Job:
        job = start_job()
        wait = job.wait

        def wait_then_collect(timeout: float | None = None) -> bool:
            if not unraisable:
                InterruptedFinalizer()
            return wait(timeout)

        monkeypatch.setattr(job, "wait", wait_then_collect)
        return job

    monkeypatch.setattr(env, "start_job", start_job_whose_wait_meets_a_finalizer)
    with pytest.raises(KeyboardInterrupt):
        env.submit()
    assert unraisable == [KeyboardInterrupt]
    assert env.jobs[-1].status == "stopped"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
