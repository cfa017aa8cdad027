"""The driver of the exact-accounting property tests (``tests/reliability/test_accounting.py``
on threads, ``tests/backends/test_ray_accounting.py`` on Ray): services that answer, raise,
hang, kill their worker or overflow their queue, and ``run_plan``, which carries out a drawn
plan of calls, swaps and restarts from several caller threads."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from hypothesis import strategies as st

from sage_nb.errors import SageError
from sage_nb.runtime.retry import RetryPolicy

SERVICES = ("ok", "boom", "hang", "die", "tight")


class Behaviour:
    """One class for every service: what it does depends on the name it was built for.
    ``hang`` waits ``hang_seconds`` (past most callers' timeouts)."""

    def __init__(self, kind: str, hang_seconds: float = 0.3) -> None:
        self.kind = kind
        self.hang_seconds = hang_seconds

    def process(self, x: int) -> int:
        if self.kind == "boom" and x % 2:
            raise ValueError(f"odd {x}")
        if self.kind == "hang":
            threading.Event().wait(self.hang_seconds)
        if self.kind == "die" and x % 3 == 0:
            raise SystemExit(f"worker killed on {x}")
        if self.kind == "tight":
            threading.Event().wait(0.01)
        return x


def register(env: Any, name: str, hang: float, **extra: Any) -> None:
    options: dict[str, Any] = {"max_restarts": 10_000}
    if name == "tight":
        options.update(max_queued=2, overflow="fail")
    env.register_service(name, Behaviour, name, hang, **options, **extra)


def operations(services: tuple[str, ...] = SERVICES) -> Any:
    """One drawn operation: (kind, service, argument, timeout)."""
    return st.tuples(
        st.sampled_from(["sync", "async", "sync_retry", "async_retry", "swap", "restart"]),
        st.sampled_from(services),
        st.integers(0, 99),
        st.sampled_from([0.05, 0.2, 2.0]),
    )


def run_plan(
    env: Any, plan: list[Any], callers: int, hang: float, wait: float
) -> tuple[Counter[str], list[Any]]:
    """Carry out ``plan`` from ``callers`` threads; (calls made per service, the futures)."""
    made: Counter[str] = Counter()
    futures: list[Any] = []
    lock = threading.Lock()
    policy = RetryPolicy(retries=2, backoff=0.005, retry_on=(SageError, ValueError))

    def run(ops: list[Any]) -> None:
        for kind, name, x, timeout in ops:
            if kind == "swap":
                try:
                    register(env, name, hang, replace=True)
                except SageError:
                    pass  # a swap into a service that is down or restarting: no call made
                continue
            if kind == "restart":
                env.stop_service(name, timeout=wait)
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
        threading.Thread(target=run, args=(plan[i::callers],), daemon=True) for i in range(callers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * wait)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    for future in futures:
        try:
            future.result(timeout=wait)
        except Exception:
            pass
    assert all(f.done() for f in futures), "a future never settled"
    return made, futures


def balance(env: Any, made: Counter[str]) -> dict[str, tuple[int, int]]:
    """Per service: (calls made, calls its counters account for)."""
    out = {}
    for s in env.service_statistics():
        counted = s.done + s.failed + s.timed_out + s.rejected + s.cancelled - s.retries
        out[s.name] = (made[s.name], counted)
    return out


def check_plan(
    env: Any, services: tuple[str, ...], plan: list[Any], callers: int, wait: float
) -> None:
    """Register ``services`` on ``env``, run ``plan`` and check, once late answers have settled,
    that each service's counters account for exactly the calls made."""
    from support import wait_until

    for name in services:
        register(env, name, 0.3)
    made, _ = run_plan(env, plan, callers, 0.3, wait)
    # Requests whose callers gave up may still be running: their late answers settle nothing
    # and leave the counts as they are once they end.
    wait_until(lambda: all(a == b for a, b in balance(env, made).values()))
    sums = balance(env, made)
    assert {n: a for n, (a, _) in sums.items()} == {n: b for n, (_, b) in sums.items()}
