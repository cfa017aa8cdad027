"""The exact-accounting property test on Ray (see ``tests/reliability/test_accounting.py``):
calls of every kind to service actors that answer, raise, hang, die (the actor exits and Ray
restarts it) or overflow their queue, with swaps and restarts; afterwards every future is
settled, the calls made equal the outcomes counted, and no actor or ``sage_nb/`` thread is
left."""

from __future__ import annotations

from typing import Any

import accounting
import pytest
from accounting import check_plan, operations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import WAIT

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

#: Fewer services and examples than on threads: each example starts its actors.
RAY_SERVICES = ("ok", "boom", "hang", "tight")


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=st.lists(operations(RAY_SERVICES), min_size=5, max_size=40), callers=st.integers(1, 3))
def test_calls_made_equal_the_outcomes_counted_on_ray(
    ray_cluster: Any, plan: list[Any], callers: int
) -> None:
    import ray

    from sage_nb import RemoteEnvironment

    ray.cloudpickle.register_pickle_by_value(accounting)  # not importable in Ray's workers
    env = RemoteEnvironment("prop")
    try:
        check_plan(env, RAY_SERVICES, plan, callers, WAIT)
    finally:
        assert env.close(timeout=WAIT)
    assert env.actors() == []
    assert env.threads() == []
