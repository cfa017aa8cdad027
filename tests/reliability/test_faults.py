"""Faults: services that raise, hang, die mid-request or fail ``setup()``; operators that raise
on some records; full queues; retries; late responses.

Each test shows the documented outcome (docs/reliability.md) and accounts for every request or
record: it got its result, or an error that says what happened to it. Nothing waits without a
timeout: every call has one, every blocked service waits on a gate the fixtures release, and the
module is bounded by pytest-timeout.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from support import WAIT

from sage_nb import LocalEnvironment, MapFunction
from sage_nb.errors import (
    OperatorError,
    ServiceCallError,
    ServiceOverloadedError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)
from sage_nb.runtime.dead_letters import DeadLetter
from sage_nb.runtime.retry import RetryPolicy
from sage_nb.runtime.service.context import RECENT

pytestmark = pytest.mark.timeout(60)


MakeEnv = Callable[..., LocalEnvironment]


def context_of(env: LocalEnvironment, name: str) -> Any:
    return env._dispatcher.contexts()[name]


def stats_of(env: LocalEnvironment, name: str) -> Any:
    (found,) = [s for s in env.statistics().services if s.name == name]
    return found


def outcome(future: Any) -> Any:
    """A future's result, or its exception (the test then checks which)."""
    try:
        return future.result(timeout=2 * WAIT)
    except Exception as exc:
        return exc


class Recorder:
    """A service that records what ran; ``hang`` waits for the gate, ``die`` kills its worker.

    Shared state lives in ``log`` (a dict the test keeps), so it survives restarts, which build
    a new instance.
    """

    def __init__(self, log: dict[str, Any], gate: threading.Event) -> None:
        self.log = log
        self.gate = gate

    def setup(self) -> None:
        self.log["setups"] += 1
        if self.log.get("broken"):
            raise OSError("database unreachable")

    def close(self) -> None:
        self.log["closes"] += 1

    def process(self, x: Any) -> Any:
        self.log["ran"].append(x)
        if isinstance(x, int) and x % 7 == 3:
            raise ValueError(f"bad value {x}")
        return x

    def hang(self, x: Any) -> Any:
        self.log["ran"].append(x)
        self.log["entered"].set()
        self.gate.wait(WAIT)
        return x

    def die(self, x: Any) -> Any:
        """Ends its worker thread's loop (a BaseException that is not an Exception)."""
        self.log["ran"].append(x)
        self.log["entered"].set()
        self.gate.wait(WAIT)
        raise SystemExit(f"worker killed on {x!r}")

    def health(self) -> bool:
        return True


def new_log() -> dict[str, Any]:
    return {"setups": 0, "closes": 0, "ran": [], "entered": threading.Event()}


# -- a service that raises ------------------------------------------------------------------
def test_service_that_raises_fails_only_that_call(make_env: MakeEnv, gate: Any) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate)
    with pytest.raises(ServiceCallError) as info:
        env.call_service("rec", 3, timeout=WAIT)
    err = info.value
    assert err.remote_type == "ValueError"
    assert "bad value 3" in str(err)
    assert isinstance(err.__cause__, ValueError)
    assert "in process" in err.remote_traceback
    assert env.call_service("rec", 4, timeout=WAIT) == 4  # the next call is answered
    stats = stats_of(env, "rec")
    assert (stats.done, stats.failed, stats.restarts) == (1, 1, 0)
    assert env.health()["rec"].status == "healthy"


def test_service_raising_on_some_of_many_calls_answers_each_one(
    make_env: MakeEnv, gate: Any
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate, concurrency=2)
    futures = [env.call_service_async("rec", i, timeout=2 * WAIT) for i in range(3000)]
    results = [outcome(f) for f in futures]
    bad = [i for i in range(3000) if i % 7 == 3]
    failed = [i for i, r in enumerate(results) if isinstance(r, ServiceCallError)]
    assert failed == bad
    assert all(f"bad value {i}" in str(results[i]) for i in bad)
    assert all(results[i] == i for i in range(3000) if i % 7 != 3)
    assert sorted(log["ran"]) == list(range(3000))  # each ran exactly once
    stats = stats_of(env, "rec")
    assert (stats.done, stats.failed) == (3000 - len(bad), len(bad))


