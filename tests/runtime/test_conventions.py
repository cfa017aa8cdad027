"""SAGE's calling conventions in sage_nb's own API (a strict superset of what it had): classes
with their constructor's arguments through every stream method and source, ``delay=``, keyby
strategies, the function context (``parallel_index``, ``get_key()``, ``self.name``), and
``setup(context)``."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sage_nb import (
    CoMapFunction,
    FilterFunction,
    FlatMapFunction,
    JoinFunction,
    KeyByFunction,
    LocalEnvironment,
    MapFunction,
    SinkFunction,
    SourceFunction,
    StopSignal,
)
from sage_nb.core.functions import BatchFunction


class Collect(SinkFunction):
    def __init__(self, out: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out = out

    def execute(self, data: Any) -> None:
        self.out.append(data)


class Scale(MapFunction):
    def __init__(self, factor: int, *, offset: int = 0) -> None:
        super().__init__(factor, offset=offset)
        self.factor = factor
        self.offset = offset

    def execute(self, data: Any) -> Any:
        return data * self.factor + self.offset


class Above(FilterFunction):
    def __init__(self, limit: int) -> None:
        self.limit = limit

    def execute(self, data: Any) -> bool:
        return bool(data > self.limit)


class Repeat(FlatMapFunction):
    def __init__(self, times: int) -> None:
        self.times = times

    def execute(self, data: Any) -> Any:
        return [data] * self.times


class Numbers(BatchFunction):
    def __init__(self, n: int, *, start: int = 0) -> None:
        self.i = start
        self.end = start + n

    def execute(self) -> Any:
        if self.i >= self.end:
            return None
        self.i += 1
        return self.i - 1


def test_constructor_arguments_go_through_every_method(env: LocalEnvironment) -> None:
    out: list[Any] = []
    (
        env.from_batch(Numbers, 4, start=1)
        .map(Scale, 10, offset=1)
        .filter(Above, 15)
        .flatmap(Repeat, 2)
        .sink(Collect, out)
    )
    env.submit()
    assert out == [21, 21, 31, 31, 41, 41]


def test_the_very_objects_given_reach_every_instance(env: LocalEnvironment) -> None:
    out: list[Any] = []
    made: list[Collect] = []

    class Tracked(Collect):
        def __init__(self, out: list[Any]) -> None:
            super().__init__(out)
            made.append(self)

    env.from_batch(range(20)).sink(Tracked, out, parallelism=2)
    env.submit()
    assert len(made) == 2 and made[0] is not made[1]
    assert all(m.out is out for m in made)  # no copies of the argument
    assert sorted(out) == list(range(20))


def test_instances_are_built_at_submit_each_time(env: LocalEnvironment) -> None:
    built: list[int] = []

    class Counted(MapFunction):
        def __init__(self) -> None:
            built.append(1)

        def execute(self, data: Any) -> Any:
            return data

    env.from_batch([1]).map(Counted).sink(lambda r: None)
    assert built == []  # building the pipeline builds nothing
    env.submit()
    env.submit()
    assert len(built) == 2


def test_arguments_after_a_non_class_are_refused(env: LocalEnvironment) -> None:
    with pytest.raises(TypeError, match=r"must be a class.*functools.partial"):
        env.from_batch([1]).map(lambda r: r, 3)
    with pytest.raises(TypeError, match="must be a class"):
        env.from_batch([1, 2], 3)


def test_from_source_and_from_collection_take_classes_with_arguments(
    env: LocalEnvironment,
) -> None:
    class Countdown(SourceFunction):
        def __init__(self, n: int) -> None:
            self.n = n

        def execute(self) -> Any:
            self.n -= 1
            return StopSignal("countdown") if self.n < 0 else self.n

    out: list[Any] = []
    env.from_source(Countdown, 3, name="countdown").sink(Collect, out)
    env.submit()
    assert out == [2, 1, 0]
    env.clear_pipeline()
    out.clear()
    env.from_collection(Numbers, 3).sink(Collect, out)
    env.submit()
    assert out == [0, 1, 2]


def test_a_source_function_gets_its_context_and_lifecycle(env: LocalEnvironment) -> None:
    seen: list[Any] = []

    @env.register_service("double")
    def double(x: int) -> int:
        return 2 * x

    class Calling(BatchFunction):
        def setup(self) -> None:
            seen.append(("setup", self.ctx.name))
            self.left = 2

        def execute(self) -> Any:
            if not self.left:
                return None
            self.left -= 1
            return self.call_service("double", self.left)

        def close(self) -> None:
            seen.append("close")

    out: list[Any] = []
    env.from_batch(Calling).sink(out.append)
    env.submit()
    assert out == [2, 0]
    assert seen == [("setup", "from_batch"), "close"]


def test_stop_signal_takes_a_name() -> None:
    signal = StopSignal("source-1")
    assert signal.name == "source-1"
    assert repr(signal) == "StopSignal('source-1')"
    assert StopSignal().name is None


def test_sink_returns_the_stream_it_was_called_on(env: LocalEnvironment) -> None:
    a: list[Any] = []
    b: list[Any] = []
    stream = env.from_batch([1, 2, 3]).map(lambda x: x + 1)
    assert stream.sink(a.append).sink(b.append) is stream
    env.submit()
    assert a == b == [2, 3, 4]


class KeyOf(KeyByFunction):
    def __init__(self, modulo: int) -> None:
        self.modulo = modulo

    def execute(self, data: Any) -> Any:
        return data % self.modulo


class Where(MapFunction):
    """Tags a record with its key, instance and SAGE's name of the instance."""

    def execute(self, data: Any) -> Any:
        return (data, self.ctx.get_key(), self.ctx.parallel_index, self.name)


