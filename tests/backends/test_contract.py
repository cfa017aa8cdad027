"""The backend contract: the same tests against services and operators on threads
(``LocalEnvironment``) and on Ray actors (``RemoteEnvironment``).

Each test runs once per backend (``backend_env`` is parametrized). Where the backends must
differ (a value Ray cannot serialize), the test says what each one does.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from typing import Any

import pytest
from backend_helpers import (
    WAIT,
    BigEcho,
    Echo,
    Enrich,
    EnrichAsync,
    FailOn,
    Profile,
    Recorder,
    Rendezvous,
    Score,
    WhoAmI,
    big,
)

from sage_nb import (
    BaseEnvironment,
    MapFunction,
    OperatorError,
    ServiceCallError,
    ServiceNotFoundError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)


# -- calls -----------------------------------------------------------------------------------
def test_sync_and_async_calls(backend_env: BaseEnvironment) -> None:
    env = backend_env
    env.register_service("echo", Echo)
    assert env.call_service("echo", 41) == 41
    assert env.call_service("echo", 1, tag="a") == (1, {"tag": "a"})
    futures = [env.call_service_async("echo", i) for i in range(200)]
    assert [f.result(WAIT) for f in futures] == list(range(200))

    async def awaited() -> Any:
        return await env.call_service_async("echo", "awaited")

    assert asyncio.run(awaited()) == "awaited"


@pytest.mark.parametrize("parallelism", [1, 2])
def test_large_values_both_ways(backend_env: BaseEnvironment, parallelism: int) -> None:
    """Values of megabytes, alone and in a batch with small ones, from the caller and from
    operators (on Ray: actors calling the service actor directly)."""
    env = backend_env
    env.register_service("echo", Echo)
    assert env.call_service("echo", big(1)) == big(1)
    mixed = [b"small", big(2), 7, big(3)] * 3
    futures = [env.call_service_async("echo", value) for value in mixed]
    assert [f.result(WAIT) for f in futures] == mixed
    out: list[bool] = []
    env.from_batch(list(range(4))).map(BigEcho, parallelism=parallelism).sink(out.append)
    assert env.submit().status == "finished"
    assert out == [True] * 4


def test_method_picks_another_method(backend_env: BaseEnvironment) -> None:
    env = backend_env
    env.register_service("echo", Echo)
    assert env.call_service("echo", 21, method="double") == 42
    assert env.call_service_async("echo", 4, method="double").result(WAIT) == 8
    assert env.call_service("echo", 1, method="later") == 2  # an async def method


def test_function_and_decorator_registration(backend_env: BaseEnvironment) -> None:
    env = backend_env
    env.register_service("triple", lambda x: 3 * x)

    @env.register_service("greet")
    class Greeter:
        def process(self, name: str) -> str:
            return f"hello {name}"

    assert env.call_service("triple", 5) == 15
    assert env.call_service("greet", "ray") == "hello ray"
    assert Greeter.__name__ == "Greeter"  # the decorator returns the class


def test_service_error_carries_type_message_and_traceback(backend_env: BaseEnvironment) -> None:
    env = backend_env
    env.register_service("echo", Echo)
    with pytest.raises(ServiceCallError) as info:
        env.call_service("echo", 7, method="fail")
    err = info.value
    assert err.service_name == "echo" and err.method_name == "fail"
    assert err.remote_type == "ValueError"
    assert err.remote_message == "bad input 7"
    assert 'raise ValueError(f"bad input {x!r}")' in err.remote_traceback
    assert isinstance(err.__cause__, ValueError)
    future = env.call_service_async("echo", 8, method="fail")
    with pytest.raises(ServiceCallError, match="bad input 8"):
        future.result(WAIT)
    assert env.call_service("echo", "still serving") == "still serving"


def test_unknown_service_and_method(backend_env: BaseEnvironment) -> None:
    env = backend_env
    env.register_service("echo", Echo)
    with pytest.raises(ServiceNotFoundError, match="registered: 'echo'"):
        env.call_service("nope", 1)
    with pytest.raises(ServiceNotFoundError) as info:
        env.call_service("echo", 1, method="nope")
    assert info.value.method_name == "nope"
    assert "double" in info.value.registered
    with pytest.raises(ServiceNotFoundError):
        env.call_service_async("echo", 1, method="_private").result(WAIT)
    assert env.call_service("echo", 2) == 2


# -- timeouts --------------------------------------------------------------------------------
def test_timed_out_request_that_had_not_started_never_runs(
    backend_env: BaseEnvironment, rendezvous: Rendezvous
) -> None:
    env = backend_env
    gate, entered = rendezvous.gate(), rendezvous.signal()
    env.register_service("rec", Recorder, gate, entered)
    first = env.call_service_async("rec", "a", method="block", timeout=WAIT)
    assert entered.wait() == "a"
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service("rec", "b", method="block", timeout=0.3)
    assert info.value.started is False
    late = env.call_service_async("rec", "c", method="block", timeout=0.3)
    with pytest.raises(ServiceTimeoutError):
        late.result(WAIT)
    gate.open()
    assert first.result(WAIT) == "a"
    assert env.call_service("rec", method="seen") == ["a"]  # neither b nor c ever ran


def test_timeout_of_a_running_call(backend_env: BaseEnvironment, rendezvous: Rendezvous) -> None:
    env = backend_env
    gate, entered = rendezvous.gate(), rendezvous.signal()
    env.register_service("rec", Recorder, gate, entered)
    env.start_service("rec")  # a call's timeout counts the start too (an actor takes ~1 s)
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service("rec", "slow", method="block", timeout=0.5)
    assert info.value.started is True
    assert entered.wait() == "slow"
    gate.open()
    assert env.call_service("rec", "next") == "next"  # the service answers the next call


# -- pipelines -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mapper", "parallelism"), [(Enrich, 1), (Enrich, 2), (EnrichAsync, 2)], ids=str
)
def test_operators_call_services_that_call_services(
    backend_env: BaseEnvironment, parallelism: int, mapper: type[MapFunction]
) -> None:
    env = backend_env
    env.register_service("score", Score)
    env.register_service("profile", Profile)
    out: list[Any] = []
    env.from_batch(list(range(50))).map(mapper, parallelism=parallelism).sink(out.append)
    job = env.submit()
    assert job.status == "finished"
    assert sorted(out, key=lambda r: r["x"]) == [{"x": i, "score": 10 * i} for i in range(50)]
    nodes = {n.label: n for n in job.statistics().nodes}
    node = nodes[f"map({mapper.__name__})"]
    assert node.records_in == node.records_out == 50
    assert node.calls == ("profile",)


def test_parallel_keyby_sends_every_key_to_one_instance(backend_env: BaseEnvironment) -> None:
    env = backend_env
    records = [{"user": f"user-{i % 17}", "n": i} for i in range(400)]
    out: list[Any] = []
    (
        env.from_batch(records)
        .map(lambda r: {**r, "seen": True}, parallelism=2)  # two upstream instances
        .keyby(lambda r: r["user"])
        .map(WhoAmI, parallelism=2)
        .sink(out.append)
    )
    job = env.submit()
    assert job.status == "finished"
    assert sorted(r["n"] for r, _ in out) == list(range(400))
    instances: dict[str, set[Any]] = defaultdict(set)
    for record, instance in out:
        instances[record["user"]].add(instance)
    assert all(len(where) == 1 for where in instances.values()), dict(instances)
    assert len({w for where in instances.values() for w in where}) > 1  # keys were spread


def test_operator_failure_names_operator_and_record(backend_env: BaseEnvironment) -> None:
    env = backend_env
    out: list[Any] = []
    env.from_batch(list(range(40))).map(FailOn, parallelism=2).sink(out.append)
    with pytest.raises(OperatorError) as info:
        env.submit()
    err = info.value
    assert err.operator == "map(FailOn)"
    assert err.record == 13
    assert "ZeroDivisionError: cannot take 13" in str(err)
    assert env.jobs[-1].status == "failed"


def test_skipped_and_dead_lettered_records_are_counted(backend_env: BaseEnvironment) -> None:
    env = backend_env
    out: list[Any] = []
    (
        env.from_batch(list(range(30)))
        .map(FailOn(13), parallelism=2, on_error="dead_letter")
        .map(FailOn(20), parallelism=2, on_error="skip")
        .sink(out.append)
    )
    job = env.submit()
    assert sorted(out) == [i for i in range(30) if i not in (13, 20)]
    assert [(d.operator, d.record) for d in job.dead_letters] == [("map(FailOn)", 13)]
    assert "cannot take 13" in str(job.dead_letters[0].error)
    assert sum(n.errors for n in job.statistics().nodes) == 2


def test_stop_a_running_job(backend_env: BaseEnvironment, rendezvous: Rendezvous) -> None:
    env = backend_env
    gate, entered = rendezvous.gate(), rendezvous.signal()
    env.register_service("rec", Recorder, gate, entered)

    class Blocks(MapFunction):
        def execute(self, record: int) -> int:
            if record == 0:
                self.call_service("rec", record, method="block", timeout=WAIT)
            return record

    env.from_batch(list(range(100))).map(Blocks, parallelism=2).sink(lambda r: None)
    job = env.submit(autostop=False)
    assert entered.wait() == "0"
    gate.open()
    assert job.stop(timeout=WAIT)
    assert job.status in ("stopped", "finished")


# -- serialization ---------------------------------------------------------------------------
def test_values_the_backend_cannot_carry(backend_env: BaseEnvironment) -> None:
    """Threads pass any object; Ray fails that call alone with a ``TypeError`` naming the
    service, the method and the type, and the service answers the next call."""
    env = backend_env
    env.register_service("echo", Echo)
    lock = threading.Lock()
    if env.backend == "threads":
        assert env.call_service("echo", lock) is lock
        assert env.call_service("echo", method="make_lock") is not None
        return
    with pytest.raises(TypeError, match=r"arguments of echo\.process .*_thread\.lock"):
        env.call_service("echo", lock)
    with pytest.raises(TypeError, match=r"argument 'key' .*_thread\.lock"):
        env.call_service_async("echo", 1, key=lock).result(WAIT)
    with pytest.raises(TypeError, match=r"result of echo\.make_lock .*_thread\.lock"):
        env.call_service("echo", method="make_lock")
    assert env.call_service("echo", "fine") == "fine"


# -- lifecycle -------------------------------------------------------------------------------
def test_stop_then_call_restarts_the_service(backend_env: BaseEnvironment) -> None:
    env = backend_env
    env.register_service("echo", Echo)
    first = env.call_service("echo", method="pid")
    assert env.stop(timeout=WAIT)
    assert env.threads() == []
    if env.backend == "ray":
        assert env.actors() == []  # type: ignore[attr-defined]
    assert env.call_service("echo", 5) == 5  # started again on demand
    if env.backend == "ray":
        assert env.call_service("echo", method="pid") != first  # a new actor


def test_closed_environment_refuses_calls(make_env: Any) -> None:
    env = make_env()
    env.register_service("echo", Echo)
    assert env.call_service("echo", 1) == 1
    assert env.close(timeout=WAIT)
    assert env.threads() == []
    with pytest.raises(ServiceUnavailableError):
        env.call_service("echo", 1)
