"""Chaos on Ray (about 20 s): 1,024 calls in flight to a service of two replica actors that are
killed (Ray restarts them), swapped and restarted at random, with a slow ``setup()``, while a
status report is sampled. Afterwards every call is accounted for exactly once, the statistics
agree with what the callers saw, no actor or ``sage_nb/`` thread is left, and every status
sample answered within 0.2 s."""

from __future__ import annotations

import os
import random
from typing import Any

import chaos
import pytest
from chaos import ChaosModel, balance, run_chaos, summary
from support import WAIT, wait_until

from sage_nb.notebook.display import StatusReport

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

DURATION = float(os.environ.get("SAGE_NB_RAY_CHAOS_SECONDS", "20"))


def test_chaos_on_ray_with_actor_kills(ray_env: Any) -> None:
    import ray

    ray.cloudpickle.register_pickle_by_value(chaos)  # not importable in Ray's workers
    env = ray_env
    options = {"concurrency": 4, "max_restarts": 1000, "max_queued": None, "num_replicas": 2}
    env.register_service("model", ChaosModel, 0.5, 0, **options)
    env.start_service("model")
    rng = random.Random(7)

    def kill() -> None:
        name = f"model#{rng.randrange(2)}"
        try:
            actor = ray.get_actor(name, namespace=env.namespace)
        except ValueError:
            return  # being replaced right now
        ray.kill(actor, no_restart=False)  # a crash: Ray restarts it

    def swap() -> None:
        env.register_service("model", ChaosModel, 0.5, 0, replace=True, **options)

    def restart() -> None:
        env.stop_service("model", timeout=WAIT)  # the next call starts new actors

    def status() -> None:
        StatusReport(env)._repr_html_()

    result = run_chaos(
        env,
        duration=DURATION,
        in_flight=1024,
        timeouts=(0.5, 10.0),
        actions={"kill": kill, "swap": swap, "restart": restart},
        action_every=2.0,
        status=status,
    )
    assert result.unsettled == 0, result
    assert result.made > 1_000, result
    assert result.actions["kill"], result.actions
    balanced = wait_until(lambda: balance(env.service_statistics()[0]) == result.made, WAIT)
    (stats,) = env.service_statistics()
    info = f"{summary(result, stats)}; callers saw {dict(result.outcomes)}"
    print(info)
    assert balanced, info
    seen = result.outcomes
    assert balance(stats) == result.made, info
    assert stats.done == seen["done"], info
    assert stats.timed_out == seen["timed_out"], info
    assert stats.failed + stats.rejected == seen["failed"] + seen["other"] + seen["raised"], info
    slowest = sorted(result.status_seconds)[-5:]
    assert max(result.status_seconds) < 0.2, f"slowest status samples {slowest}; {info}"
    assert env.close(timeout=WAIT)
    assert env.actors() == []
    assert env.threads() == []