def test_get_key_and_instance_names_after_keyby(env: LocalEnvironment) -> None:
    out: list[Any] = []
    env.from_batch(range(6)).keyby(KeyOf, 3).map(Where, parallelism=2, name="where").sink(
        Collect, out
    )
    env.submit()
    assert sorted(r[:2] for r in out) == [(i, i % 3) for i in range(6)]
    by_key: dict[int, set[int]] = {}
    for _, key, index, name in out:
        by_key.setdefault(key, set()).add(index)
        assert name == f"where_{index}"
    assert all(len(v) == 1 for v in by_key.values())  # one instance per key


def test_the_key_stays_with_records_downstream(env: LocalEnvironment) -> None:
    out: list[Any] = []
    (
        env.from_batch(range(4))
        .keyby(lambda x: f"k{x % 2}")
        .map(lambda x: x * 100)  # the record changes, its key does not
        .filter(lambda x: x >= 0)
        .map(Where)
        .sink(Collect, out)
    )
    env.submit()
    assert [r[:2] for r in out] == [(0, "k0"), (100, "k1"), (200, "k0"), (300, "k1")]


def test_get_key_is_none_on_an_unkeyed_stream(env: LocalEnvironment) -> None:
    out: list[Any] = []
    env.from_batch([1]).map(Where).sink(Collect, out)
    env.submit()
    assert out == [(1, None, 0, "Where_0")]


def test_broadcast_gives_every_instance_every_record(env: LocalEnvironment) -> None:
    out: list[Any] = []
    env.from_batch(range(5)).keyby(KeyOf, 2, strategy="broadcast").map(Where, parallelism=2).sink(
        Collect, out
    )
    env.submit()
    assert sorted((r[0], r[2]) for r in out) == [(i, j) for i in range(5) for j in (0, 1)]
    assert all(r[1] == r[0] % 2 for r in out)


def test_round_robin_spreads_records_and_keeps_keys(env: LocalEnvironment) -> None:
    out: list[Any] = []
    env.from_batch(range(4000)).keyby(KeyOf, 2, strategy="round_robin").map(
        Where, parallelism=2
    ).sink(Collect, out)
    env.submit()
    assert sorted(r[0] for r in out) == list(range(4000))
    assert {r[2] for r in out} == {0, 1}  # both instances took records
    assert all(r[1] == r[0] % 2 for r in out)


def test_an_unknown_strategy_is_refused(env: LocalEnvironment) -> None:
    with pytest.raises(ValueError, match=r"strategy must be one of 'hash', 'broadcast'"):
        env.from_batch([1]).keyby(lambda x: x, strategy="random")


def test_setup_with_a_context_argument_gets_the_context(env: LocalEnvironment) -> None:
    seen: list[Any] = []

    class WithContext(MapFunction):
        def setup(self, context: Any) -> None:
            seen.append((context is self.ctx, context.parallel_index))

        def execute(self, data: Any) -> Any:
            return data

    class WithoutArgument(MapFunction):
        def setup(self) -> None:
            seen.append("plain")

        def execute(self, data: Any) -> Any:
            return data

    env.from_batch([1]).map(WithContext).map(WithoutArgument).sink(lambda r: None)
    env.submit()
    assert seen == [(True, 0), "plain"]


