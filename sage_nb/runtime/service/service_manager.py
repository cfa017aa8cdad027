"""``ServiceManager``: the caller's side of a service call.

::

    caller thread                          service worker thread
    ─────────────                          ─────────────────────
    request = ServiceRequest(rid, ..., target)
    context.submit(request) ─────────────▶ request = queue.get(); pending.pop(rid)
    target waits (lock or future)          response = run(request)
                         ◀──────────────── target.deliver(response)   (no listener thread)

A sync call waits on a lock the service releases, so a round trip is two thread wake-ups, the
same as a bare two-queue ping-pong. An async call returns a ``ServiceFuture`` the service
completes; a ``DeadlineScheduler`` fails it at its deadline if the service never answers.
"""

from __future__ import annotations

import itertools
import math
import time
from concurrent.futures import Future
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

from ...errors import SageError, ServiceCallError, ServiceTimeoutError, ServiceUnavailableError
from ..messages import ServiceRequest, ServiceResponse
from .deadlines import DeadlineScheduler
from .futures import AwaitableFuture

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..retry import RetryPolicy
    from .context import ServiceContext

try:
    from _thread import allocate_lock
except ImportError:  # pragma: no cover - every CPython has it
    from threading import Lock as allocate_lock  # type: ignore[assignment]

__all__ = [
    "AwaitableFuture",
    "RetryingFuture",
    "ServiceFuture",
    "ServiceManager",
    "SyncWaiter",
    "error_from_response",
]

_monotonic = time.monotonic


def error_from_response(service: str, method: str, response: ServiceResponse) -> BaseException:
    """The exception a caller raises for a failed ``response``."""
    err = response.error
    if err is None:
        return ServiceCallError(service, method, "UnknownError", "the service gave no reason")
    exc = err.exception
    if isinstance(exc, SageError) and not isinstance(exc, ServiceCallError):
        return exc  # the runtime's own verdict (timeout, unavailable): raise it as it is
    if isinstance(exc, ServiceCallError):
        return exc  # a nested call failed: keep the innermost service's details
    error = ServiceCallError(service, method, err.type_name, err.message, err.traceback)
    error.__cause__ = exc
    return error


class SyncWaiter:
    """A lock held until the service delivers the response; cheaper than an Event.

    A task may set ``fetch``: the caller then calls ``fetch(timeout)`` instead of waiting on
    the lock (the Ray backend lets the caller wait in ``ray.get`` itself, one thread hop less);
    it returns whether the response was delivered in time.
    """

    __slots__ = ("fetch", "lock", "response")

    def __init__(self) -> None:
        self.lock = allocate_lock()
        self.lock.acquire()
        self.response: ServiceResponse | None = None
        self.fetch: Callable[[float | None], bool] | None = None

    def deliver(self, response: ServiceResponse) -> None:
        self.response = response
        self.lock.release()


class ServiceFuture(AwaitableFuture):
    """The result of ``call_service_async``: a ``concurrent.futures.Future`` you can also await.

    ``result(timeout)`` waits in threads; ``await future`` waits in an asyncio event loop. Either
    way the call fails with ``ServiceTimeoutError`` at its deadline if the service has not
    answered. ``cancel()`` withdraws a request the service has not started.

    Examples
    --------
    >>> from sage_nb import LocalEnvironment
    >>> with LocalEnvironment("doc") as env:
    ...     env.register_service("double", lambda x: 2 * x)
    ...     env.call_service_async("double", 21).result(timeout=5)
    42
    """

    def __init__(
        self,
        context: ServiceContext,
        request_id: int,
        method: str,
        timeout: float,
        scheduler: DeadlineScheduler,
    ) -> None:
        super().__init__()
        self.service_name = context.name
        self.method_name = method
        self.request_id = request_id
        self.timeout = timeout
        self._context = context
        self._scheduler = scheduler
        self._tick = -1

    # -- completion, from the service or the deadline thread -------------------------------
    def deliver(self, response: ServiceResponse) -> None:
        self._scheduler.discard(self, self._tick)
        if response.request_id != self.request_id:  # pragma: no cover - a runtime bug
            exc: BaseException = RuntimeError(
                f"response #{response.request_id} delivered to request #{self.request_id}"
            )
            self._settle(None, exc)
        elif response.success:
            self._settle(response.result, None)
        else:
            self._settle(None, error_from_response(self.service_name, self.method_name, response))

    def expire(self) -> None:
        if self.done():
            return
        started = not self._context.withdraw(self.request_id, timed_out=True)
        self._settle(
            None,
            ServiceTimeoutError(self.service_name, self.method_name, self.timeout, started=started),
        )

    def abandon(self, reason: str) -> None:
        if not self.done():
            self._context.withdraw(self.request_id, timed_out=False)
            self._settle(None, self._context.unavailable(reason))

    # -- user side -------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Withdraw the request if the service has not started it; True if that worked."""
        if self.done() or not self._context.withdraw(self.request_id, timed_out=False):
            return False
        self._scheduler.discard(self, self._tick)
        return super().cancel()

    def __repr__(self) -> str:
        call = f"{self.service_name}.{self.method_name}"
        return f"<ServiceFuture #{self.request_id} {call} {self._state.lower()}>"


class _Later:
    """Runs ``action`` when the deadline scheduler reaches it (a delayed retry)."""

    __slots__ = ("_abandon", "_action")

    def __init__(self, action: Callable[[], None], abandon: Callable[[str], None]) -> None:
        self._action = action
        self._abandon = abandon

    def expire(self) -> None:
        self._action()

    def abandon(self, reason: str) -> None:
        self._abandon(reason)


