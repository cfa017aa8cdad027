"""Jobs: blocking and background submit, wait, stop, one job at a time, interrupts."""

from __future__ import annotations

import _thread
import itertools
import threading
from typing import Any

import pytest
from support import WAIT

from sage_nb import Job, LocalEnvironment, MapFunction, SourceFunction

SHORT = 0.05


def test_background_submit_returns_running_job(env: LocalEnvironment, gate: Any) -> None:
    out: list[int] = []

    def gated(x: int) -> int:
        assert gate.wait(WAIT)
        return x

    env.from_batch([1, 2, 3]).map(gated).sink(out.append)
    job = env.submit(autostop=False)
    assert isinstance(job, Job)
    assert job.status == "running"
    assert not job.done
    assert job.wait(timeout=SHORT) is False
    assert job.status == "running"

    gate.set()
    assert job.wait(timeout=WAIT) is True
    assert job.status == "finished"
    assert job.done
    assert out == [1, 2, 3]
    assert env.jobs == [job]


def test_background_finite_job_finishes_by_itself(env: LocalEnvironment) -> None:
    out: list[int] = []
    env.from_batch(range(100)).map(lambda x: x + 1).sink(out.append)
    job = env.submit(autostop=False)
    assert job.wait(timeout=WAIT)
    assert job.status == "finished"
    assert out == list(range(1, 101))
    assert job.error is None


def test_stop_endless_source(env: LocalEnvironment) -> None:
    counter = itertools.count()
    seen = threading.Event()

    def sink(record: int) -> None:
        seen.set()

    env.from_source(lambda: next(counter)).map(lambda x: x * 2).sink(sink)
    job = env.submit(autostop=False)
    assert seen.wait(WAIT), "the endless source produced nothing"
    assert job.wait(timeout=SHORT) is False  # it does not end by itself
    assert job.stop(timeout=WAIT) is True
    assert job.status == "stopped"
    assert job.done
    assert job.error is None


def test_stop_endless_source_function_with_parallel_operators(env: LocalEnvironment) -> None:
    class Forever(SourceFunction):
        def __init__(self) -> None:
            self.n = 0

        def execute(self) -> int:
            self.n += 1
            return self.n

    seen = threading.Event()
    env.from_source(Forever).keyby(lambda x: x % 4).map(lambda x: x, parallelism=3).sink(
        lambda r: seen.set()
    )
    job = env.submit(autostop=False)
    assert seen.wait(WAIT)
    assert job.stop(timeout=WAIT) is True
    assert job.status == "stopped"


def test_stop_is_bounded_while_a_source_blocks(env: LocalEnvironment, gate: Any) -> None:
    entered = threading.Event()

    def read() -> int:
        entered.set()
        gate.wait(WAIT)
        return 1

    env.from_source(read).sink(lambda r: None)
    job = env.submit(autostop=False)
    assert entered.wait(WAIT)
    assert job.stop(timeout=SHORT) is False  # the source is still inside read()
    gate.set()
    assert job.wait(timeout=WAIT) is True
    assert job.status == "stopped"


def test_stop_after_finish_changes_nothing(env: LocalEnvironment) -> None:
    env.from_batch([1]).sink(lambda r: None)
    job = env.submit()
    assert job.stop(timeout=WAIT) is True
    assert job.status == "finished"


def test_stopping_job_cancels_service_calls_instead_of_failing(
    env: LocalEnvironment,
) -> None:
    env.register_service("echo", lambda x: x)
    called = threading.Event()

    class Call(MapFunction):
        def execute(self, data: int) -> int:
            called.set()
            return self.call_service("echo", data)

    counter = itertools.count()
    env.from_source(lambda: next(counter)).map(Call).sink(lambda r: None)
    job = env.submit(autostop=False)
    assert called.wait(WAIT)
    assert job.stop(timeout=WAIT)
    assert job.status == "stopped"
    assert job.error is None


def test_submit_while_running_raises(env: LocalEnvironment, gate: Any) -> None:
    env.from_batch([1]).map(lambda x: gate.wait(WAIT)).sink(lambda r: None)
    job = env.submit(autostop=False)
    with pytest.raises(RuntimeError, match="still running"):
        env.submit()
    with pytest.raises(RuntimeError, match="still running"):
        env.submit(autostop=False)
    gate.set()
    assert job.wait(WAIT)
    assert env.jobs == [job]


def test_jobs_run_one_after_another(env: LocalEnvironment) -> None:
    out: list[int] = []
    env.from_batch([1, 2]).sink(out.append)
    first = env.submit()
    second = env.submit()
    assert first is not second
    assert first.status == second.status == "finished"
    assert out == [1, 2, 1, 2]
    env.clear_pipeline()
    env.from_batch([3]).sink(out.append)
    env.submit()
    assert out == [1, 2, 1, 2, 3]
    assert len(env.jobs) == 3


def test_pipeline_without_source_raises(env: LocalEnvironment) -> None:
    with pytest.raises(ValueError, match="no source"):
        env.submit()
    with pytest.raises(ValueError, match="no source"):
        env.submit(autostop=False)
    assert env.jobs == []


def test_interrupt_while_waiting_stops_the_job(env: LocalEnvironment) -> None:
    counter = itertools.count()
    interrupted = threading.Event()

    def sink(record: int) -> None:
        if not interrupted.is_set():
            interrupted.set()
            _thread.interrupt_main()  # what Ctrl-C does to a cell waiting in submit()

    env.from_source(lambda: next(counter)).sink(sink)
    try:
        with pytest.raises(KeyboardInterrupt):
            env.submit()
    finally:
        for job in env.jobs:
            job.stop(timeout=WAIT)
    job = env.jobs[-1]
    assert job.status == "stopped"
    assert job.done


def test_stop_runs_close_of_functions(env: LocalEnvironment) -> None:
    hooks: list[str] = []
    seen = threading.Event()

    class Hooked(MapFunction):
        def setup(self) -> None:
            hooks.append("setup")

        def execute(self, data: int) -> int:
            seen.set()
            return data

        def close(self) -> None:
            hooks.append("close")

    counter = itertools.count()
    env.from_source(lambda: next(counter)).map(Hooked).sink(lambda r: None)
    job = env.submit(autostop=False)
    assert seen.wait(WAIT)
    assert job.stop(timeout=WAIT)
    assert hooks == ["setup", "close"]