def test_functions_have_a_logger_named_after_them(env: LocalEnvironment) -> None:
    names: list[str] = []

    class Logs(MapFunction):
        def execute(self, data: Any) -> Any:
            names.append(self.logger.name)
            return data

    fn = Logs()
    assert fn.name == "Logs" and fn.logger.name == "sage_nb.function.Logs"
    fn.name = "custom"
    assert fn.name == "custom"
    env.from_batch([1]).map(Logs, name="logs").sink(lambda r: None)
    env.submit()
    assert names == ["sage_nb.function.logs_0"]


def test_comap_and_join_take_classes_with_arguments(env: LocalEnvironment) -> None:
    class Tag(CoMapFunction):
        def __init__(self, left: str, right: str) -> None:
            self.tags = (left, right)

        def map0(self, data: Any) -> Any:
            return (self.tags[0], data)

        def map1(self, data: Any) -> Any:
            return (self.tags[1], data)

    class Pair(JoinFunction):
        def __init__(self, sep: str) -> None:
            super().__init__()
            self.sep = sep

        def join(self, left: Any, right: Any) -> Any:
            return f"{left}{self.sep}{right}"

    tagged: list[Any] = []
    joined: list[Any] = []
    a = env.from_batch([1, 2])
    b = env.from_batch([3])
    a.connect(b).comap(Tag, "a", "b").sink(Collect, tagged)
    left = env.from_batch(["x1", "y2"]).keyby(lambda s: s[1])
    right = env.from_batch(["1p", "2q"]).keyby(lambda s: s[0])
    left.connect(right).join(Pair, "+").sink(Collect, joined)
    env.submit()
    assert sorted(tagged) == [("a", 1), ("a", 2), ("b", 3)]
    assert sorted(joined) == ["x1+1p", "y2+2q"]


def test_connected_streams_map_and_sink_see_the_union(env: LocalEnvironment) -> None:
    mapped: list[Any] = []
    sunk: list[Any] = []
    a = env.from_batch([1, 2])
    b = env.from_batch([10])
    connected = a.connect(b)
    connected.map(Scale, 2).sink(Collect, mapped)
    connected.sink(Collect, sunk)
    env.submit()
    assert sorted(mapped) == [2, 4, 20]
    assert sorted(sunk) == [1, 2, 10]


def test_connected_keyby_keys_each_stream(env: LocalEnvironment) -> None:
    out: list[Any] = []
    a = env.from_batch([("k", 1)])
    b = env.from_batch([{"id": "k", "v": 2}])
    keyed = a.connect(b).keyby([lambda t: t[0], lambda d: d["id"]])
    keyed.join(lambda left, right: (left[1], right["v"])).sink(Collect, out)
    env.submit()
    assert out == [(1, 2)]
    with pytest.raises(ValueError, match="2 connected streams"):
        a.connect(b).keyby([lambda t: t])


def test_source_delay_paces_records(env: LocalEnvironment) -> None:
    got = threading.Event()
    out: list[Any] = []

    def take(record: Any) -> None:
        out.append(record)
        got.set()

    env.from_source(lambda: 1, delay=30.0).sink(take)
    job = env.submit(autostop=False)
    assert got.wait(5.0)
    assert not job.wait(0.3)  # the next record is 30 s away
    job.stop()
    assert out == [1]
    with pytest.raises(ValueError, match="delay must be a number of seconds"):
        env.from_batch([1], delay=-1)


def test_on_error_log_logs_the_record_and_goes_on(
    env: LocalEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    def fragile(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x

    out: list[Any] = []
    env.from_batch([1, 2, 3]).map(fragile, on_error="log").sink(out.append)
    with caplog.at_level("ERROR", logger="sage_nb"):
        job = env.submit()
    assert out == [1, 3]
    assert job.status == "finished"
    (record,) = [r for r in caplog.records if "failed on record" in r.getMessage()]
    assert "map(fragile) failed on record 2" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_a_map_passes_none_on_in_sage_nb_own_api(env: LocalEnvironment) -> None:
    out: list[Any] = []
    env.from_batch([1, 2]).map(lambda x: None if x == 1 else x).sink(out.append)
    env.submit()
    assert out == [None, 2]  # sage_nb keeps its own semantics; sage_nb.compat drops it


def test_set_console_log_level(env: LocalEnvironment) -> None:
    import logging

    from sage_nb.core.logs import console_handler

    logger = logging.getLogger("sage_nb")
    before = logger.level
    try:
        env.set_console_log_level("error")
        assert console_handler().level == logging.ERROR
        assert logger.level == logging.ERROR
        with pytest.raises(ValueError, match="log level must be one of DEBUG"):
            env.set_console_log_level("loud")
    finally:
        logger.setLevel(before)
        console_handler().setLevel(logging.NOTSET)
