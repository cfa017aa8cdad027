"""Operator failures: the error names the operator and the record, the job fails, nothing
hangs, and the environment runs the next job."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from support import WAIT

from sage_nb import (
    LocalEnvironment,
    MapFunction,
    OperatorError,
    ServiceCallError,
    ServiceNotFoundError,
)


def boom(x: Any) -> Any:
    if x == 3:
        raise ValueError(f"bad record {x}")
    return x


def test_map_failure_names_operator_and_record(env: LocalEnvironment) -> None:
    out: list[int] = []
    env.from_batch(range(10)).map(boom).sink(out.append)
    with pytest.raises(OperatorError) as info:
        env.submit()
    err = info.value
    assert err.operator == "map(boom)"
    assert err.record == 3
    assert "'map(boom)'" in str(err)
    assert "record 3" in str(err)
    assert "ValueError: bad record 3" in str(err)
    assert isinstance(err.__cause__, ValueError)
    job = env.jobs[-1]
    assert job.status == "failed"
    assert job.error is err
    assert 3 not in out


@pytest.mark.parametrize(
    ("build", "label"),
    [
        (lambda s: s.filter(boom), "filter(boom)"),
        (lambda s: s.flatmap(lambda x: [boom(x)]), "flatmap(lambda)"),
        (lambda s: s.sink(boom), "sink(boom)"),
        (lambda s: s.map(lambda x: x).map(boom, name="custom"), "map(custom)"),
        (lambda s: s.keyby(boom).map(lambda x: x, parallelism=2), "keyby(boom)"),
        (lambda s: s.map(boom, parallelism=2), "map(boom)"),
    ],
    ids=["filter", "flatmap", "sink", "named", "keyby", "parallel-map"],
)
def test_failure_label_for_each_operator(env: LocalEnvironment, build: Any, label: str) -> None:
    stream = build(env.from_batch(range(10)))
    if label != "sink(boom)":
        stream.sink(lambda r: None)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.operator == label
    assert info.value.record == 3
    assert env.jobs[-1].status == "failed"


def test_class_failure_label(env: LocalEnvironment) -> None:
    class Enrich(MapFunction):
        def execute(self, data: dict[str, Any]) -> Any:
            return data["missing"]

    env.from_batch([{"user_id": "42"}]).map(Enrich()).sink(print)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.operator == "map(Enrich)"
    assert info.value.record == {"user_id": "42"}
    assert isinstance(info.value.__cause__, KeyError)


def test_comap_and_join_failure_labels(env: LocalEnvironment) -> None:
    env.from_batch([1]).connect(env.from_batch([3])).comap(lambda x: x, boom).sink(print)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.operator.startswith("comap(")
    assert info.value.record == 3

    env.clear_pipeline()
    left = env.from_batch([3]).keyby(lambda x: x)
    right = env.from_batch([3]).keyby(lambda x: x)

    def explode(a: int, b: int) -> None:
        raise RuntimeError("join broke")

    left.connect(right).join(explode).sink(print)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.operator == "join(explode)"
    assert isinstance(info.value.__cause__, RuntimeError)


def test_long_record_is_shortened_in_the_message(env: LocalEnvironment) -> None:
    record = "x" * 1000

    def fail(r: str) -> None:
        raise ValueError("too long")

    env.from_batch([record]).map(fail).sink(print)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.record == record  # the record itself is kept whole
    assert len(str(info.value)) < 400


def test_failure_in_parallel_downstream_task_stops_the_job(env: LocalEnvironment) -> None:
    def boom_at_500(x: int) -> int:
        if x == 500:
            raise ValueError("500")
        return x

    env.from_batch(range(100_000)).map(lambda x: x).map(boom_at_500, parallelism=2).sink(
        lambda r: None
    )
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.operator == "map(boom_at_500)"
    assert info.value.record == 500
    assert env.jobs[-1].status == "failed"


def test_failure_downstream_of_endless_source_ends_the_job(env: LocalEnvironment) -> None:
    counter = itertools.count()

    def boom_at_100(x: int) -> int:
        if x == 100:
            raise ValueError("100")
        return x

    env.from_source(lambda: next(counter)).map(boom_at_100, parallelism=2).sink(lambda r: None)
    job = env.submit(autostop=False)
    assert job.wait(timeout=WAIT), "a failed job must end even if its source is endless"
    assert job.status == "failed"
    with pytest.raises(OperatorError, match="boom_at_100"):
        job.raise_for_error()
    assert job.statistics().error is not None
    assert "OperatorError" in job.statistics().error


def test_blocking_submit_of_endless_source_with_failure_raises(env: LocalEnvironment) -> None:
    counter = itertools.count()
    env.from_source(lambda: next(counter)).map(boom).sink(lambda r: None)
    with pytest.raises(OperatorError, match=r"map\(boom\)"):
        env.submit()


def test_operator_calling_unknown_service(env: LocalEnvironment) -> None:
    env.register_service("known", lambda x: x)

    class Call(MapFunction):
        def execute(self, data: int) -> Any:
            return self.call_service("unknown", data)

    env.from_batch([7]).map(Call).sink(print)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.operator == "map(Call)"
    assert info.value.record == 7
    cause = info.value.__cause__
    assert isinstance(cause, ServiceNotFoundError)
    assert cause.registered == ("known",)
    assert env.jobs[-1].status == "failed"


def test_operator_calling_failing_service(env: LocalEnvironment) -> None:
    def fail(x: int) -> None:
        raise KeyError(x)

    env.register_service("fail", fail)

    class Call(MapFunction):
        def execute(self, data: int) -> Any:
            return self.call_service("fail", data)

    env.from_batch([1]).map(Call).sink(print)
    with pytest.raises(OperatorError) as info:
        env.submit()
    cause = info.value.__cause__
    assert isinstance(cause, ServiceCallError)
    assert cause.remote_type == "KeyError"


def test_environment_runs_the_next_job_after_a_failure(env: LocalEnvironment) -> None:
    env.from_batch(range(10)).map(boom).sink(print)
    with pytest.raises(OperatorError):
        env.submit()
    env.clear_pipeline()
    out: list[int] = []
    env.from_batch([1, 2]).sink(out.append)
    assert env.submit().status == "finished"
    assert out == [1, 2]


def test_source_failure_names_the_source(env: LocalEnvironment) -> None:
    def read() -> int:
        raise ValueError("source broke")

    env.from_source(read).sink(print)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.operator == "from_source"
    assert isinstance(info.value.__cause__, ValueError)
    assert env.jobs[-1].status == "failed"


def test_operator_setup_failure_names_the_operator(env: LocalEnvironment) -> None:
    class BadSetup(MapFunction):
        def setup(self) -> None:
            raise RuntimeError("setup failed")

        def execute(self, data: int) -> int:
            return data

    env.from_batch([1]).map(BadSetup).sink(print)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.operator == "map(BadSetup)"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert env.jobs[-1].status == "failed"
