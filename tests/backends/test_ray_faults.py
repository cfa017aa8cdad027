"""Fault tolerance: a service actor killed in the middle of a stream.

The pipeline still delivers every record to the sink exactly once: a record passes each
operator once, and only the service *call* an operator makes is retried (by Ray with
``max_task_retries``, or by sage_nb's retry policy) until the restarted actor answers. The
service may therefore run a call twice (at-least-once): the call that was running when the
actor died runs again after the restart. These tests log every execution to a file to show
it, and use an idempotent service, as retried methods must be.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from backend_helpers import WAIT, Gate, Rendezvous, Signal

from sage_nb import MapFunction
from sage_nb.runtime.retry import RetryPolicy

pytestmark = pytest.mark.usefixtures("ray_cluster")

RECORDS = 200
KILL_AT = 80


class Double:
    """Idempotent: ``process(x) = 2x``. Logs each execution; record ``KILL_AT`` waits for the
    gate the first time, so the test can kill the actor while that call is running."""

    def __init__(self, log: str, gate: Gate, entered: Signal) -> None:
        self.log, self.gate, self.entered = log, gate, entered

    def process(self, x: int) -> int:
        with open(self.log, "a") as f:
            f.write(f"{x}\n")
        if x == KILL_AT:
            self.entered.set(str(os.getpid()))
            self.gate.wait()
        return 2 * x


class CallDouble(MapFunction):
    def execute(self, record: int) -> int:
        return self.call_service("double", record, timeout=2 * WAIT)  # type: ignore[no-any-return]


def run_and_kill(env: Any, rendezvous: Rendezvous, parallelism: int) -> list[int]:
    import ray

    out: list[int] = []
    env.from_batch(list(range(RECORDS))).map(CallDouble, parallelism=parallelism).sink(out.append)
    job = env.submit(autostop=False)
    entered = rendezvous.signals[0]
    first = entered.wait()  # record KILL_AT is running in the actor (its pid)
    assert first is not None
    actor = ray.get_actor("double#0", namespace=env.namespace)
    ray.kill(actor, no_restart=False)  # a crash: Ray restarts it
    again = entered.wait()  # the same call, retried in the restarted actor
    assert again is not None and again != first
    rendezvous.gates[0].open()
    assert job.wait(timeout=4 * WAIT), job.summary()
    job.raise_for_error()
    return out


def executions(log: str) -> list[int]:
    with open(log) as f:
        return [int(line) for line in f]


def test_ray_retries_the_interrupted_call(ray_env: Any, rendezvous: Rendezvous) -> None:
    log = os.path.join(rendezvous.directory, "log")
    gate, entered = rendezvous.gate(), rendezvous.signal()
    ray_env.register_service(
        "double", Double, log, gate, entered, max_restarts=3, max_task_retries=-1
    )
    out = run_and_kill(ray_env, rendezvous, parallelism=1)
    assert sorted(out) == [2 * i for i in range(RECORDS)]  # every record once at the sink
    ran = executions(log)
    assert set(ran) == set(range(RECORDS))
    assert ran.count(KILL_AT) == 2  # at-least-once at the service: the interrupted call ran twice
    assert ray_env.statistics().services[0].restarts == 1


def test_sage_nb_retries_calls_made_from_actors(ray_env: Any, rendezvous: Rendezvous) -> None:
    log = os.path.join(rendezvous.directory, "log")
    gate, entered = rendezvous.gate(), rendezvous.signal()
    policy = RetryPolicy(retries=100, backoff=0.05, max_backoff=0.5)
    ray_env.register_service("double", Double, log, gate, entered, max_restarts=3, retries=policy)
    out = run_and_kill(ray_env, rendezvous, parallelism=2)  # the callers are operator actors
    assert sorted(out) == [2 * i for i in range(RECORDS)]
    ran = executions(log)
    assert set(ran) == set(range(RECORDS))
    assert ran.count(KILL_AT) == 2
