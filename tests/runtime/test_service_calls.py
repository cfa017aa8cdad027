"""Calling services: results, errors as the contract describes them, method=, kwargs, async def
methods, services calling services, calls from operators."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from support import WAIT

from sage_nb import (
    LocalEnvironment,
    MapFunction,
    ServiceCallError,
    ServiceNotFoundError,
)


class Flaky:
    def process(self, x: int) -> int:
        if x < 0:
            raise KeyError(f"negative {x}")  # the raising line
        return x

    def other(self, a: int, b: int = 0, *, scale: int = 1) -> int:
        return (a + b) * scale


def test_service_exception_reaches_caller_with_details(env: LocalEnvironment) -> None:
    env.register_service("flaky", Flaky)
    with pytest.raises(ServiceCallError) as info:
        env.call_service("flaky", -1)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert err.service_name == "flaky"
    assert err.method_name == "process"
    assert err.remote_type == "KeyError"
    assert err.remote_message == str(KeyError("negative -1"))
    assert 'raise KeyError(f"negative {x}")  # the raising line' in err.remote_traceback
    assert "Traceback" in err.remote_traceback
    assert isinstance(err.__cause__, KeyError)
    assert err.__cause__.args == ("negative -1",)
    assert "KeyError" in str(err) and "negative -1" in str(err)


def test_service_answers_after_raising(env: LocalEnvironment) -> None:
    env.register_service("flaky", Flaky)
    for _ in range(3):
        with pytest.raises(ServiceCallError):
            env.call_service("flaky", -5)
        assert env.call_service("flaky", 5) == 5


def test_async_call_exception(env: LocalEnvironment) -> None:
    env.register_service("flaky", Flaky)
    future = env.call_service_async("flaky", -2)
    with pytest.raises(ServiceCallError) as info:
        future.result(timeout=WAIT)
    assert info.value.remote_type == "KeyError"
    assert isinstance(info.value.__cause__, KeyError)
    assert env.call_service_async("flaky", 2).result(timeout=WAIT) == 2


def test_unknown_service_lists_registered_names(env: LocalEnvironment) -> None:
    env.register_service("beta", Flaky)
    env.register_service("alpha", Flaky)
    with pytest.raises(ServiceNotFoundError) as info:
        env.call_service("gamma", 1)
    err = info.value
    assert isinstance(err, LookupError)
    assert err.service_name == "gamma"
    assert err.registered == ("alpha", "beta")
    assert "'gamma'" in str(err)
    assert "'alpha', 'beta'" in str(err)
    with pytest.raises(ServiceNotFoundError, match="'alpha', 'beta'"):
        env.call_service_async("gamma", 1)


def test_unknown_service_with_nothing_registered(env: LocalEnvironment) -> None:
    with pytest.raises(ServiceNotFoundError, match=r"registered: none"):
        env.call_service("nothing")


def test_unknown_method_lists_methods(env: LocalEnvironment) -> None:
    env.register_service("flaky", Flaky)
    with pytest.raises(ServiceNotFoundError) as info:
        env.call_service("flaky", 1, method="nope")
    err = info.value
    assert err.method_name == "nope"
    assert err.registered == ("other", "process")
    assert "'nope'" in str(err) and "'other', 'process'" in str(err)
    assert env.call_service("flaky", 1) == 1  # still serving


def test_private_and_lifecycle_methods_are_not_callable(env: LocalEnvironment) -> None:
    calls: list[str] = []

    class Guarded:
        def setup(self) -> None:
            calls.append("setup")

        def close(self) -> None:
            calls.append("close")

        def _secret(self) -> str:
            calls.append("_secret")
            return "leaked"

        def process(self) -> str:
            return "ok"

    env.register_service("guarded", Guarded)
    assert env.call_service("guarded") == "ok"
    for name in ("_secret", "setup", "close", "__init__", "__class__"):
        with pytest.raises(ServiceNotFoundError) as info:
            env.call_service("guarded", method=name)
        assert info.value.registered == ("process",)
    assert calls == ["setup"]  # none of them ran


def test_method_and_kwargs(env: LocalEnvironment) -> None:
    env.register_service("flaky", Flaky)
    assert env.call_service("flaky", 2, method="other") == 2
    assert env.call_service("flaky", 2, 3, method="other", scale=10) == 50
    assert env.call_service("flaky", 2, b=4, method="other", scale=2) == 12
    fut = env.call_service_async("flaky", 1, method="other", b=1, scale=3)
    assert fut.result(timeout=WAIT) == 6


def test_wrong_arguments_are_a_service_call_error(env: LocalEnvironment) -> None:
    env.register_service("flaky", Flaky)
    with pytest.raises(ServiceCallError) as info:
        env.call_service("flaky", 1, 2, 3)
    assert info.value.remote_type == "TypeError"
    assert env.call_service("flaky", 3) == 3


class AsyncService:
    def __init__(self) -> None:
        self.waiting: asyncio.Event | None = None
        self.ready = threading.Event()

    async def process(self, x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async def fail(self, message: str) -> None:
        await asyncio.sleep(0)
        raise ValueError(message)

    async def wait_for_peer(self) -> str:
        self.waiting = asyncio.Event()
        self.ready.set()
        await asyncio.wait_for(self.waiting.wait(), WAIT)
        return "woken"

    async def wake_peer(self) -> str:
        assert self.waiting is not None
        self.waiting.set()
        return "woke"


def test_async_def_method_sync_and_async_calls(env: LocalEnvironment) -> None:
    env.register_service("aio", AsyncService)
    assert env.call_service("aio", 21) == 42
    assert env.call_service_async("aio", 4).result(timeout=WAIT) == 8

    async def main() -> int:
        return await env.call_service_async("aio", 5)

    assert asyncio.run(main()) == 10


def test_async_def_method_raising(env: LocalEnvironment) -> None:
    env.register_service("aio", AsyncService)
    with pytest.raises(ServiceCallError) as info:
        env.call_service("aio", "sync boom", method="fail")
    assert info.value.remote_type == "ValueError"
    assert info.value.remote_message == "sync boom"
    assert isinstance(info.value.__cause__, ValueError)
    assert "raise ValueError(message)" in info.value.remote_traceback
    with pytest.raises(ServiceCallError, match="async boom"):
        env.call_service_async("aio", "async boom", method="fail").result(timeout=WAIT)
    assert env.call_service("aio", 1) == 2  # still serving


def test_async_def_methods_run_concurrently_on_the_service_loop(env: LocalEnvironment) -> None:
    service = AsyncService()
    env.register_service("aio", service)  # concurrency=1: one worker thread
    waiting = env.call_service_async("aio", method="wait_for_peer")
    assert service.ready.wait(WAIT)
    # wake_peer can only run while wait_for_peer is suspended on the same loop
    assert env.call_service("aio", method="wake_peer") == "woke"
    assert waiting.result(timeout=WAIT) == "woken"


class Outer:
    def process(self, x: int) -> int:
        return self.call_service("inner", x) + 1  # type: ignore[attr-defined]

    def via_async(self, x: int) -> int:
        return self.call_service_async("inner", x).result(timeout=WAIT) + 1  # type: ignore[attr-defined]


class Inner:
    def process(self, x: int) -> int:
        if x < 0:
            raise ValueError(f"inner boom {x}")
        return x * 10


def test_service_calls_another_service(env: LocalEnvironment) -> None:
    env.register_service("outer", Outer)
    env.register_service("inner", Inner)
    assert env.call_service("outer", 4) == 41
    assert env.call_service("outer", 2, method="via_async") == 21


def test_nested_failure_propagates(env: LocalEnvironment) -> None:
    env.register_service("outer", Outer)
    env.register_service("inner", Inner)
    with pytest.raises(ServiceCallError) as info:
        env.call_service("outer", -3)
    err = info.value
    assert err.remote_type == "ValueError"
    assert "inner boom -3" in str(err)
    assert "inner boom -3" in err.remote_traceback
    # both answer the next call
    assert env.call_service("outer", 1) == 11
    assert env.call_service("inner", 1) == 10


def test_nested_call_to_unknown_service(env: LocalEnvironment) -> None:
    class Lost:
        def process(self) -> Any:
            return self.call_service("missing")  # type: ignore[attr-defined]

    env.register_service("lost", Lost)
    with pytest.raises((ServiceNotFoundError, ServiceCallError), match="'missing'"):
        env.call_service("lost")


def test_operator_calls_services_with_method_and_kwargs(env: LocalEnvironment) -> None:
    env.register_service("flaky", Flaky)
    out: list[Any] = []

    class Use(MapFunction):
        def execute(self, data: int) -> tuple[int, int]:
            plain = self.call_service("flaky", data)
            other = self.call_service("flaky", data, method="other", b=1, scale=2)
            later = self.call_service_async("flaky", data).result(timeout=WAIT)
            return plain + later, other

    env.from_batch([1, 2]).map(Use).sink(out.append)
    assert env.submit().status == "finished"
    assert out == [(2, 4), (4, 6)]


def test_operator_call_outside_a_job_explains(env: LocalEnvironment) -> None:
    class Use(MapFunction):
        def execute(self, data: int) -> Any:
            return self.call_service("flaky", data)

    with pytest.raises(RuntimeError, match="not running in a job"):
        Use().execute(1)
