"""User code never stalls the runtime, on either backend (issue 13's scenarios).

Each test holds user code (a ``setup()``, a method) at a gate and shows that the runtime goes
on meanwhile: statistics and health answer, deadlines fire, callbacks can call services. They
wait on gates, signals and futures, never on the clock.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from backend_helpers import WAIT, Gate, Recorder, Rendezvous, Signal

from sage_nb import BaseEnvironment, ServiceTimeoutError


class SlowSetup:
    """``setup()`` signals ``entered`` and waits for ``gate`` (a model loading, say)."""

    def __init__(self, gate: Gate, entered: Signal) -> None:
        self.gate, self.entered = gate, entered

    def setup(self) -> None:
        self.entered.set("setup")
        self.gate.wait()

    def process(self, x: Any) -> Any:
        return x


def in_thread(fn: Any) -> tuple[bool, Any]:
    """Run ``fn()`` on a thread; (finished within WAIT, its result)."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()
    thread.join(WAIT)
    return (not thread.is_alive(), box[0] if box else None)


def test_statistics_and_health_answer_while_setup_runs(
    backend_env: BaseEnvironment, rendezvous: Rendezvous
) -> None:
    env = backend_env
    gate, entered = rendezvous.gate(), rendezvous.signal()
    env.register_service("slow", SlowSetup, gate, entered)
    future = env.call_service_async("slow", 1, timeout=4 * WAIT)  # starts it
    assert entered.wait() == "setup"  # setup() runs now, and waits for the gate
    done, stats = in_thread(env.service_statistics)
    assert done, "statistics() waited for a setup() to finish"
    (svc,) = stats
    assert svc.state in ("created", "starting")
    done, health = in_thread(env.health)
    assert done, "health() waited for a setup() to finish"
    assert health["slow"].status == "starting"
    assert not future.done()  # still queued: the setup really is still running
    gate.open()
    assert future.result(timeout=2 * WAIT) == 1


def test_an_async_deadline_fires_while_setup_runs(
    backend_env: BaseEnvironment, rendezvous: Rendezvous
) -> None:
    env = backend_env
    gate, entered = rendezvous.gate(), rendezvous.signal()
    env.register_service("slow", SlowSetup, gate, entered)
    future = env.call_service_async("slow", 1, timeout=0.2)
    error = future.exception(timeout=WAIT)  # before: only once setup() had ended
    assert isinstance(error, ServiceTimeoutError)
    assert error.started is False
    assert entered.wait() == "setup"  # and setup() is still held at the gate, opened only now
    gate.open()
    assert env.call_service("slow", 2, timeout=2 * WAIT) == 2
    svc = env.service_statistics()[0]
    assert (svc.timed_out, svc.done) == (1, 1)  # the timed-out call never ran


def test_a_timeout_waiting_for_queue_room_counts_once(
    backend_env: BaseEnvironment, rendezvous: Rendezvous
) -> None:
    env = backend_env
    gate, entered = rendezvous.gate(), rendezvous.signal()
    env.register_service("rec", Recorder, gate, entered, max_queued=1)
    env.start_service("rec")
    running = env.call_service_async("rec", "a", method="block", timeout=4 * WAIT)
    assert entered.wait() == "a"
    queued = env.call_service_async("rec", "b", timeout=4 * WAIT)  # fills the queue
    with pytest.raises(ServiceTimeoutError) as info:
        env.call_service("rec", "c", timeout=0.2)  # waits for room, in vain
    assert info.value.started is False
    gate.open()
    assert (running.result(WAIT), queued.result(WAIT)) == ("a", "b")
    svc = env.service_statistics()[0]
    assert (svc.done, svc.timed_out, svc.failed, svc.rejected) == (2, 1, 0, 0)


