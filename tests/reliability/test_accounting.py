"""Every call ends in exactly one outcome, whatever happens to the service (a property test).

Hypothesis draws N operations from several caller threads: sync and async calls, with and
without retries, to services that answer, raise, hang past the caller's timeout, kill their
worker or overflow their queue, mixed with swaps (``replace=True``) and restarts
(``stop_service``). Afterwards every future is settled, and for each service the calls made
equal the sum of its outcome counters (done + failed + timed out + rejected + cancelled)
minus its retries; closing leaves no ``sage_nb/`` thread (the autouse fixture checks).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import WAIT, wait_until

from sage_nb import LocalEnvironment
from sage_nb.errors import SageError
from sage_nb.runtime.retry import RetryPolicy

pytestmark = pytest.mark.timeout(300)

SERVICES = ("ok", "boom", "hang", "die", "tight")


class Behaviour:
    """One class for every service: what it does depends on the name it was built for."""

    def __init__(self, kind: str, release: threading.Event) -> None:
        self.kind = kind
        self.release = release

    def process(self, x: int) -> int:
        if self.kind == "boom" and x % 2:
            raise ValueError(f"odd {x}")
        if self.kind == "hang":
            self.release.wait(0.3)  # past most callers' timeouts
        if self.kind == "die" and x % 3 == 0:
            raise SystemExit(f"worker killed on {x}")
        if self.kind == "tight":
            self.release.wait(0.01)
        return x


def register(env: LocalEnvironment, name: str, release: threading.Event, **extra: Any) -> None:
    options: dict[str, Any] = {"max_restarts": 10_000}
    if name == "tight":
        options.update(max_queued=2, overflow="fail")
    env.register_service(name, Behaviour, name, release, **options, **extra)


operation = st.tuples(
    st.sampled_from(["sync", "async", "sync_retry", "async_retry", "swap", "restart"]),
    st.sampled_from(SERVICES),
    st.integers(0, 99),
    st.sampled_from([0.05, 0.2, 2.0]),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=st.lists(operation, min_size=5, max_size=60), callers=st.integers(1, 4))
def test_calls_made_equal_the_outcomes_counted(plan: list[Any], callers: int) -> None:
    release = threading.Event()
    made: Counter[str] = Counter()
    futures: list[Any] = []
    lock = threading.Lock()
    policy = RetryPolicy(retries=2, backoff=0.005, retry_on=(SageError, ValueError))
    env = LocalEnvironment("prop")
    try:
        for name in SERVICES:
            register(env, name, release)

        def run(ops: list[Any]) -> None:
            for kind, name, x, timeout in ops:
                if kind == "swap":
                    try:
                        register(env, name, release, replace=True)
                    except SageError:
                        pass  # a swap into a service that is down: refused, no call made
                    continue
                if kind == "restart":
                    env.stop_service(name, timeout=WAIT)
                    continue
                retries = policy if kind.endswith("retry") else 0
                with lock:
                    made[name] += 1
                try:
                    if kind.startswith("sync"):
                        env.call_service(name, x, timeout=timeout, retries=retries)
                    else:
                        future = env.call_service_async(name, x, timeout=timeout, retries=retries)
                        with lock:
                            futures.append(future)
                except (SageError, ValueError, TimeoutError):
                    pass  # each failure is an outcome the counters must show

        threads = [
            threading.Thread(target=run, args=(plan[i::callers],), daemon=True)
            for i in range(callers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(4 * WAIT)
        assert not any(t.is_alive() for t in threads), "a caller hung"
        release.set()
        for future in futures:
            try:
                future.result(timeout=WAIT)
            except Exception:
                pass
        assert all(f.done() for f in futures)

        def balance() -> dict[str, tuple[int, int]]:
            out = {}
            for s in env.service_statistics():
                counted = s.done + s.failed + s.timed_out + s.rejected + s.cancelled - s.retries
                out[s.name] = (made[s.name], counted)
            return out

        # Requests whose callers gave up may still be running: their late answers settle
        # nothing and leave the counts as they are once they end.
        wait_until(lambda: all(a == b for a, b in balance().values()))
        assert {n: a for n, (a, _) in balance().items()} == {
            n: b for n, (_, b) in balance().items()
        }
    finally:
        release.set()
        assert env.close(timeout=WAIT)
    assert env.threads() == []