# -- a service that hangs -------------------------------------------------------------------
def test_hung_service_times_out_callers_and_the_queued_request_never_runs(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate)
    running = env.call_service_async("rec", "running", method="hang", timeout=0.3)
    assert log["entered"].wait(WAIT)
    with pytest.raises(ServiceTimeoutError) as queued:
        env.call_service("rec", "queued", timeout=0.1)  # waits behind the hung request
    assert queued.value.started is False
    assert "will not run" in str(queued.value)
    with pytest.raises(ServiceTimeoutError) as late:
        running.result(timeout=WAIT)
    assert late.value.started is True
    gate.set()  # the hung request finishes; its late response is dropped
    assert env.call_service("rec", "next", timeout=WAIT) == "next"
    assert log["ran"] == ["running", "next"]  # "queued" never ran
    stats = stats_of(env, "rec")
    assert stats.timed_out == 2
    assert stats.queued == 0 and stats.in_flight == 0
    assert env._service_manager.in_flight() == 0


def test_health_of_a_hung_service_is_degraded_then_healthy(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate)
    assert env.health()["rec"].status == "stopped"  # services start on their first call
    assert env.call_service("rec", 0, timeout=WAIT) == 0
    assert env.health()["rec"].status == "healthy"
    hung = env.call_service_async("rec", 1, method="hang", timeout=2 * WAIT)
    assert log["entered"].wait(WAIT)
    report = env.health(timeout=0.1)["rec"]  # health() queues behind the hung request
    assert report.status == "degraded"
    assert "did not answer" in report.reason
    # The runtime's own liveness check sees the stuck worker too.
    status, reason = context_of(env, "rec").task.liveness(stall_after=0.0)
    assert (status, "has been running" in reason) == ("degraded", True)
    gate.set()
    assert hung.result(timeout=WAIT) == 1
    assert env.health(timeout=WAIT)["rec"].status == "healthy"


# -- a service that dies mid-request --------------------------------------------------------
def test_worker_death_mid_request_restarts_and_serves_what_was_queued(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate, max_restarts=3)
    dying = env.call_service_async("rec", "victim", method="die", timeout=2 * WAIT)
    assert log["entered"].wait(WAIT)
    queued = [env.call_service_async("rec", i, timeout=2 * WAIT) for i in (20, 21, 22)]
    gate.set()
    err = outcome(dying)
    assert isinstance(err, ServiceUnavailableError)
    assert "died while running this request" in str(err)
    assert "SystemExit: worker killed on 'victim'" in str(err)
    assert str(err).endswith("it restarts, so calls may be retried")
    assert [outcome(f) for f in queued] == [20, 21, 22]  # answered by the restarted service
    stats = stats_of(env, "rec")
    assert (stats.state, stats.restarts, stats.version, stats.workers) == ("running", 1, 2, 1)
    assert log["setups"] == 2 and log["closes"] == 1  # rebuilt; the old instance closed
    assert env.health()["rec"].status == "healthy"
    names = [t.name for t in env.threads()]
    assert names == ["sage_nb/service/rec"]


