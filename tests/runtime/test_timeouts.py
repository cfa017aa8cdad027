"""Deadlines of sync and async calls: the error, ``started``, requests that never run,
cancellation, defaults per environment and per call, validation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
from typing import Any

import pytest
from support import WAIT

from sage_nb import (
    LocalEnvironment,
    MapFunction,
    OperatorError,
    ServiceFuture,
    ServiceTimeoutError,
)

SHORT = 0.05
#: Long enough for an idle worker to pick a request up, so the call has surely started.
STARTS = 0.5


def occupy(env: LocalEnvironment, blocker: Any, arg: Any = "first") -> ServiceFuture:
    """Make the (single) worker of service 'slow' busy until the gate opens."""
    future = env.call_service_async("slow", arg, method="block", timeout=WAIT * 2)
    assert blocker.entered.wait(WAIT), "the service never started the blocking call"
    return future


def test_sync_timeout_while_running_reports_started(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service("slow", "x", method="block", timeout=STARTS)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.started is True
    assert err.timeout == STARTS
    assert err.service_name == "slow" and err.method_name == "block"
    assert blocker.calls == ["x"]
    assert "still running" in str(err)


def test_sync_timeout_while_queued_never_runs(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    first = occupy(env, blocker)
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service("slow", "queued", timeout=SHORT)
    assert info.value.started is False
    assert "will not run" in str(info.value)

    blocker.gate.set()
    assert first.result(timeout=WAIT) == "first"
    assert env.call_service("slow", "after", timeout=WAIT) == "after"
    # the queue is FIFO with one worker: had "queued" run, it would be before "after"
    assert blocker.calls == ["first", "after"]


def test_service_answers_after_a_timeout(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    with pytest.raises(ServiceTimeoutError):
        env.call_service("slow", 1, method="block", timeout=SHORT)
    blocker.gate.set()
    assert env.call_service("slow", 2, timeout=WAIT) == 2


def test_async_timeout_via_result(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    future = env.call_service_async("slow", "x", method="block", timeout=SHORT)
    assert isinstance(future, concurrent.futures.Future)
    with pytest.raises(ServiceTimeoutError) as info:
        future.result(timeout=WAIT)
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout == SHORT
    assert future.done()


def test_async_timeout_via_await(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)

    async def main() -> Any:
        return await env.call_service_async("slow", "x", method="block", timeout=SHORT)

    with pytest.raises(ServiceTimeoutError):
        asyncio.run(asyncio.wait_for(main(), WAIT))


def test_async_timeout_reports_started(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    running = env.call_service_async("slow", "running", method="block", timeout=STARTS)
    queued = env.call_service_async("slow", "queued", timeout=SHORT)
    with pytest.raises(ServiceTimeoutError) as queued_info:
        queued.result(timeout=WAIT)
    with pytest.raises(ServiceTimeoutError) as running_info:
        running.result(timeout=WAIT)
    assert queued_info.value.started is False
    assert running_info.value.started is True

    blocker.gate.set()
    assert env.call_service("slow", "after", timeout=WAIT) == "after"
    assert blocker.calls == ["running", "after"]


def test_async_result_and_await(env: LocalEnvironment) -> None:
    env.register_service("double", lambda x: 2 * x)
    future = env.call_service_async("double", 21)
    assert isinstance(future, concurrent.futures.Future)
    assert isinstance(future, ServiceFuture)
    assert future.result(timeout=WAIT) == 42

    async def main() -> list[int]:
        futures = [env.call_service_async("double", i) for i in range(10)]
        return list(await asyncio.gather(*futures))

    assert asyncio.run(asyncio.wait_for(main(), WAIT)) == [2 * i for i in range(10)]


def test_cancel_of_queued_request_prevents_execution(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    first = occupy(env, blocker)
    queued = env.call_service_async("slow", "cancelled", timeout=WAIT)
    assert queued.cancel() is True
    assert queued.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(timeout=WAIT)

    assert first.cancel() is False  # already running: cannot be withdrawn
    blocker.gate.set()
    assert first.result(timeout=WAIT) == "first"
    assert env.call_service("slow", "after", timeout=WAIT) == "after"
    assert blocker.calls == ["first", "after"]


def test_environment_default_sync_timeout(make_env: Any, blocker: Any) -> None:
    env = make_env(sync_timeout=SHORT)
    blocker.register(env)
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service("slow", 1, method="block")
    assert info.value.timeout == SHORT
    # a per-call timeout wins over the environment's default
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service("slow", 2, method="block", timeout=0.2)
    assert info.value.timeout == 0.2
    blocker.gate.set()


def test_environment_default_async_timeout(make_env: Any, blocker: Any) -> None:
    env = make_env(async_timeout=SHORT)
    blocker.register(env)
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service_async("slow", 1, method="block").result(timeout=WAIT)
    assert info.value.timeout == SHORT
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service_async("slow", 2, method="block", timeout=0.2).result(timeout=WAIT)
    assert info.value.timeout == 0.2
    blocker.gate.set()


def test_default_timeouts_are_ten_and_thirty_seconds(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    first = occupy(env, blocker)
    queued = env.call_service_async("slow", "q")
    assert queued.timeout == 30.0
    assert queued.cancel()
    blocker.gate.set()
    first.result(timeout=WAIT)


def test_operator_calls_use_environment_default(make_env: Any, blocker: Any) -> None:
    env = make_env(sync_timeout=SHORT)
    blocker.register(env)

    class Call(MapFunction):
        def execute(self, data: Any) -> Any:
            try:
                return self.call_service("slow", data, method="block")
            finally:
                blocker.gate.set()  # let the service finish, so cleanup is quick

    env.from_batch([1]).map(Call).sink(lambda r: None)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert isinstance(info.value.__cause__, ServiceTimeoutError)
    assert info.value.__cause__.timeout == SHORT


@pytest.mark.parametrize("bad", [0, -1, "x", True, None, math.nan])
def test_invalid_environment_timeouts(bad: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        LocalEnvironment("bad", sync_timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        LocalEnvironment("bad", async_timeout=bad)


@pytest.mark.parametrize("bad", [0, -1, "x", -math.inf, math.nan])
def test_invalid_call_timeouts(env: LocalEnvironment, bad: Any) -> None:
    calls: list[Any] = []
    env.register_service("rec", calls.append)
    with pytest.raises(ValueError, match="timeout"):
        env.call_service("rec", 1, timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        env.call_service_async("rec", 2, timeout=bad)
    assert calls == []  # nothing was sent


def test_async_call_needs_a_finite_timeout(env: LocalEnvironment) -> None:
    env.register_service("rec", lambda: 1)
    with pytest.raises(ValueError, match="finite"):
        env.call_service_async("rec", timeout=math.inf)
    assert env.call_service("rec", timeout=math.inf) == 1  # sync may wait forever


def test_many_timeouts_leave_nothing_behind(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    first = occupy(env, blocker)
    futures = [env.call_service_async("slow", i, timeout=SHORT) for i in range(50)]
    for f in futures:
        with pytest.raises(ServiceTimeoutError):
            f.result(timeout=WAIT)
    blocker.gate.set()
    first.result(timeout=WAIT)
    assert env.call_service("slow", "after", timeout=WAIT) == "after"
    assert blocker.calls == ["first", "after"]
    stats = {s.name: s for s in env.statistics().services}["slow"]
    assert stats.timed_out == 50
    assert stats.queued == 0
