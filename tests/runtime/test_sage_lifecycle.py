"""SAGE's service lifecycle (``BaseService``: ctx before ``__init__``, setup, start_running or
start, stop, cleanup or close, terminate) next to sage_nb's own (setup, start_running, close),
and feedback loops (``from_future`` / ``fill_future``)."""

from __future__ import annotations

from typing import Any

import pytest

from sage_nb import BaseService, CoMapFunction, LocalEnvironment, ServiceNotFoundError
from sage_nb.runtime.service.service_factory import ServiceFactory


class Recorder(BaseService):
    def __init__(self, log: list[str], *, prefer_start: bool = False) -> None:
        super().__init__()
        self.log = log
        log.append(f"init ctx={self.ctx.name} name={self.name}")

    def setup(self) -> None:
        self.log.append("setup")

    def start_running(self) -> None:
        self.log.append("start_running")

    def start(self) -> None:  # SAGE 0.2 prefers start_running
        self.log.append("start")

    def stop(self) -> None:
        self.log.append("stop")

    def cleanup(self) -> None:
        self.log.append("cleanup")

    def close(self) -> None:  # cleanup wins
        self.log.append("close")

    def terminate(self) -> None:
        self.log.append("terminate")

    def process(self, x: Any) -> Any:
        return ("processed", x)


def test_base_service_runs_sage_lifecycle_in_order(env: LocalEnvironment) -> None:
    log: list[str] = []
    env.register_service("rec", Recorder, log)
    assert env.call_service("rec", 1) == ("processed", 1)
    assert env.stop_service("rec")
    assert log == [
        "init ctx=rec name=rec",
        "setup",
        "start_running",
        "stop",
        "cleanup",
        "terminate",
    ]


def test_sage_hooks_are_not_callable_as_methods(env: LocalEnvironment) -> None:
    env.register_service("rec", Recorder, [])
    for hook in ("stop", "terminate", "setup", "cleanup", "start"):
        with pytest.raises(ServiceNotFoundError):
            env.call_service("rec", method=hook)


def test_a_plain_service_keeps_sage_nb_lifecycle(env: LocalEnvironment) -> None:
    log: list[str] = []

    class Plain:
        def setup(self) -> None:
            log.append("setup")

        def start_running(self) -> None:
            log.append("start_running")

        def start(self) -> str:  # an ordinary method here
            return "started by a caller"

        def stop(self) -> str:
            return "stopped by a caller"

        def close(self) -> None:
            log.append("close")

    env.register_service("plain", Plain)
    assert env.call_service("plain", method="start") == "started by a caller"
    assert env.call_service("plain", method="stop") == "stopped by a caller"
    env.stop_service("plain")
    assert log == ["setup", "start_running", "close"]


def test_sage_lifecycle_can_be_asked_for_any_class(env: LocalEnvironment) -> None:
    log: list[str] = []

    class Old:
        def __init__(self) -> None:
            log.append(f"init ctx={type(getattr(self, 'ctx', None)).__name__}")

        def start(self) -> None:
            log.append("start")

        def close(self) -> None:
            log.append("close")

        def process(self) -> int:
            return 1

    env.register_factory(ServiceFactory("old", Old, lifecycle="sage"))
    assert env.call_service("old") == 1
    env.stop_service("old")
    assert log == ["init ctx=ServiceInstanceContext", "start", "close"]
    with pytest.raises(ValueError, match="lifecycle must be"):
        ServiceFactory("bad", Old, lifecycle="spring")


def test_services_call_each_other_through_base_service(env: LocalEnvironment) -> None:
    class Store(BaseService):
        def __init__(self) -> None:
            self.data = {"a": 1}

        def process(self, key: str) -> Any:
            return self.data.get(key)

    class Front(BaseService):
        def process(self, key: str) -> Any:
            direct = self.call_service("store", key)
            later = self.call_service_async("store", key).result(timeout=5)
            return direct, later

    env.register_service("store", Store)
    env.register_service("front", Front)
    assert env.call_service("front", "a") == (1, 1)


def test_a_base_service_built_by_hand_says_how_to_register_it() -> None:
    class Lonely(BaseService):
        pass

    with pytest.raises(RuntimeError, match=r"register it \(env.register_service"):
        Lonely().call_service("x")


class PassOn(CoMapFunction):
    def map0(self, data: Any) -> Any:
        return data

    def map1(self, data: Any) -> Any:
        return data


def test_a_feedback_loop_ends_when_it_dies_out(env: LocalEnvironment) -> None:
    out: list[Any] = []
    start = env.from_batch([2, 4])
    loop = env.from_future("loop")
    merged = start.connect(loop).comap(PassOn)
    merged.sink(out.append)
    merged.map(lambda n: n - 1).filter(lambda n: n > 0).fill_future(loop)
    job = env.submit()
    assert job.status == "finished"
    assert sorted(out) == [1, 1, 2, 2, 3, 4]


def test_future_streams_must_be_filled_once(env: LocalEnvironment) -> None:
    loop = env.from_future("loop")
    source = env.from_batch([1])
    source.connect(loop).comap(PassOn).sink(lambda r: None)
    with pytest.raises(ValueError, match="'loop' was never filled"):
        env.submit()
    source.fill_future(loop)
    with pytest.raises(RuntimeError, match="already filled"):
        source.fill_future(loop)
    with pytest.raises(ValueError, match=r"made by env\.from_future"):
        source.fill_future(source)
    with pytest.raises(ValueError, match="needs a name"):
        env.from_future("")