def test_deaths_under_load_fail_exactly_the_requests_that_killed_the_worker(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    gate.set()  # die() does not wait
    env.register_service("rec", Recorder, log, gate, max_restarts=10)
    results: dict[int, Any] = {}
    lock = threading.Lock()

    def caller(first: int) -> None:
        for i in range(first, first + 200):
            method = "die" if i % 200 == 100 else "process"
            try:
                value: Any = env.call_service("rec", i, method=method, timeout=2 * WAIT)
            except Exception as exc:
                value = exc
            with lock:
                results[i] = value

    threads = [threading.Thread(target=caller, args=(k * 200,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(6 * WAIT)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert sorted(results) == list(range(800))
    died = sorted(i for i, r in results.items() if isinstance(r, ServiceUnavailableError))
    raised = sorted(i for i, r in results.items() if isinstance(r, ServiceCallError))
    assert died == [100, 300, 500, 700]
    assert raised == [i for i in range(800) if i % 7 == 3 and i not in died]
    assert all(results[i] == i for i in range(800) if i not in died and i not in raised)
    assert stats_of(env, "rec").restarts == len(died)


def test_worker_death_with_no_restart_left_goes_down_and_fails_the_queue(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate, max_restarts=0)
    dying = env.call_service_async("rec", "victim", method="die", timeout=2 * WAIT)
    assert log["entered"].wait(WAIT)
    queued = [env.call_service_async("rec", i, timeout=2 * WAIT) for i in (10, 11)]
    gate.set()
    died = outcome(dying)
    assert isinstance(died, ServiceUnavailableError)
    assert str(died).endswith("it will not restart (max_restarts=0 used)")
    for err in map(outcome, queued):
        assert isinstance(err, ServiceUnavailableError)
        assert "it is down" in str(err)
        assert "gave up after 0 restarts, max_restarts=0" in str(err)
        assert "worker died: SystemExit" in str(err)
    report = env.health()["rec"]
    assert report.status == "down" and "max_restarts=0" in report.reason
    assert stats_of(env, "rec").state == "down"
    assert 10 not in log["ran"] and 11 not in log["ran"]
    # Calling again starts it afresh (and closes the instance the dead worker left behind).
    assert env.call_service("rec", 4, timeout=WAIT) == 4
    assert log["closes"] == 1
    assert env.health()["rec"].status == "healthy"


# -- a service whose setup() fails ----------------------------------------------------------
def test_setup_failing_on_restart_backs_off_up_to_the_limit_then_down(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate, max_restarts=2)
    assert env.call_service("rec", 1, timeout=WAIT) == 1
    dying = env.call_service_async("rec", "victim", method="die", timeout=2 * WAIT)
    assert log["entered"].wait(WAIT)
    queued = [env.call_service_async("rec", i, timeout=2 * WAIT) for i in (10, 11, 12)]
    log["broken"] = True  # every restart's setup() raises from now on
    gate.set()
    assert isinstance(outcome(dying), ServiceUnavailableError)
    for err in map(outcome, queued):  # each fails with the reason, none hangs
        assert isinstance(err, ServiceUnavailableError)
        assert "gave up after 2 restarts, max_restarts=2" in str(err)
        assert "setup failed: OSError: database unreachable" in str(err)
    assert log["setups"] == 3  # the first start, then the two restarts allowed
    stats = stats_of(env, "rec")
    assert (stats.state, stats.restarts) == ("down", 2)
    report = env.health()["rec"]
    assert report.status == "down" and "database unreachable" in report.reason
    for t in env.threads():  # the supervisor thread ends once it reported the service down
        t.join(WAIT)
    assert env.threads() == []
    # Fixed: the next call starts a new instance; the last one that ran is closed.
    log["broken"] = False
    assert env.call_service("rec", 5, timeout=WAIT) == 5
    assert (log["setups"], log["closes"]) == (4, 1)


def test_setup_failing_at_start_fails_each_call_at_once_and_reports_down(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    log["broken"] = True
    env.register_service("rec", Recorder, log, gate)
    with pytest.raises(ServiceUnavailableError) as info:
        env.call_service("rec", 1, timeout=WAIT)
    errors: list[BaseException] = [info.value]
    # An async call starts it again: it raises the start's error if that failed already,
    # else its future fails with it.
    try:
        errors.append(env.call_service_async("rec", 1, timeout=WAIT).exception(WAIT))
    except ServiceUnavailableError as exc:
        errors.append(exc)
    for error in errors:
        assert isinstance(error, ServiceUnavailableError)
        assert "failed to start: OSError: database unreachable" in str(error)
        assert isinstance(error.__cause__, OSError)
    report = env.health()["rec"]
    assert (report.status, report.reason) == (
        "down",
        "failed to start: OSError: database unreachable",
    )
    assert env.threads() == []
    log["broken"] = False  # each call tries setup() again
    assert env.call_service("rec", 2, timeout=WAIT) == 2
    assert env.health()["rec"].status == "healthy"
    assert log["ran"] == [2]


# -- an operator that raises on some records ------------------------------------------------
RECORDS = list(range(200))
BAD = [r for r in RECORDS if r % 9 == 4]


def flaky(record: int) -> int:
    if record % 9 == 4:
        raise ValueError(f"cannot handle {record}")
    return record * 10


def test_operator_error_policy_fail_stops_the_job_naming_operator_and_record(
    make_env: MakeEnv,
) -> None:
    env = make_env()
    out: list[int] = []
    env.from_batch(RECORDS).map(flaky, name="flaky").sink(out.append)
    with pytest.raises(OperatorError) as info:
        env.submit()
    err = info.value
    assert err.operator == "map(flaky)"
    assert err.record == BAD[0]
    assert isinstance(err.__cause__, ValueError)
    assert f"on record {BAD[0]}" in str(err)
    assert BAD[0] * 10 not in out
    (job,) = env.jobs
    assert job.status == "failed"


@pytest.mark.parametrize("parallelism", [1, 3])
def test_operator_error_policy_skip_counts_every_skipped_record(
    make_env: MakeEnv, parallelism: int
) -> None:
    env = make_env()
    out: list[int] = []
    env.from_batch(RECORDS).map(flaky, name="flaky", parallelism=parallelism, on_error="skip").sink(
        out.append
    )
    job = env.submit()
    assert job.status == "finished"
    assert sorted(out) == [r * 10 for r in RECORDS if r not in BAD]
    node = next(n for n in job.statistics().nodes if n.label == "map(flaky)")
    assert node.errors == len(BAD)
    assert node.records_in == len(RECORDS)
    assert len(out) + node.errors == len(RECORDS)  # nothing lost silently


@pytest.mark.parametrize("parallelism", [1, 3])
def test_operator_error_policy_dead_letter_keeps_each_failed_record(
    make_env: MakeEnv, parallelism: int
) -> None:
    env = make_env()
    out: list[int] = []
    env.from_batch(RECORDS).map(
        flaky, name="flaky", parallelism=parallelism, on_error="dead_letter"
    ).sink(out.append)
    job = env.submit()
    assert sorted(out) == [r * 10 for r in RECORDS if r not in BAD]
    letters = job.dead_letters
    assert sorted(d.record for d in letters) == BAD
    for letter in letters:
        assert letter.operator == "map(flaky)"
        assert isinstance(letter.error, ValueError)
        assert str(letter.error) == f"cannot handle {letter.record}"
    assert len(out) + len(letters) == len(RECORDS)


def test_operator_error_policy_callable_receives_each_dead_letter(make_env: MakeEnv) -> None:
    env = make_env()
    out: list[int] = []
    received: list[DeadLetter] = []
    env.from_batch(RECORDS).map(flaky, name="flaky", on_error=received.append).sink(out.append)
    job = env.submit()
    assert sorted(d.record for d in received) == BAD
    assert job.dead_letters == []  # the callable took them
    assert len(out) + len(received) == len(RECORDS)


def test_operator_error_policy_whose_handler_raises_fails_the_job(make_env: MakeEnv) -> None:
    env = make_env()

    def broken_handler(letter: DeadLetter) -> None:
        raise RuntimeError("handler broke")

    env.from_batch(RECORDS).map(flaky, name="flaky", on_error=broken_handler).sink(lambda r: None)
    with pytest.raises(OperatorError) as info:
        env.submit()
    assert info.value.record == BAD[0]
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "handler broke" in str(info.value)


class CallRecorder(MapFunction):
    def execute(self, record: int) -> Any:
        return self.call_service("rec", record, timeout=WAIT)


def test_operator_whose_service_call_fails_sends_the_record_to_dead_letters(
    make_env: MakeEnv, gate: Any
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate)
    out: list[int] = []
    env.from_batch(RECORDS).map(CallRecorder, name="enrich", on_error="dead_letter").sink(
        out.append
    )
    job = env.submit()
    bad = [r for r in RECORDS if r % 7 == 3]
    assert sorted(d.record for d in job.dead_letters) == bad
    assert all(isinstance(d.error, ServiceCallError) for d in job.dead_letters)
    assert sorted(out) == [r for r in RECORDS if r not in bad]


def test_pipeline_survives_a_service_crash_with_retries_and_loses_no_record(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    # The call that was running when the worker died is retried (retries= opts in to that:
    # it runs twice, so the method must be idempotent); every record reaches the sink once.
    env, log = make_env(), new_log()
    gate.set()
    crashed = threading.Event()

    class CrashOnce(Recorder):
        def process(self, x: Any) -> Any:
            if x == 50 and not crashed.is_set():
                crashed.set()
                self.die(x)
            self.log["ran"].append(x)
            return x

    policy = RetryPolicy(retries=5, backoff=0.01)
    env.register_service("rec", CrashOnce, log, gate, retries=policy, max_restarts=3)
    out: list[int] = []
    env.from_batch(RECORDS).map(CallRecorder, name="enrich").sink(out.append)
    job = env.submit()
    assert job.status == "finished"
    assert sorted(out) == RECORDS
    assert log["ran"].count(50) == 2  # once when it died, once retried
    stats = stats_of(env, "rec")
    assert (stats.restarts, stats.retries >= 1) == (1, True)


# -- backpressure ---------------------------------------------------------------------------
def test_overflow_block_waits_for_room_until_the_deadline(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate, max_queued=2, overflow="block")
    running = env.call_service_async("rec", "running", method="hang", timeout=2 * WAIT)
    assert log["entered"].wait(WAIT)
    queued = [env.call_service_async("rec", i, timeout=2 * WAIT) for i in (1, 2)]  # full now
    with pytest.raises(ServiceTimeoutError) as info:  # no room before its deadline
        env.call_service("rec", "no room", timeout=0.1)
    assert info.value.started is False
    # A blocked caller gets in as soon as there is room.
    result: list[Any] = []
    blocked = threading.Thread(
        target=lambda: result.append(env.call_service("rec", 5, timeout=2 * WAIT))
    )
    blocked.start()
    gate.set()
    blocked.join(2 * WAIT)
    assert result == [5]
    assert [outcome(f) for f in [running, *queued]] == ["running", 1, 2]
    assert "no room" not in log["ran"]
    assert stats_of(env, "rec").timed_out == 1


def test_overflow_fail_refuses_at_once_with_a_clear_error(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate, max_queued=2, overflow="fail")
    running = env.call_service_async("rec", "running", method="hang", timeout=2 * WAIT)
    assert log["entered"].wait(WAIT)
    queued = [env.call_service_async("rec", i, timeout=2 * WAIT) for i in (1, 2)]
    for call in (env.call_service, env.call_service_async):
        with pytest.raises(ServiceOverloadedError) as info:
            call("rec", "refused", timeout=WAIT)
        assert "max_queued=2" in str(info.value)
        assert "overflow='block'" in str(info.value)  # says what to do
    gate.set()
    assert [outcome(f) for f in [running, *queued]] == ["running", 1, 2]
    assert "refused" not in log["ran"]


def test_a_producer_faster_than_its_service_cannot_grow_the_queue(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    gate.set()

    class Slow(Recorder):
        def process(self, x: Any) -> Any:
            self.gate.wait(0.0005)  # slower than the producer
            return x

    env.register_service("rec", Slow, log, threading.Event(), max_queued=64)
    pending = context_of_after_start(env, "rec").pending
    most = 0
    futures = []
    for i in range(3000):
        futures.append(env.call_service_async("rec", i, timeout=6 * WAIT))
        most = max(most, len(pending))
    assert most <= 64
    assert [outcome(f) for f in futures] == list(range(3000))


def context_of_after_start(env: LocalEnvironment, name: str) -> Any:
    env.call_service(name, -1, timeout=WAIT)
    return context_of(env, name)


# -- retries ---------------------------------------------------------------------------------
def test_retries_are_counted_and_give_up_with_the_last_error(make_env: MakeEnv, gate: Any) -> None:
    env, log = make_env(), new_log()
    policy = RetryPolicy(retries=3, backoff=0.001, jitter=0.0, retry_on=(ValueError,))
    env.register_service("rec", Recorder, log, gate, retries=policy)
    with pytest.raises(ServiceCallError) as info:
        env.call_service("rec", 3, timeout=WAIT)  # raises ValueError every time
    assert info.value.remote_type == "ValueError"
    assert log["ran"] == [3, 3, 3, 3]  # the call and its three retries
    assert stats_of(env, "rec").retries == 3
    future = env.call_service_async("rec", 10, timeout=WAIT)
    assert isinstance(outcome(future), ServiceCallError)
    assert log["ran"][4:] == [10] * 4
    assert stats_of(env, "rec").retries == 6


def test_errors_of_calls_that_ran_are_not_retried_by_default(make_env: MakeEnv, gate: Any) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate, retries=5)
    with pytest.raises(ServiceCallError):
        env.call_service("rec", 3, timeout=WAIT)
    assert log["ran"] == [3]
    assert stats_of(env, "rec").retries == 0


@pytest.mark.parametrize("asynchronous", [False, True])
def test_retries_never_outlive_the_deadline(
    make_env: MakeEnv, gate: Any, asynchronous: bool
) -> None:
    # The service always fails (retryable), each retry waits 0.05 s: far more retries than fit
    # in the 0.4 s timeout are allowed. Every attempt starts before the caller's deadline and
    # the call ends with the service's error, not a timeout: no retry was started that could
    # not finish in time.
    import time

    env, log = make_env(), new_log()
    starts: list[float] = []

    class AlwaysFails(Recorder):
        def process(self, x: Any) -> Any:
            starts.append(time.monotonic())
            raise ValueError("still broken")

    policy = RetryPolicy(
        retries=1000, backoff=0.05, multiplier=1.0, jitter=0.0, retry_on=(ValueError,)
    )
    env.register_service("rec", AlwaysFails, log, gate, retries=policy)
    context_of_after_start_quiet(env)
    starts.clear()
    deadline = time.monotonic() + 0.4
    if asynchronous:
        err = outcome(env.call_service_async("rec", 1, timeout=0.4))
    else:
        try:
            env.call_service("rec", 1, timeout=0.4)
        except Exception as exc:
            err = exc
    assert isinstance(err, ServiceCallError) and err.remote_type == "ValueError"
    assert 1 < len(starts) < 1000
    assert all(t < deadline for t in starts)
    assert stats_of(env, "rec").retries == len(starts) - 1


def context_of_after_start_quiet(env: LocalEnvironment) -> None:
    """Start the service (its first call fails on purpose)."""
    try:
        env.call_service("rec", 0, timeout=WAIT, retries=0)
    except ServiceCallError:
        pass


def test_a_retried_call_that_times_out_before_starting_never_ran(
    make_env: MakeEnv, gate: threading.Event
) -> None:
    env, log = make_env(), new_log()
    env.register_service("rec", Recorder, log, gate, retries=RetryPolicy(retries=10, backoff=0.01))
    running = env.call_service_async("rec", "running", method="hang", timeout=2 * WAIT)
    assert log["entered"].wait(WAIT)
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service("rec", "waiting", timeout=0.2)
    assert info.value.started is False
    gate.set()
    assert outcome(running) == "running"
    assert env.call_service("rec", "after", timeout=WAIT) == "after"
    assert "waiting" not in log["ran"]


# -- late responses ---------------------------------------------------------------------------
class Payload:
    """A result object the test can watch with a weak reference."""


def test_late_responses_are_dropped_without_leaking(make_env: MakeEnv) -> None:
    # Calls that time out while running (sync and async, alternately); each response arrives
    # after its caller gave up and reaches nobody. Nothing keeps them but the monitor's ring of
    # the last RECENT request/response pairs: no pending entry, no deadline, no waiter.
    env = make_env()
    rounds = 10
    made: list[weakref.ref[Payload]] = []
    releases = [threading.Event() for _ in range(rounds + 1)]
    entered = threading.Semaphore(0)

    def late(i: int) -> Payload:
        entered.release()
        releases[i].wait(WAIT)
        payload = Payload()
        made.append(weakref.ref(payload))
        return payload

    env.register_service("late", late)
    for i in range(rounds):
        if i % 2:
            err = outcome(env.call_service_async("late", i, timeout=0.1))
        else:
            with pytest.raises(ServiceTimeoutError) as info:
                env.call_service("late", i, timeout=0.1)
            err = info.value
        assert isinstance(err, ServiceTimeoutError)
        if err.started:
            assert entered.acquire(timeout=WAIT)
        releases[i].set()
    releases[rounds].set()
    last = env.call_service("late", rounds, timeout=WAIT)  # runs after the late ones
    assert isinstance(last, Payload)
    late_ones, made = made[:-1], made[-1:]
    ctx = context_of(env, "late")
    assert ctx.pending == {}
    assert env._service_manager.in_flight() == 0
    assert env._service_manager._deadlines._buckets == {}
    stats = stats_of(env, "late")
    # Each call has one outcome: a late response does not count as done as well.
    assert (stats.timed_out, stats.done) == (rounds, 1)
    assert len(late_ones) > rounds // 2  # most of them started before their deadline
    gc.collect()
    assert len([r for r in late_ones if r() is not None]) <= RECENT
    ctx.recent.clear()
    gc.collect()
    assert [r for r in late_ones if r() is not None] == []