def test_a_done_callback_can_call_the_service_that_completed_it(
    backend_env: BaseEnvironment, rendezvous: Rendezvous
) -> None:
    env = backend_env
    gate, entered = rendezvous.gate(), rendezvous.signal()
    env.register_service("rec", Recorder, gate, entered, concurrency=1)
    env.start_service("rec")
    answered = threading.Event()
    seen: list[Any] = []

    def callback(future: Any) -> None:  # a sync call to the service's only worker
        seen.append((future.result(), env.call_service("rec", "again", timeout=WAIT)))
        seen.append(threading.current_thread().name)
        answered.set()

    future = env.call_service_async("rec", "first", method="block", timeout=4 * WAIT)
    future.add_done_callback(callback)
    assert entered.wait() == "first"
    gate.open()
    assert answered.wait(2 * WAIT), "the callback's call never got an answer"
    assert seen[0] == ("first", "again")
    assert seen[1].startswith("sage_nb/callbacks/")


def test_every_call_has_exactly_one_outcome(
    backend_env: BaseEnvironment, rendezvous: Rendezvous
) -> None:
    env = backend_env
    gate, entered = rendezvous.gate(), rendezvous.signal()
    env.register_service("rec", Recorder, gate, entered, concurrency=1)
    env.start_service("rec")
    ok = [env.call_service_async("rec", i, timeout=4 * WAIT) for i in range(5)]
    assert [f.result(WAIT) for f in ok] == list(range(5))
    blocked = env.call_service_async("rec", "x", method="block", timeout=4 * WAIT)
    assert entered.wait() == "x"
    late = env.call_service_async("rec", "late", timeout=0.2)  # queued behind "x": expires
    assert isinstance(late.exception(WAIT), ServiceTimeoutError)
    cancelled = env.call_service_async("rec", "never", timeout=4 * WAIT)
    assert cancelled.cancel()
    gate.open()
    assert blocked.result(WAIT) == "x"
    assert env.call_service("rec", method="seen") == [0, 1, 2, 3, 4, "x"]  # nothing else ran
    svc = env.service_statistics()[0]
    made = 5 + 1 + 1 + 1 + 1  # the "seen" call included
    outcomes = svc.done + svc.failed + svc.timed_out + svc.rejected + svc.cancelled
    assert outcomes - svc.retries == made
    assert (svc.done, svc.timed_out, svc.cancelled) == (7, 1, 1)


class Restartable:
    """``crash()`` kills the process (Ray restarts the actor); ``pid()`` says which one runs."""

    def crash(self) -> None:
        os._exit(1)

    def pid(self) -> int:
        return os.getpid()


@pytest.mark.parametrize("backend", [pytest.param("ray", marks=pytest.mark.ray)])
def test_calls_made_while_an_actor_restarts_wait_for_it(make_env: Any) -> None:
    env = make_env()
    env.register_service("svc", Restartable, max_restarts=3)
    first = env.call_service("svc", method="pid", timeout=4 * WAIT)
    crash = env.call_service_async("svc", method="crash", timeout=4 * WAIT)
    # Made at once, while the actor dies and restarts: each waits for the new actor.
    later = [env.call_service_async("svc", method="pid", timeout=4 * WAIT) for _ in range(5)]
    after = env.call_service("svc", method="pid", timeout=4 * WAIT)
    pids = {f.result(timeout=4 * WAIT) for f in later}
    assert pids == {after}
    assert after != first
    assert crash.exception(timeout=WAIT) is not None  # it may have run: left to retries
    svc = env.service_statistics()[0]
    assert svc.restarts == 1
    assert (svc.done, svc.failed, svc.rejected, svc.timed_out) == (7, 1, 0, 0)


@pytest.mark.parametrize("backend", [pytest.param("ray", marks=pytest.mark.ray)])
def test_closing_a_second_environment_leaves_the_first_ones_services_alone(
    make_env: Any,
) -> None:
    from backend_helpers import Echo

    first = make_env()
    first.register_service("echo", Echo, max_restarts=2)
    assert first.call_service("echo", 1, timeout=4 * WAIT) == 1
    second = make_env()  # the same name, on the same cluster, as in a notebook re-run
    second.register_service("echo", Echo)
    assert second.call_service("echo", 2, timeout=4 * WAIT) == 2
    assert second.close(timeout=WAIT)
    assert second.actors() == []
    assert first.actors() == ["echo#0"]
    assert first.call_service("echo", 3, timeout=4 * WAIT) == 3
    assert first.call_service_async("echo", 4, timeout=4 * WAIT).result(4 * WAIT) == 4
    assert first.health()["echo"].status == "healthy"
