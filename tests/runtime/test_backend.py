"""The backend interface: an environment asks its backend for every task and checks options
with it; the environment's public surface is what the notebook layer builds on."""

from __future__ import annotations

from typing import Any

import pytest

from sage_nb import LocalEnvironment, MapFunction
from sage_nb.runtime.backend import ThreadBackend
from sage_nb.runtime.service.service_factory import (
    ServiceFactory,
    ServiceInstanceContext,
    ServiceOptions,
)


class CountingBackend(ThreadBackend):
    """Threads, counting what the runtime asks for."""

    name = "counting"

    def __init__(self) -> None:
        self.service_tasks: list[str] = []
        self.operator_tasks: list[tuple[str, int]] = []
        self.stops = 0
        self.closes = 0

    def create_service_task(self, context: Any, factory: Any, proxy: Any) -> Any:
        self.service_tasks.append(context.name)
        return super().create_service_task(context, factory, proxy)

    def create_operator_task(self, job: Any, region: Any, index: int, capacity: int) -> Any:
        self.operator_tasks.append((region.label, index))
        return super().create_operator_task(job, region, index, capacity)

    def stop(self) -> None:
        self.stops += 1

    def close(self) -> None:
        self.closes += 1


def test_the_environment_asks_its_backend_for_every_task() -> None:
    backend = CountingBackend()
    out: list[int] = []
    with LocalEnvironment("b", backend=backend) as env:
        env.register_service("double", lambda x: 2 * x)
        env.from_batch(range(10)).keyby(lambda x: x % 2).map(lambda x: x + 1, parallelism=2).sink(
            out.append
        )
        env.submit()
        assert env.backend == "counting"
        assert env.call_service("double", 21) == 42
        env.stop()
        assert backend.stops == 1
    assert backend.closes == 1
    assert sorted(out) == list(range(1, 11))
    # the service started twice: for the job, and again after the job's cleanup stopped it
    assert backend.service_tasks == ["double", "double"]
    assert sorted(backend.operator_tasks) == [
        ("from_batch", 0),
        ("map(lambda)", 0),
        ("map(lambda)", 1),
        ("sink(append)", 0),
    ]


def test_threads_refuse_another_backends_options() -> None:
    with LocalEnvironment("b") as env:
        factory = ServiceFactory("s", lambda x: x, options=ServiceOptions(backend={"num_gpus": 1}))
        with pytest.raises(TypeError, match="num_gpus: options of another backend"):
            env.register_factory(factory)
        assert env.services == []


def test_service_options_are_checked_once_when_made() -> None:
    with pytest.raises(ValueError, match="concurrency must be an int >= 1, got 0"):
        ServiceOptions(concurrency=0)
    with pytest.raises(ValueError, match="overflow must be 'block' or 'fail'"):
        ServiceOptions(overflow="drop")
    with LocalEnvironment("b") as env:
        with pytest.raises(ValueError, match="max_queued must be an int >= 1 or None"):
            env.register_service("s", lambda x: x, max_queued=0)
        assert env.services == []


def test_register_factory_says_what_happened() -> None:
    with LocalEnvironment("b", keep_services=True) as env:
        assert env.register_factory(ServiceFactory("s", lambda x: x)) == "registered"
        env.start_service("s")
        assert env.register_factory(ServiceFactory("s", lambda x: -x), replace=True) == "swapped"
        assert env.call_service("s", 3) == -3
        assert env.service_factory("s").options == ServiceOptions()
        assert env.stop_service("s")
        assert env.service_contexts()["s"].accepting is False
        assert [s.name for s in env.service_statistics()] == ["s"]


def test_a_service_sees_its_own_context_and_calls_through_it() -> None:
    seen: dict[str, Any] = {}

    class Front:
        def process(self, x: int) -> int:
            seen["ctx"] = self.ctx  # type: ignore[attr-defined]
            return self.ctx.call_service("back", x) + 1  # type: ignore[attr-defined,no-any-return]

    with LocalEnvironment("b") as env:
        env.register_service("front", Front)
        env.register_service("back", lambda x: 10 * x)
        assert env.call_service("front", 4) == 41
    ctx = seen["ctx"]
    assert isinstance(ctx, ServiceInstanceContext)
    assert ctx.name == "front"
    assert repr(ctx) == "<ServiceInstanceContext of service 'front'>"


def test_operators_see_an_operator_context() -> None:
    seen: list[Any] = []

    class Tag(MapFunction):
        def execute(self, data: Any) -> Any:
            seen.append((type(self.ctx).__name__, self.ctx.name, self.ctx.index))
            return data

    with LocalEnvironment("b") as env:
        env.from_batch([1]).map(Tag).sink(lambda _: None)
        env.submit()
    assert seen == [("OperatorContext", "map(Tag)", 0)]
