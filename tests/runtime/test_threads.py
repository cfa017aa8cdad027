"""Thread names and daemon flags: sage_nb/service/<name>, sage_nb/task/..., all daemons."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from support import WAIT, sage_threads

from sage_nb import LocalEnvironment
from sage_nb.runtime.threads import LoopThread


def test_service_worker_threads(env: LocalEnvironment) -> None:
    env.register_service("profile", lambda x: x)
    env.register_service("pool", lambda x: x, concurrency=3)
    assert sage_threads() == []  # services start on first use
    env.call_service("profile", 1)
    env.call_service("pool", 1)

    names = sorted(t.name for t in sage_threads())
    assert "sage_nb/service/profile" in names
    assert len([n for n in names if n.startswith("sage_nb/service/profile")]) == 1
    assert len([n for n in names if n.startswith("sage_nb/service/pool")]) == 3
    assert "sage_nb/service/pool" in names
    assert all(t.daemon for t in sage_threads())
    assert set(env.threads()) == set(sage_threads())


def test_async_service_loop_thread_is_a_named_daemon(env: LocalEnvironment) -> None:
    class Aio:
        async def process(self) -> str:
            await asyncio.sleep(0)
            return "ok"

    env.register_service("aio", Aio)
    assert env.call_service("aio") == "ok"
    threads = sage_threads()
    assert all(t.daemon for t in threads)
    assert all(t.name.split("/")[-1].startswith("aio") for t in threads), threads
    assert "sage_nb/service/aio" in [t.name for t in threads]


def test_deadline_thread_is_a_named_daemon(env: LocalEnvironment) -> None:
    env.register_service("echo", lambda x: x)
    assert env.call_service_async("echo", 1).result(timeout=WAIT) == 1
    threads = sage_threads()
    assert all(t.daemon for t in threads)
    assert all(len(t.name.split("/")) == 3 for t in threads), threads


def test_task_threads_while_a_job_runs(env: LocalEnvironment, gate: Any) -> None:
    entered = threading.Event()
    counter = itertools.count()

    def gated(x: int) -> None:
        entered.set()
        gate.wait(WAIT)

    # an endless source keeps every task alive: the sink blocks, the others wait on it
    env.from_source(lambda: next(counter)).map(lambda x: x, parallelism=2).sink(gated)
    job = env.submit(autostop=False)
    assert entered.wait(WAIT)
    tasks = [t for t in sage_threads() if t.name.startswith("sage_nb/task/")]
    assert len(tasks) == 4, tasks  # from_source, map x2, sink
    assert all(t.daemon for t in tasks)
    names = sorted(t.name for t in tasks)
    assert any("from_source" in n for n in names), names
    assert any("sink(gated)" in n for n in names), names
    assert len([n for n in names if "map(lambda)" in n]) == 2, names
    assert set(tasks) <= set(env.threads())
    gate.set()
    assert job.stop(WAIT)
    assert [t for t in sage_threads() if t.name.startswith("sage_nb/task/")] == []


def test_every_thread_is_a_daemon_during_a_busy_job(env: LocalEnvironment, gate: Any) -> None:
    env.register_service("echo", lambda x: x, concurrency=2)
    seen = threading.Event()

    def call(x: int) -> int:
        seen.set()
        gate.wait(WAIT)
        return env.call_service("echo", x)

    env.from_batch(range(4)).map(call, parallelism=2).sink(lambda r: None)
    job = env.submit(autostop=False)
    assert seen.wait(WAIT)
    threads = sage_threads()
    assert threads
    assert all(t.daemon for t in threads)
    gate.set()
    assert job.wait(WAIT)


def test_loop_thread_stop_cancels_what_runs_and_closes_the_loop() -> None:
    runner = LoopThread("sage_nb/service-loop/test")
    started = threading.Event()
    cancelled = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = asyncio.run_coroutine_threadsafe(forever(), runner.loop)
    assert started.wait(WAIT)
    assert runner.stop(WAIT)
    assert cancelled.is_set() and future.cancelled()
    assert runner.loop.is_closed() and not runner.thread.is_alive()
    assert runner.stop(WAIT)  # again: nothing left to do


def test_loop_thread_stopped_before_its_loop_runs_still_ends() -> None:
    # stop() right after start: the thread may not have entered run_forever() yet.
    for i in range(50):
        runner = LoopThread(f"sage_nb/service-loop/test{i}")
        assert runner.stop(WAIT), f"round {i}: the loop thread did not end"
        assert runner.loop.is_closed()