class RetryingFuture(AwaitableFuture):
    """The future of an async call with retries: it completes with the first attempt that
    succeeds, or with the last failure once no retry fits before the deadline.

    Each retry is started by the environment's deadline thread after its backoff, never by a
    service thread, so a failing service never blocks on its own queue.
    """

    def __init__(
        self,
        submit: Callable[[float], Future],  # type: ignore[type-arg]
        name: str,
        method: str,
        timeout: float,
        policy: RetryPolicy,
        scheduler: DeadlineScheduler,
        *,
        on_retry: Callable[[Future], None] | None = None,  # type: ignore[type-arg]
    ) -> None:
        """``submit(seconds_left)`` makes one attempt and returns its future; ``scheduler``
        starts each retry after its backoff; ``on_retry`` gets the failed attempt's future
        before its retry is scheduled (statistics count retries there)."""
        super().__init__()
        self._submit = submit
        self.service_name = name
        self.method_name = method
        self.timeout = timeout
        self._policy = policy
        self._scheduler = scheduler
        self._on_retry = on_retry
        self._deadline = _monotonic() + timeout
        self._current: Future | None = None  # type: ignore[type-arg]
        self.attempts = 0
        self._attempt()

    def _attempt(self) -> None:
        if self.done():
            return
        self.attempts += 1
        try:
            left = self._deadline - _monotonic()
            if left <= 0:
                raise ServiceTimeoutError(
                    self.service_name, self.method_name, self.timeout, started=False
                )
            self._current = future = self._submit(left)
        except Exception as exc:
            self._failed(exc, None)
            return
        future.add_done_callback(self._attempt_done)

    def _attempt_done(self, future: Future) -> None:  # type: ignore[type-arg]
        if future.cancelled() or self.done():
            return
        exc = future.exception()
        if exc is None:
            self._settle(future.result(), None)
        else:
            self._failed(exc, future)

    def _failed(self, exc: BaseException, attempt: Future | None) -> None:  # type: ignore[type-arg]
        policy = self._policy
        due = _monotonic() + policy.delay(self.attempts - 1)
        if self.attempts > policy.retries or not policy.retryable(exc) or due >= self._deadline:
            self._settle(None, exc)
            return
        if attempt is not None and self._on_retry is not None:
            self._on_retry(attempt)
        try:
            self._scheduler.add(_Later(self._attempt, self._abandon), due)
        except RuntimeError:  # the environment closed meanwhile
            self._settle(None, exc)

    def _abandon(self, reason: str) -> None:
        self._settle(None, ServiceUnavailableError(f"call abandoned: {reason}"))

    def cancel(self) -> bool:
        current = self._current
        if current is not None and not current.cancel():
            return False
        return super().cancel()


class ServiceManager:
    """Sends requests to service contexts and waits for, or returns futures of, their responses.

    One exists per environment. It is thread-safe: any number of threads may call at once.
    """

    def __init__(self, name: str = "", *, propagate_context: bool = False) -> None:
        self.name = name
        #: Run each request in a copy of its caller's contextvars context (see ServiceRequest).
        self.propagate_context = propagate_context
        self._ids = itertools.count(1)
        self._deadlines = DeadlineScheduler(name)

    def call_sync(
        self,
        context: ServiceContext,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
    ) -> Any:
        """Call and wait at most ``timeout`` seconds (``math.inf``: no limit) for the result."""
        rid = next(self._ids)
        waiter = SyncWaiter()
        forever = timeout == math.inf
        deadline = None if forever else _monotonic() + timeout
        caller = copy_context() if self.propagate_context else None
        context.submit(
            ServiceRequest(
                rid, context.name, method, args, kwargs, timeout, deadline, waiter, caller
            )
        )
        try:
            fetch = waiter.fetch
            if fetch is None:
                answered = waiter.lock.acquire(True, -1 if forever else timeout)
            else:
                answered = fetch(None if forever else timeout)
        except BaseException:  # KeyboardInterrupt in a cell: withdraw what has not started
            context.withdraw(rid, timed_out=False)
            raise
        if not answered:
            started = not context.withdraw(rid, timed_out=True)
            # The response may have arrived between the timeout and the withdrawal.
            if not (started and waiter.lock.acquire(False)):
                # The error's traceback keeps this frame: drop the waiter so that a late
                # response is not kept alive by an error the caller holds on to.
                del waiter, fetch
                raise ServiceTimeoutError(context.name, method, timeout, started=started)
        response = waiter.response
        assert response is not None and response.request_id == rid
        if response.success:
            return response.result
        raise error_from_response(context.name, method, response)

    def call_async(
        self,
        context: ServiceContext,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
    ) -> ServiceFuture:
        """Call without waiting; the future fails with ``ServiceTimeoutError`` after ``timeout``."""
        if not 0 < timeout < math.inf:
            raise ValueError(f"an async call needs a finite timeout > 0, got {timeout!r}")
        rid = next(self._ids)
        future = ServiceFuture(context, rid, method, timeout, self._deadlines)
        deadline = _monotonic() + timeout
        future._tick = self._deadlines.add(future, deadline)
        try:
            caller = copy_context() if self.propagate_context else None
            context.submit(
                ServiceRequest(
                    rid, context.name, method, args, kwargs, timeout, deadline, future, caller
                )
            )
        except ServiceUnavailableError:
            self._deadlines.discard(future, future._tick)
            raise
        return future

    def in_flight(self) -> int:
        """Async calls that have neither completed nor expired."""
        return self._deadlines.pending()

    def close(self, timeout: float | None = 2.0) -> None:
        """Fail every async call still waiting and stop the deadline thread."""
        self._deadlines.close(timeout)
