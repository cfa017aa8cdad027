"""Every call ends in exactly one outcome, whatever happens to the service (a property test).

Hypothesis draws N operations from several caller threads: sync and async calls, with and
without retries, to services that answer, raise, hang past the caller's timeout, kill their
worker or overflow their queue, mixed with swaps (``replace=True``) and restarts
(``stop_service``). Afterwards every future is settled, and for each service the calls made
equal the sum of its outcome counters (done + failed + timed out + rejected + cancelled)
minus its retries; closing leaves no ``sage_nb/`` thread. The Ray variant is
``tests/backends/test_ray_accounting.py``; the driver is ``tests/accounting.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from accounting import SERVICES, check_plan, operations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import WAIT

from sage_nb import LocalEnvironment

pytestmark = pytest.mark.timeout(300)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=st.lists(operations(), min_size=5, max_size=60), callers=st.integers(1, 4))
def test_calls_made_equal_the_outcomes_counted(plan: list[Any], callers: int) -> None:
    env = LocalEnvironment("prop")
    try:
        check_plan(env, SERVICES, plan, callers, WAIT)
    finally:
        assert env.close(timeout=WAIT)
    assert env.threads() == []
