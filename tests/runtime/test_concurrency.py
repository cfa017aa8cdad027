"""Many callers at once: service concurrency, no overlap at concurrency=1, and every caller
getting exactly its own answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from support import WAIT

from sage_nb import LocalEnvironment, MapFunction


def run_threads(n: int, target: Callable[[int], None]) -> list[BaseException]:
    """Run ``target(i)`` on ``n`` threads; return what they raised."""
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,), name=f"caller-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 4)
        assert not t.is_alive(), f"{t.name} is stuck"
    return errors


def test_concurrency_four_runs_four_requests_at_once(env: LocalEnvironment) -> None:
    barrier = threading.Barrier(4, timeout=WAIT)

    class Meet:
        def process(self, i: int) -> int:
            barrier.wait()  # breaks (and raises) unless four requests run together
            return i

    env.register_service("meet", Meet, concurrency=4)
    results: dict[int, int] = {}

    def call(i: int) -> None:
        results[i] = env.call_service("meet", i, timeout=WAIT * 2)

    assert run_threads(4, call) == []
    assert results == {0: 0, 1: 1, 2: 2, 3: 3}
    assert not barrier.broken


def test_concurrency_four_with_async_calls(env: LocalEnvironment) -> None:
    barrier = threading.Barrier(4, timeout=WAIT)

    def meet(i: int) -> int:
        barrier.wait()
        return i

    env.register_service("meet", meet, concurrency=4)
    futures = [env.call_service_async("meet", i) for i in range(4)]
    assert [f.result(timeout=WAIT * 2) for f in futures] == [0, 1, 2, 3]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_requests_never_exceed_concurrency(env: LocalEnvironment, concurrency: int) -> None:
    lock = threading.Lock()
    active = [0]
    most = [0]

    def work(i: int) -> int:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.0005)  # widen the window an overlap would need; not a synchronisation
        with lock:
            active[0] -= 1
        return i

    env.register_service("work", work, concurrency=concurrency)

    def call(t: int) -> None:
        for i in range(50):
            assert env.call_service("work", i, timeout=WAIT) == i

    assert run_threads(6, call) == []
    assert most[0] <= concurrency
    if concurrency == 1:
        assert most[0] == 1


def test_many_callers_get_exactly_their_own_answers(env: LocalEnvironment) -> None:
    env.register_service("echo", lambda x: x, concurrency=2)
    got: dict[int, list[Any]] = {}

    def call(t: int) -> None:
        mine = got[t] = []
        for i in range(500):
            mine.append(env.call_service("echo", (t, i), timeout=WAIT))

    assert run_threads(8, call) == []
    for t in range(8):
        assert got[t] == [(t, i) for i in range(500)]


def test_many_async_callers_get_exactly_their_own_answers(env: LocalEnvironment) -> None:
    env.register_service("echo", lambda x: x)
    got: dict[int, list[Any]] = {}

    def call(t: int) -> None:
        futures = [env.call_service_async("echo", (t, i)) for i in range(300)]
        got[t] = [f.result(timeout=WAIT) for f in futures]

    assert run_threads(4, call) == []
    for t in range(4):
        assert got[t] == [(t, i) for i in range(300)]


def test_parallel_operators_calling_one_service(env: LocalEnvironment) -> None:
    env.register_service("square", lambda x: x * x, concurrency=2)
    out: list[tuple[int, int]] = []

    class Square(MapFunction):
        def execute(self, data: int) -> tuple[int, int]:
            return data, self.call_service("square", data)

    env.from_batch(range(2000)).map(Square, parallelism=4).sink(out.append)
    assert env.submit().status == "finished"
    assert sorted(out) == [(i, i * i) for i in range(2000)]
