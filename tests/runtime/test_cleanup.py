"""Lifecycle: services stop after a blocking submit and restart on demand, keep_services,
env.stop(), env.close() and the with-statement, services whose setup() fails."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from support import WAIT, sage_threads, wait_until

from sage_nb import (
    LocalEnvironment,
    MapFunction,
    OperatorError,
    ServiceUnavailableError,
)


class Lifecycle:
    """Counts its hooks in a shared dict."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def setup(self) -> None:
        self.counts["setup"] = self.counts.get("setup", 0) + 1

    def process(self, x: Any) -> Any:
        return x

    def close(self) -> None:
        self.counts["close"] = self.counts.get("close", 0) + 1


class Call(MapFunction):
    def execute(self, data: Any) -> Any:
        return self.call_service("svc", data)


def test_blocking_submit_stops_services_and_threads(env: LocalEnvironment) -> None:
    counts: dict[str, int] = {}
    env.register_service("svc", Lifecycle, counts)
    out: list[int] = []
    env.from_batch(range(10)).map(Call, parallelism=2).sink(out.append)
    job = env.submit()
    assert job.status == "finished"
    assert sorted(out) == list(range(10))
    # nothing of the job or its services is left, right when submit returns
    assert sage_threads() == []
    assert env.threads() == []
    assert counts == {"setup": 1, "close": 1}
    assert env.statistics().services[0].state == "stopped"

    # the next call starts the service again
    assert env.call_service("svc", 5) == 5
    assert counts == {"setup": 2, "close": 1}
    # (the start thread ends right after the service is ready)
    assert wait_until(lambda: [t.name for t in sage_threads()] == ["sage_nb/service/svc"])


def test_failed_submit_also_stops_services(env: LocalEnvironment) -> None:
    counts: dict[str, int] = {}
    env.register_service("svc", Lifecycle, counts)

    def fail(x: Any) -> None:
        raise ValueError(x)

    env.from_batch([1]).map(Call).map(fail).sink(print)
    with pytest.raises(OperatorError, match="ValueError"):
        env.submit()
    assert sage_threads() == []
    assert counts == {"setup": 1, "close": 1}


def test_keep_services_keeps_them_running(make_env: Any) -> None:
    env = make_env(keep_services=True)
    counts: dict[str, int] = {}
    env.register_service("svc", Lifecycle, counts)
    env.from_batch([1, 2]).map(Call).sink(lambda r: None)
    env.submit()
    assert counts == {"setup": 1}
    assert [t.name for t in sage_threads()] == ["sage_nb/service/svc"]
    assert env.statistics().services[0].state == "running"
    assert env.call_service("svc", 3) == 3
    assert counts == {"setup": 1}  # not restarted
    assert env.close(timeout=WAIT)
    assert counts == {"setup": 1, "close": 1}


def test_background_job_leaves_services_running(env: LocalEnvironment) -> None:
    counts: dict[str, int] = {}
    env.register_service("svc", Lifecycle, counts)
    env.from_batch([1]).map(Call).sink(lambda r: None)
    job = env.submit(autostop=False)
    assert job.wait(WAIT)
    assert counts == {"setup": 1}
    assert env.call_service("svc", 1) == 1


def test_close_runs_every_close_hook_and_refuses_later_calls(make_env: Any) -> None:
    env = make_env()
    a: dict[str, int] = {}
    b: dict[str, int] = {}
    env.register_service("a", Lifecycle, a)
    env.register_service("b", Lifecycle, b)
    assert env.call_service("a", 1) == 1
    assert env.call_service("b", 2) == 2
    assert env.close(timeout=WAIT) is True
    assert a == {"setup": 1, "close": 1}
    assert b == {"setup": 1, "close": 1}
    assert env.closed
    assert sage_threads() == []

    with pytest.raises(ServiceUnavailableError, match="closed"):
        env.call_service("a", 1)
    with pytest.raises(ServiceUnavailableError, match="closed"):
        env.call_service_async("b", 1)
    with pytest.raises(RuntimeError, match="closed"):
        env.from_batch([1])
    with pytest.raises(RuntimeError, match="closed"):
        env.submit()
    assert env.close(timeout=WAIT) is True  # closing twice is harmless
    assert a == {"setup": 1, "close": 1}


def test_close_fails_pending_async_calls(make_env: Any, blocker: Any) -> None:
    env = make_env()
    blocker.register(env)
    running = env.call_service_async("slow", "running", method="block", timeout=WAIT * 2)
    assert blocker.entered.wait(WAIT)
    queued = [env.call_service_async("slow", i, timeout=WAIT * 2) for i in range(3)]

    # the worker is stuck in block(), so close reports that it could not stop it in time
    assert env.close(timeout=0.2) is False
    blocker.gate.set()
    for future in [running, *queued]:
        with pytest.raises(ServiceUnavailableError):
            future.result(timeout=WAIT)
    assert blocker.closed.is_set()
    assert blocker.calls == ["running"]  # queued requests never ran


def test_close_fails_pending_async_def_calls(make_env: Any) -> None:
    started = threading.Event()

    class Hang:
        async def process(self) -> None:
            started.set()
            await asyncio.Event().wait()

    env = make_env()
    env.register_service("hang", Hang)
    future = env.call_service_async("hang", timeout=WAIT * 2)
    assert started.wait(WAIT)
    assert env.close(timeout=WAIT) is True
    with pytest.raises(ServiceUnavailableError):
        future.result(timeout=WAIT)


def test_with_statement_closes() -> None:
    counts: dict[str, int] = {}
    with LocalEnvironment("ctx") as env:
        env.register_service("svc", Lifecycle, counts)
        assert env.call_service("svc", 1) == 1
        assert not env.closed
    assert env.closed
    assert counts == {"setup": 1, "close": 1}
    with pytest.raises(ServiceUnavailableError):
        env.call_service("svc", 1)


