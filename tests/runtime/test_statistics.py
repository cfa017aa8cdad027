"""statistics() objects: plain frozen dataclasses with the counts of known activity."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from support import WAIT

from sage_nb import (
    EnvironmentStatistics,
    LocalEnvironment,
    MapFunction,
    ServiceCallError,
    ServiceTimeoutError,
)


def assert_plain_frozen(obj: Any) -> None:
    assert dataclasses.is_dataclass(obj) and not isinstance(obj, type)
    field = dataclasses.fields(obj)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, None)
    dataclasses.asdict(obj)  # plain data: deep-copies without locks, threads or queues


def test_environment_statistics_are_plain_frozen_dataclasses(env: LocalEnvironment) -> None:
    env.register_service("idle", lambda: None)
    env.register_service("used", lambda x: x)
    before = env.statistics()
    assert [s.state for s in before.services] == ["registered", "registered"]
    assert before.jobs == ()
    env.call_service("used", 1)
    env.from_batch([1, 2]).sink(lambda r: None)
    env.submit()

    stats = env.statistics()
    assert isinstance(stats, EnvironmentStatistics)
    assert_plain_frozen(stats)
    assert stats.name == "test"
    assert stats.closed is False
    assert [s.name for s in stats.services] == ["idle", "used"]
    for s in stats.services:
        assert_plain_frozen(s)
    assert len(stats.jobs) == 1
    assert_plain_frozen(stats.jobs[0])
    for node in stats.jobs[0].nodes:
        assert_plain_frozen(node)
    assert isinstance(stats.services, tuple) and isinstance(stats.jobs, tuple)


class Counted:
    def process(self, x: int) -> int:
        return x

    def fail(self) -> None:
        raise ValueError("counted failure")

    def block(self, gate: Any, entered: Any) -> str:
        entered.set()
        gate.wait(WAIT)
        return "unblocked"


def test_service_counters(env: LocalEnvironment, gate: Any) -> None:
    env.register_service("svc", Counted)
    for i in range(3):
        assert env.call_service("svc", i) == i
    for _ in range(2):
        with pytest.raises(ServiceCallError):
            env.call_service("svc", method="fail")
    entered = threading.Event()
    running = env.call_service_async("svc", gate, entered, method="block", timeout=WAIT * 2)
    assert entered.wait(WAIT)
    with pytest.raises(ServiceTimeoutError):
        env.call_service("svc", 99, timeout=0.05)  # queued behind block(): never runs
    mid = {s.name: s for s in env.statistics().services}["svc"]
    assert mid.in_flight == 1
    gate.set()
    assert running.result(timeout=WAIT) == "unblocked"

    s = {s.name: s for s in env.statistics().services}["svc"]
    assert s.state == "running"
    assert s.backend == "threads"
    assert s.workers == 1
    assert s.done == 4  # three process() and one block()
    assert s.failed == 2
    assert s.timed_out == 1
    assert s.queued == 0
    assert s.in_flight == 0
    assert s.p50 is not None and s.p95 is not None and s.p99 is not None
    assert 0 <= s.p50 <= s.p95 <= s.p99


def test_cancelled_counter(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    running = env.call_service_async("slow", 0, method="block", timeout=WAIT * 2)
    assert blocker.entered.wait(WAIT)
    queued = env.call_service_async("slow", 1)
    assert queued.cancel()
    blocker.gate.set()
    running.result(timeout=WAIT)
    s = env.statistics().services[0]
    assert s.cancelled == 1
    assert s.done == 1


def test_job_node_counts_after_filter(env: LocalEnvironment) -> None:
    out: list[int] = []
    env.from_batch(range(10)).filter(lambda x: x % 2 == 0).map(lambda x: x).sink(out.append)
    job = env.submit()
    assert out == [0, 2, 4, 6, 8]
    nodes = {n.kind: n for n in job.statistics().nodes}
    assert nodes["source"].records_out == 10
    assert (nodes["filter"].records_in, nodes["filter"].records_out) == (10, 5)
    assert (nodes["map"].records_in, nodes["map"].records_out) == (5, 5)
    assert nodes["sink"].records_in == 5
    assert nodes["filter"].label == "filter(lambda)"


def test_job_node_counts_across_tasks(env: LocalEnvironment) -> None:
    env.from_batch(range(1000)).flatmap(lambda x: [x, x]).map(lambda x: x, parallelism=3).sink(
        lambda r: None
    )
    job = env.submit()
    nodes = {n.kind: n for n in job.statistics().nodes}
    assert (nodes["flatmap"].records_in, nodes["flatmap"].records_out) == (1000, 2000)
    assert nodes["map"].parallelism == 3
    assert (nodes["map"].records_in, nodes["map"].records_out) == (2000, 2000)
    assert nodes["sink"].records_in == 2000


def test_job_progress_and_statistics(env: LocalEnvironment) -> None:
    env.from_batch(list(range(250))).sink(lambda r: None)
    job = env.submit()
    assert job.progress() == (250, 250)
    stats = job.statistics()
    assert (stats.done, stats.total) == (250, 250)
    assert stats.status == "finished"
    assert stats.error is None
    assert stats.elapsed >= 0
    assert stats.name == job.name


def test_progress_of_generator_has_unknown_total(env: LocalEnvironment) -> None:
    env.from_batch(x for x in range(7)).sink(lambda r: None)
    job = env.submit()
    assert job.progress() == (7, None)


def test_node_records_service_calls(env: LocalEnvironment) -> None:
    env.register_service("svc", lambda x: x)

    class Call(MapFunction):
        def execute(self, data: int) -> int:
            return self.call_service("svc", data)

    env.from_batch([1]).map(Call).sink(lambda r: None)
    job = env.submit()
    nodes = {n.kind: n for n in job.statistics().nodes}
    assert nodes["map"].calls == ("svc",)
    assert nodes["sink"].calls == ()


def test_every_snapshot_of_a_running_job_agrees(env: LocalEnvironment) -> None:
    # Before: a failing record was counted at once while in/out were counted per finished
    # batch, so a frame could show "in 64 · out 64 · err 76". Sampled while the job runs, no
    # node may show more records out plus failed than in.
    def enrich(x: int) -> int:
        if x % 3 == 0:
            raise ValueError(f"bad {x}")
        if x % 50 == 0:
            threading.Event().wait(0.001)  # long enough for the sampler to see batches
        return x

    env.from_batch(range(6_000)).map(enrich, on_error="skip").sink(lambda x: None)
    job = env.submit(autostop=False)
    frames = 0
    while not job.done or frames == 0:
        for node in job.statistics().nodes:
            if node.kind == "source":
                continue
            assert node.records_out + node.errors <= node.records_in, node
        frames += 1
    (_, mapped, _) = job.statistics().nodes
    assert (mapped.records_in, mapped.records_out, mapped.errors) == (6_000, 4_000, 2_000)
    assert frames > 1


def test_queue_depths_count_records_not_batches() -> None:
    from sage_nb.runtime.channel import Channel

    channel = Channel(capacity=8)
    channel.put((0, list(range(300))))
    channel.put((0, list(range(200))))
    channel.nudge((-1, object()))  # a control message: no records
    assert (len(channel), channel.records) == (3, 500)
    assert channel.get() == (0, list(range(300)))
    assert channel.records == 200
    channel.close()
    assert channel.records == 0


def test_progress_counts_records_where_they_finish(env: LocalEnvironment) -> None:
    # Before: progress counted records read by the source, which reads a small job at once:
    # 400/400 (100%) from the first frame while the slow map had barely started.
    gate = threading.Event()

    def slow(x: int) -> int:
        if x == 0:
            gate.wait(WAIT)  # hold the map until the source has read everything
        return x

    env.from_batch(range(400)).map(slow, parallelism=2).sink(lambda x: None)
    job = env.submit(autostop=False)
    try:
        # The source reads all 400 at once; the map holds them back.
        deadline = threading.Event()
        while job.records_read() < 400 and not deadline.wait(0.005):
            pass
        assert job.records_read() == 400
        finished, total = job.progress()
        assert total == 400 and finished < 200, (finished, total)
    finally:
        gate.set()
    frames = []
    while not job.done:
        progress = job.progress()
        frames.append((progress, job.done))  # done read after: it may have ended just now
    assert job.wait(WAIT)
    assert frames
    # Never 100% while running.
    assert all(done < total or ended for (done, total), ended in frames), frames[-3:]
    assert job.progress() == (400, 400)
    assert job.statistics().done == 400
