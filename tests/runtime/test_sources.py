"""Sources: from_batch, from_collection and from_source with every kind of input."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support import WAIT

from sage_nb import BatchFunction, LocalEnvironment, SourceFunction, StopSignal


def run_to_list(env: LocalEnvironment, stream: Any) -> list[Any]:
    out: list[Any] = []
    stream.sink(out.append)
    job = env.submit()
    assert job.status == "finished"
    return out


@pytest.mark.parametrize(
    "data",
    [[1, 2, 3, 4], (1, 2, 3, 4), range(1, 5)],
    ids=["list", "tuple", "range"],
)
def test_from_batch_sequences(env: LocalEnvironment, data: Any) -> None:
    assert run_to_list(env, env.from_batch(data)) == [1, 2, 3, 4]


def test_from_batch_generator(env: LocalEnvironment) -> None:
    assert run_to_list(env, env.from_batch(x * x for x in range(5))) == [0, 1, 4, 9, 16]


def test_from_batch_empty_list_finishes(env: LocalEnvironment) -> None:
    assert run_to_list(env, env.from_batch([])) == []


def test_from_collection(env: LocalEnvironment) -> None:
    assert run_to_list(env, env.from_collection(["a", "b", "c"])) == ["a", "b", "c"]


@pytest.mark.parametrize("bad", ["abc", b"abc", 42, None])
def test_from_batch_rejects_non_iterables(env: LocalEnvironment, bad: Any) -> None:
    with pytest.raises(TypeError, match="from_batch"):
        env.from_batch(bad)


class Countdown(BatchFunction):
    """Returns 3, 2, 1, then None; being called again after None is a runtime bug."""

    def __init__(self) -> None:
        self.left = 3
        self.ended = False

    def execute(self) -> Any:
        if self.ended:
            raise AssertionError("execute() called again after it returned None")
        if self.left == 0:
            self.ended = True
            return None
        self.left -= 1
        return self.left + 1

    def __len__(self) -> int:
        return 3


@pytest.mark.parametrize("spec", [Countdown, Countdown()], ids=["class", "instance"])
def test_from_batch_batch_function_ends_on_none(env: LocalEnvironment, spec: Any) -> None:
    out: list[Any] = []
    env.from_batch(spec).sink(out.append)
    job = env.submit(autostop=False)
    assert job.wait(WAIT), "the batch job did not end"
    assert job.error is None, job.error
    assert job.status == "finished"
    assert out == [3, 2, 1]
    assert job.progress() == (3, 3)


class ThreeThenStopSignal(SourceFunction):
    def __init__(self) -> None:
        self.n = 0

    def execute(self) -> Any:
        self.n += 1
        return self.n if self.n <= 3 else StopSignal


class ThreeThenStopIteration(SourceFunction):
    def __init__(self) -> None:
        self.n = 0

    def execute(self) -> Any:
        self.n += 1
        if self.n > 3:
            raise StopIteration
        return self.n


@pytest.mark.parametrize(
    "spec",
    [ThreeThenStopSignal, ThreeThenStopSignal(), ThreeThenStopIteration],
    ids=["StopSignal-class", "StopSignal-instance", "StopIteration-class"],
)
def test_from_source_function_ends_the_stream(env: LocalEnvironment, spec: Any) -> None:
    assert run_to_list(env, env.from_source(spec)) == [1, 2, 3]


def test_from_source_stop_signal_instance(env: LocalEnvironment) -> None:
    items = iter([1, 2])

    def read() -> Any:
        return next(items, StopSignal())

    assert run_to_list(env, env.from_source(read)) == [1, 2]


def test_from_source_plain_callable_raising_stop_iteration(env: LocalEnvironment) -> None:
    items = iter(["x", "y", "z"])
    assert run_to_list(env, env.from_source(lambda: next(items))) == ["x", "y", "z"]


def test_from_source_skips_none(env: LocalEnvironment) -> None:
    items = iter([1, None, 2, None, 3])
    assert run_to_list(env, env.from_source(lambda: next(items))) == [1, 2, 3]


def test_from_source_iterable(env: LocalEnvironment) -> None:
    assert run_to_list(env, env.from_source(iter([5, 6]))) == [5, 6]


class OneRecordThenIdle(SourceFunction):
    """Returns one record, then None ("nothing yet", waiting 10 ms each time) until the sink
    has the record, then StopSignal. Counts the Nones returned before the record arrived."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.sent = False
        self.idle_calls = 0

    def execute(self) -> Any:
        if not self.sent:
            self.sent = True
            return {"id": 1}
        if self.arrived.is_set():
            return StopSignal
        self.idle_calls += 1
        self.arrived.wait(0.01)
        return None


def test_from_source_delivers_a_record_while_the_source_idles(env: LocalEnvironment) -> None:
    # An idle source (returning None) must not hold back what it read until its batch is
    # full: that took batch size x one execute() call (64 x 10 ms here), and as long to stop.
    source = OneRecordThenIdle()
    env.from_source(source).sink(lambda record: source.arrived.set())
    job = env.submit(autostop=False)
    assert job.wait(WAIT), "the job did not end"
    assert job.status == "finished", job.error
    assert source.idle_calls <= 5, f"the record waited for {source.idle_calls} idle calls"