def test_with_statement_closes_on_error() -> None:
    counts: dict[str, int] = {}
    with pytest.raises(ZeroDivisionError), LocalEnvironment("ctx") as env:
        env.register_service("svc", Lifecycle, counts)
        env.call_service("svc", 1)
        _ = 1 / 0
    assert env.closed
    assert counts == {"setup": 1, "close": 1}


def test_stop_stops_jobs_and_services_but_env_stays_usable(env: LocalEnvironment) -> None:
    counts: dict[str, int] = {}
    env.register_service("svc", Lifecycle, counts)
    running = threading.Event()

    def sink(r: Any) -> None:
        running.set()

    def forever() -> int:
        return 1

    env.from_source(forever).map(Call).sink(sink)
    job = env.submit(autostop=False)
    assert running.wait(WAIT)
    assert env.stop(timeout=WAIT) is True
    assert job.status == "stopped"
    assert counts == {"setup": 1, "close": 1}
    assert sage_threads() == []
    assert not env.closed

    assert env.call_service("svc", 9) == 9  # restarts
    assert counts == {"setup": 2, "close": 1}
    env.clear_pipeline()
    out: list[int] = []
    env.from_batch([1, 2]).map(Call).sink(out.append)
    assert env.submit().status == "finished"
    assert out == [1, 2]


class BrokenSetup:
    def setup(self) -> None:
        raise OSError("no database")

    def process(self) -> str:
        return "never"


def test_service_whose_setup_raises(env: LocalEnvironment) -> None:
    env.register_service("broken", BrokenSetup)
    with pytest.raises(ServiceUnavailableError) as info:
        env.call_service("broken")
    assert isinstance(info.value.__cause__, OSError)
    assert "no database" in str(info.value)
    assert "'broken'" in str(info.value)
    # The next call starts it again: an async call raises the start's error if it failed
    # already, else its future fails with it.
    try:
        error = env.call_service_async("broken").exception(timeout=WAIT)
    except ServiceUnavailableError as exc:
        error = exc
    assert isinstance(error, ServiceUnavailableError)
    assert isinstance(error.__cause__, OSError)
    assert wait_until(lambda: [t for t in sage_threads() if "deadlines" not in t.name] == [])


def test_async_call_during_a_failing_setup_fails_its_future(env: LocalEnvironment) -> None:
    # An async call never waits for setup(): it queues, and its future fails with the
    # start's error when setup() raises.
    gate = threading.Event()

    class SlowBrokenSetup(BrokenSetup):
        def setup(self) -> None:
            gate.wait(WAIT)
            super().setup()

    env.register_service("broken", SlowBrokenSetup)
    future = env.call_service_async("broken")
    gate.set()
    with pytest.raises(ServiceUnavailableError) as info:
        future.result(timeout=WAIT)
    assert isinstance(info.value.__cause__, OSError)
    assert "no database" in str(info.value)
    stats = env.service_statistics()[0]
    assert (stats.rejected, stats.done, stats.failed) == (1, 0, 0)


def test_service_whose_constructor_raises(env: LocalEnvironment) -> None:
    class BrokenInit:
        def __init__(self, size: int) -> None:
            raise ValueError(f"bad size {size}")

        def process(self) -> None:
            pass

    env.register_service("broken", BrokenInit, -1)
    with pytest.raises(ServiceUnavailableError) as info:
        env.call_service("broken")
    assert isinstance(info.value.__cause__, ValueError)
    assert "bad size -1" in str(info.value)


def test_submit_with_broken_service_raises(env: LocalEnvironment) -> None:
    env.register_service("broken", BrokenSetup)
    out: list[int] = []
    env.from_batch([1]).sink(out.append)
    with pytest.raises(ServiceUnavailableError) as info:
        env.submit()
    assert isinstance(info.value.__cause__, OSError)
    assert out == []


def test_submit_with_broken_service_leaves_no_threads(env: LocalEnvironment) -> None:
    counts: dict[str, int] = {}
    env.register_service("a_good", Lifecycle, counts)  # started first (sorted by name)
    env.register_service("z_broken", BrokenSetup)
    env.from_batch([1]).sink(lambda r: None)
    with pytest.raises(ServiceUnavailableError):
        env.submit()
    assert sage_threads() == []
    assert counts == {"setup": 1, "close": 1}


def test_broken_service_can_be_fixed_by_replacing_it(env: LocalEnvironment) -> None:
    env.register_service("svc", BrokenSetup)
    with pytest.raises(ServiceUnavailableError):
        env.call_service("svc")
    env.register_service("svc", lambda: "fixed", replace=True)
    assert env.call_service("svc") == "fixed"


def test_close_with_running_job(make_env: Any) -> None:
    env = make_env()
    seen = threading.Event()
    env.from_source(lambda: 1).sink(lambda r: seen.set())
    job = env.submit(autostop=False)
    assert seen.wait(WAIT)
    assert env.close(timeout=WAIT) is True
    assert job.status == "stopped"
    assert sage_threads() == []


def test_a_stop_right_after_the_first_call_waits_for_the_workers() -> None:
    # The first call may be answered before its start thread has finished; a stop then used
    # to race that thread, and one of the two stops returned at once while the other still
    # joined the workers: stop() said True with a worker alive (seen once in CI; the window
    # is narrow, so this repeats it).
    for i in range(100):
        with LocalEnvironment(f"race{i}") as env:
            env.register_service("echo", lambda x: x)
            assert env.call_service("echo", i) == i
            assert env.stop(timeout=WAIT)
            assert env.threads() == []
