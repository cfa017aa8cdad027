"""sage_nb measurements: the same work as ``bench.floors``, through the runtime."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sage_nb import LocalEnvironment, MapFunction

from .timing import sliding_window, time_each

__all__ = [
    "Echo",
    "Enrich",
    "async_window",
    "echo_environment",
    "enrich_pipeline",
    "map_map_pipeline",
    "sync_samples",
]


class Echo:
    """The service every figure calls: returns its argument."""

    def process(self, x: Any) -> Any:
        return x


class Enrich(MapFunction):
    """One sync service call per record."""

    def execute(self, record: Any) -> Any:
        return self.call_service("echo", record)


def echo_environment(name: str = "bench") -> LocalEnvironment:
    """A ``LocalEnvironment(keep_services=True)`` with the ``echo`` service running."""
    env = LocalEnvironment(name, keep_services=True)
    env.register_service("echo", Echo)
    if env.call_service("echo", 0) != 0:  # starts the service
        raise AssertionError("echo service returned a wrong result")
    return env


def sync_samples(env: LocalEnvironment, n: int) -> list[int]:
    """Per-call durations (ns) of ``n`` ``env.call_service("echo", i)``."""
    call = env.call_service
    return time_each(lambda i: call("echo", i), n)


def async_window(env: LocalEnvironment, n: int, window: int) -> float:
    """``n`` ``env.call_service_async("echo", i)`` with ``window`` outstanding; seconds."""
    call = env.call_service_async
    return sliding_window(lambda i: call("echo", i), n, window)


def map_map_pipeline(
    data: Sequence[Any], f: Callable[[Any], Any], g: Callable[[Any], Any]
) -> tuple[float, list[Any]]:
    """``from_batch(data).map(f).map(g).sink(out.append)`` in a fresh environment; returns
    (seconds of ``env.submit()``, compile included, and out)."""
    out: list[Any] = []
    env = LocalEnvironment("bench-pipeline")
    try:
        env.from_batch(data).map(f).map(g).sink(out.append)
        start = time.perf_counter()
        env.submit()
        took = time.perf_counter() - start
    finally:
        env.close()
    return took, out


def enrich_pipeline(env: LocalEnvironment, data: Sequence[Any]) -> tuple[float, list[Any]]:
    """``from_batch(data).map(Enrich()).sink(out.append)`` on ``env`` (its echo service keeps
    running between runs); returns (seconds of ``env.submit()``, out)."""
    out: list[Any] = []
    env.clear_pipeline()
    env.from_batch(data).map(Enrich()).sink(out.append)
    start = time.perf_counter()
    env.submit()
    took = time.perf_counter() - start
    env.clear_pipeline()
    return took, out
