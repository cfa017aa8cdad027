"""User code never stalls the runtime (issue 13), the parts that only threads have: a
``setup()`` that calls another service, async retries off the deadline thread, and a restart
that closes the old instance only once no worker runs it. The scenarios both backends share
are in ``tests/backends/test_hardening.py``."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support import WAIT, wait_until

from sage_nb import BaseService, LocalEnvironment, ServiceTimeoutError
from sage_nb.errors import ServiceUnavailableError
from sage_nb.runtime.retry import RetryPolicy

pytestmark = pytest.mark.timeout(60)


def test_a_setup_thread_calling_a_service_not_started_yet_does_not_deadlock() -> None:
    # Before: the dispatcher kept its lock while it built "a", and the thread that setup()
    # started needed that lock to start "b": setup() waited for the thread forever.
    class A(BaseService):
        def setup(self) -> None:
            box: list[Any] = []
            helper = threading.Thread(target=lambda: box.append(self.call_service("b", 20)))
            helper.start()
            helper.join(WAIT)
            self.warm = box[0] if box else None

        def process(self) -> Any:
            return self.warm

    with LocalEnvironment("setupcall") as env:
        env.register_service("a", A)
        env.register_service("b", lambda x: x + 1)
        assert env.call_service("a", timeout=WAIT) == 21


def test_an_async_call_with_retries_fails_at_its_deadline_behind_a_slow_setup() -> None:
    # Before: the first attempt started the service on the caller's thread, and retries ran on
    # the deadline thread, which started or waited for services: a 0.1 s call took the
    # whole setup().
    gate, entered = threading.Event(), threading.Event()

    class Slow:
        def setup(self) -> None:
            entered.set()
            gate.wait(WAIT)

        def process(self, x: Any) -> Any:
            return x

    with LocalEnvironment("slowretry") as env:
        env.register_service("slow", Slow, retries=RetryPolicy(retries=5, backoff=0.01))
        future = env.call_service_async("slow", 1, timeout=0.2)
        assert isinstance(future.exception(timeout=WAIT), ServiceTimeoutError)
        assert entered.is_set() and not gate.is_set()  # setup() was still running
        other = env.call_service_async("slow", 2, timeout=0.2)  # deadlines still fire
        assert isinstance(other.exception(timeout=WAIT), ServiceTimeoutError)
        gate.set()
        assert env.call_service("slow", 3, timeout=WAIT) == 3


def test_async_retries_run_on_the_callback_thread_never_the_deadline_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sage_nb.runtime.service.context import ServiceContext

    threads: list[str] = []
    real_submit = ServiceContext.submit

    def recording_submit(self: ServiceContext, request: Any, *, block: bool = True) -> None:
        threads.append(threading.current_thread().name)
        real_submit(self, request, block=block)

    monkeypatch.setattr(ServiceContext, "submit", recording_submit)
    attempts = 0

    def flaky(x: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ServiceUnavailableError("not yet")
        return x

    with LocalEnvironment("retrythread") as env:
        env.register_service("flaky", flaky, retries=RetryPolicy(retries=5, backoff=0.01))
        assert env.call_service_async("flaky", 7, timeout=WAIT).result(WAIT) == 7
    assert len(threads) == 3
    assert threads[0] == threading.current_thread().name  # the first attempt: the caller
    assert all(name.startswith("sage_nb/callbacks/") for name in threads[1:]), threads


def test_a_restart_closes_the_old_instance_only_after_its_last_worker_is_done() -> None:
    # Before: the restarted worker closed the shared instance while the other worker was
    # still running a request on it.
    log: list[str] = []
    hold, holding, dying = threading.Event(), threading.Event(), threading.Event()

    class Shared:
        def __init__(self) -> None:
            self.closed = False

        def close(self) -> None:
            self.closed = True
            log.append("close")

        def hold(self) -> str:
            holding.set()
            hold.wait(WAIT)
            return "closed under me" if self.closed else "intact"

        def process(self) -> None:
            return None

        def die(self) -> None:
            dying.set()
            raise SystemExit("worker killed")

    with LocalEnvironment("retire") as env:
        env.register_service("svc", Shared, concurrency=2, max_restarts=3)
        env.start_service("svc")
        held = env.call_service_async("svc", method="hold", timeout=WAIT)
        assert holding.wait(WAIT)
        died = env.call_service_async("svc", method="die", timeout=WAIT)
        assert isinstance(died.exception(WAIT), ServiceUnavailableError)
        # The dead worker restarts with a new instance, which answers; the old one is still
        # in use by the held request, so it stays open.
        assert wait_until(lambda: env.statistics().services[0].version == 2)
        assert env.call_service("svc", method="process", timeout=WAIT) is None
        assert log == []
        hold.set()
        assert held.result(WAIT) == "intact"
        assert log == ["close"]  # closed once its last request ended
        assert env.statistics().services[0].restarts == 1
