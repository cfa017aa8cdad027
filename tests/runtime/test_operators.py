"""One-input operators: map, filter, flatmap, sink, print; fan-out; parallel instances; setup
and close hooks; record order and completeness."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sage_nb import (
    FilterFunction,
    FlatMapFunction,
    LocalEnvironment,
    MapFunction,
    SinkFunction,
)


def collect(env: LocalEnvironment, stream: Any) -> list[Any]:
    out: list[Any] = []
    stream.sink(out.append)
    assert env.submit().status == "finished"
    return out


class AddTen(MapFunction):
    def execute(self, data: int) -> int:
        return data + 10


@pytest.mark.parametrize(
    "fn", [AddTen, AddTen(), lambda x: x + 10], ids=["class", "instance", "callable"]
)
def test_map(env: LocalEnvironment, fn: Any) -> None:
    assert collect(env, env.from_batch([1, 2, 3]).map(fn)) == [11, 12, 13]


class Even(FilterFunction):
    def execute(self, data: int) -> bool:
        return data % 2 == 0


@pytest.mark.parametrize(
    "fn", [Even, Even(), lambda x: x % 2 == 0], ids=["class", "instance", "callable"]
)
def test_filter(env: LocalEnvironment, fn: Any) -> None:
    assert collect(env, env.from_batch(range(10)).filter(fn)) == [0, 2, 4, 6, 8]


class Repeat(FlatMapFunction):
    def execute(self, data: int) -> list[int]:
        return [data] * data


@pytest.mark.parametrize(
    "fn", [Repeat, Repeat(), lambda x: [x] * x], ids=["class", "instance", "callable"]
)
def test_flatmap(env: LocalEnvironment, fn: Any) -> None:
    assert collect(env, env.from_batch([0, 1, 2, 3]).flatmap(fn)) == [1, 2, 2, 3, 3, 3]


def test_flatmap_returning_none_emits_nothing(env: LocalEnvironment) -> None:
    def halves(x: int) -> list[int] | None:
        return None if x % 2 else [x // 2]

    assert collect(env, env.from_batch(range(6)).flatmap(halves)) == [0, 1, 2]


def test_flatmap_generator(env: LocalEnvironment) -> None:
    def pairs(x: int) -> Any:
        yield x
        yield -x

    assert collect(env, env.from_batch([1, 2]).flatmap(pairs)) == [1, -1, 2, -2]


@pytest.mark.parametrize("as_instance", [False, True], ids=["class", "instance"])
def test_sink_function(env: LocalEnvironment, as_instance: bool) -> None:
    seen: list[Any] = []

    class Collect(SinkFunction):
        def execute(self, data: Any) -> Any:
            seen.append(data)
            return "ignored"

    env.from_batch(["a", "b"]).sink(Collect() if as_instance else Collect)
    assert env.submit().status == "finished"
    assert seen == ["a", "b"]


def test_print_without_prefix(env: LocalEnvironment, capsys) -> None:
    env.from_batch([1, {"a": 2}]).print()
    assert env.submit().status == "finished"
    assert capsys.readouterr().out == "1\n{'a': 2}\n"


def test_print_with_prefix(env: LocalEnvironment, capsys) -> None:
    env.from_batch([1, 2]).print("out:")
    assert env.submit().status == "finished"
    assert capsys.readouterr().out == "out: 1\nout: 2\n"


def test_chain_of_operators(env: LocalEnvironment) -> None:
    stream = (
        env.from_batch(range(10))
        .map(lambda x: x * 3)
        .filter(lambda x: x % 2 == 1)
        .flatmap(lambda x: [x, x + 1])
        .map(lambda x: str(x))
    )
    assert collect(env, stream) == ["3", "4", "9", "10", "15", "16", "21", "22", "27", "28"]


def test_fan_out_feeds_both_branches(env: LocalEnvironment) -> None:
    doubled: list[int] = []
    odd: list[int] = []
    source = env.from_batch(range(6))
    source.map(lambda x: x * 2).sink(doubled.append)
    source.filter(lambda x: x % 2).sink(odd.append)
    assert env.submit().status == "finished"
    assert doubled == [0, 2, 4, 6, 8, 10]
    assert odd == [1, 3, 5]


def test_fan_out_with_mutating_branch_does_not_change_the_other(env: LocalEnvironment) -> None:
    left: list[Any] = []
    right: list[Any] = []
    source = env.from_batch([1, 2])
    source.map(lambda x: ("left", x)).sink(left.append)
    source.map(lambda x: ("right", x)).sink(right.append)
    env.submit()
    assert left == [("left", 1), ("left", 2)]
    assert right == [("right", 1), ("right", 2)]


class Tracked(MapFunction):
    """Records which object handled what, and how often its hooks ran."""

    lock = threading.Lock()
    setups: dict[int, int] = {}
    closes: dict[int, int] = {}
    indices: dict[int, int] = {}
    records: dict[int, int] = {}

    @classmethod
    def reset(cls) -> None:
        cls.setups, cls.closes, cls.indices, cls.records = {}, {}, {}, {}

    def setup(self) -> None:
        with self.lock:
            self.setups[id(self)] = self.setups.get(id(self), 0) + 1
            self.indices[id(self)] = self.ctx.index

    def execute(self, data: Any) -> Any:
        with self.lock:
            self.records[id(self)] = self.records.get(id(self), 0) + 1
        return data

    def close(self) -> None:
        with self.lock:
            self.closes[id(self)] = self.closes.get(id(self), 0) + 1


@pytest.fixture
def tracked() -> type[Tracked]:
    Tracked.reset()
    return Tracked


def test_setup_and_close_run_once(env: LocalEnvironment, tracked: type[Tracked]) -> None:
    out = collect(env, env.from_batch(range(100)).map(tracked))
    assert out == list(range(100))
    assert list(tracked.setups.values()) == [1]
    assert tracked.closes == tracked.setups
    assert sum(tracked.records.values()) == 100


def test_parallel_class_creates_distinct_instances(
    env: LocalEnvironment, tracked: type[Tracked]
) -> None:
    out = collect(env, env.from_batch(range(1000)).map(tracked, parallelism=3))
    assert sorted(out) == list(range(1000))
    assert len(tracked.setups) == 3  # three distinct objects
    assert sorted(tracked.indices.values()) == [0, 1, 2]
    assert set(tracked.setups.values()) == {1}
    assert tracked.closes == tracked.setups
    assert sum(tracked.records.values()) == 1000


def test_parallel_instance_is_copied_per_instance(
    env: LocalEnvironment, tracked: type[Tracked]
) -> None:
    out = collect(env, env.from_batch(range(50)).map(tracked(), parallelism=2))
    assert sorted(out) == list(range(50))
    assert len(tracked.setups) == 2
    assert sorted(tracked.indices.values()) == [0, 1]
    assert tracked.closes == tracked.setups


def test_parallel_instance_that_calls_services_runs_again(env: LocalEnvironment) -> None:
    # The first job leaves its context (a proxy with queues and locks) on the user's instance;
    # the copies for the second job must not try to copy it.
    class Enrich(MapFunction):
        def execute(self, data: Any) -> Any:
            return self.call_service("double", data)

    env.register_service("double", lambda x: 2 * x)
    enrich = Enrich()
    out: list[Any] = []
    env.from_batch(range(20)).map(enrich, parallelism=3).sink(out.append)
    env.submit()
    first = enrich.ctx
    env.submit()
    assert sorted(out) == sorted(2 * x for x in range(20) for _ in range(2))
    assert enrich.ctx is not first  # the instance itself runs again, with the new job's context


def test_function_ctx_describes_the_instance(env: LocalEnvironment) -> None:
    seen: list[tuple[str, int, int]] = []

    class Who(MapFunction):
        def setup(self) -> None:
            seen.append((self.ctx.name, self.ctx.index, self.ctx.parallelism))

        def execute(self, data: Any) -> Any:
            return data

    collect(env, env.from_batch([1]).map(Who, parallelism=2))
    assert sorted(seen) == [("map(Who)", 0, 2), ("map(Who)", 1, 2)]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_invalid_parallelism_raises(env: LocalEnvironment, bad: Any) -> None:
    with pytest.raises(ValueError, match="parallelism"):
        env.from_batch([1]).map(lambda x: x, parallelism=bad)


def test_operator_without_entry_point_is_rejected(env: LocalEnvironment) -> None:
    class NoExecute:
        pass

    with pytest.raises(TypeError, match=r"NoExecute cannot be used for map"):
        env.from_batch([1]).map(NoExecute)
    with pytest.raises(TypeError, match="map needs a function"):
        env.from_batch([1]).map(42)


def test_large_input_keeps_order_and_loses_nothing(env: LocalEnvironment) -> None:
    n = 100_000
    out = collect(env, env.from_batch(range(n)).map(lambda x: x + 1).filter(lambda x: True))
    assert len(out) == n
    assert out == list(range(1, n + 1))


def test_large_input_keeps_order_across_a_queue(env: LocalEnvironment) -> None:
    """comap is its own task, so every record crosses a queue between two threads."""
    n = 100_000
    stream = env.from_batch(range(n)).connect(env.from_batch([])).comap(lambda x: x, lambda x: x)
    out = collect(env, stream)
    assert len(out) == n
    assert out == list(range(n))
    job = env.jobs[-1]
    assert job.progress() == (n, n)
