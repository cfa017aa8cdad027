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
from ..clock import MONOTONIC, Clock
from ..messages import ServiceRequest, ServiceResponse
from .callbacks import CallbackExecutor
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

    ``deliver`` and a caller that gives up (``claim``) race for one token: whoever takes it
    settles the call, so a response that arrives after its caller timed out is dropped and
    counted once, as the timeout.

    A task may set ``fetch``: the caller then calls ``fetch(timeout)`` instead of waiting on
    the lock (the Ray backend lets the caller wait in ``ray.get`` itself, one thread hop less);
    it returns whether the response was delivered in time.
    """

    __slots__ = ("_token", "fetch", "lock", "response")

    def __init__(self) -> None:
        self.lock = allocate_lock()
        self.lock.acquire()
        self.response: ServiceResponse | None = None
        self.fetch: Callable[[float | None], bool] | None = None
        self._token = [None]  # list.pop is atomic: the first to pop settles the call

    @property
    def settled(self) -> bool:
        """True once the call has its response, or its caller gave up."""
        return not self._token

    def claim(self) -> bool:
        """Take the token; True if nobody settled the call before."""
        try:
            self._token.pop()
        except IndexError:
            return False
        return True

    def deliver(self, response: ServiceResponse) -> bool:
        if not self.claim():
            return False  # the caller gave up first
        self.response = response
        self.lock.release()
        return True


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
        callbacks: CallbackExecutor | None = None,
    ) -> None:
        super().__init__()
        self.service_name = context.name
        self.method_name = method
        self.request_id = request_id
        self.timeout = timeout
        self._context = context
        self._scheduler = scheduler
        self._tick = -1
        self.callbacks = callbacks

    # -- completion, from the service or the deadline thread -------------------------------
    def deliver(self, response: ServiceResponse) -> bool:
        self._scheduler.discard(self, self._tick)
        if response.request_id != self.request_id:  # pragma: no cover - a runtime bug
            exc: BaseException = RuntimeError(
                f"response #{response.request_id} delivered to request #{self.request_id}"
            )
            return self._settle(None, exc)
        if response.success:
            return self._settle(response.result, None)
        return self._settle(
            None, error_from_response(self.service_name, self.method_name, response)
        )

    def expire(self) -> None:
        """The deadline thread: fail the call (a request not started never runs)."""
        if self.done():
            return
        started = not self._context.withdraw(self.request_id)
        exc = ServiceTimeoutError(
            self.service_name, self.method_name, self.timeout, started=started
        )
        if self._settle(None, exc):
            self._context.count_timeout()

    def abandon(self, reason: str) -> None:
        if not self.done():
            self._context.withdraw(self.request_id)
            if self._settle(None, self._context.unavailable(reason)):
                self._context.count_rejected()

    # -- user side -------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Withdraw the request if the service has not started it; True if that worked."""
        if self.done() or not self._context.withdraw(self.request_id):
            return False
        self._scheduler.discard(self, self._tick)
        if super().cancel():
            self._context.count_cancelled()
            return True
        return False  # its deadline passed meanwhile: it timed out

    def __repr__(self) -> str:
        call = f"{self.service_name}.{self.method_name}"
        return f"<ServiceFuture #{self.request_id} {call} {self._state.lower()}>"


class _Later:
    """Hands ``action`` to ``executor`` when the deadline scheduler reaches it (a delayed
    retry): the deadline thread itself runs no user code and never waits."""

    __slots__ = ("_abandon", "_action", "_executor")

    def __init__(
        self,
        action: Callable[[], None],
        abandon: Callable[[str], None],
        executor: CallbackExecutor | None,
    ) -> None:
        self._action = action
        self._abandon = abandon
        self._executor = executor

    def expire(self) -> None:
        if self._executor is None:
            self._action()
        else:
            self._executor.run(self._action)

    def abandon(self, reason: str) -> None:
        self._abandon(reason)


class RetryingFuture(AwaitableFuture):
    """The future of an async call with retries: it completes with the first attempt that
    succeeds, or with the last failure once no retry fits before the deadline.

    The deadline thread hands each retry, after its backoff, to the environment's callback
    executor, which makes it without waiting (a full queue fails the attempt as overloaded,
    and the policy decides): neither a service thread nor the deadline thread ever runs one.
    Each attempt is a request with an outcome of its own; ``submit`` counts the retries.
    """

    def __init__(
        self,
        submit: Callable[[float, bool], Future],  # type: ignore[type-arg]
        name: str,
        method: str,
        timeout: float,
        policy: RetryPolicy,
        scheduler: DeadlineScheduler,
        callbacks: CallbackExecutor | None = None,
    ) -> None:
        """``submit(seconds_left, is_retry)`` makes one attempt and returns its future (the
        first from the caller's thread, which may wait for queue room; retries must not
        wait); ``scheduler`` times each retry's backoff, ``callbacks`` runs it."""
        super().__init__()
        self._submit = submit
        self.service_name = name
        self.method_name = method
        self.timeout = timeout
        self._policy = policy
        self._scheduler = scheduler
        self.callbacks = callbacks
        self._now = scheduler.clock.now
        self._deadline = self._now() + timeout
        self._current: Future | None = None  # type: ignore[type-arg]
        self._last: BaseException | None = None
        self.attempts = 0
        self._attempt()

    def _attempt(self) -> None:
        if self.done():
            return
        left = self._deadline - self._now()
        if left <= 0 and self._last is not None:
            self._settle(None, self._last)  # no time for this retry: the last failure stands
            return
        self.attempts += 1
        try:
            self._current = future = self._submit(left, self.attempts > 1)
        except Exception as exc:
            self._failed(exc)
            return
        hook = getattr(future, "_on_done", None)
        if hook is not None:
            hook(self._attempt_done)  # in place: it only decides, or schedules a retry
        else:  # pragma: no cover - every attempt is an AwaitableFuture
            future.add_done_callback(self._attempt_done)

    def _attempt_done(self, future: Future) -> None:  # type: ignore[type-arg]
        if future.cancelled() or self.done():
            return
        exc = future.exception()
        if exc is None:
            self._settle(future.result(), None)
        else:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self._last = exc
        policy = self._policy
        due = self._now() + policy.delay(self.attempts - 1)
        if self.attempts > policy.retries or not policy.retryable(exc) or due >= self._deadline:
            self._settle(None, exc)
            return
        try:
            self._scheduler.add(_Later(self._attempt, self._abandon, self.callbacks), due)
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

    def __init__(
        self, name: str = "", *, propagate_context: bool = False, clock: Clock = MONOTONIC
    ) -> None:
        self.name = name
        #: Run each request in a copy of its caller's contextvars context (see ServiceRequest).
        self.propagate_context = propagate_context
        self._ids = itertools.count(1)
        #: Times async calls' deadlines and retries (a ``MockClock`` in deadline tests).
        self._deadlines = DeadlineScheduler(name, clock=clock)
        #: Where the done-callbacks of this environment's futures, and async retries, run.
        self.callbacks = CallbackExecutor(name)

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
            withdrawn = context.withdraw(rid)
            if waiter.claim() or withdrawn:
                context.count_cancelled()
            raise
        if not answered:
            started = not context.withdraw(rid)
            if waiter.claim():  # the caller gives up before any response settled the call
                context.count_timeout()
                # The error's traceback keeps this frame: drop the waiter so that a late
                # response is not kept alive by an error the caller holds on to.
                del waiter, fetch
                raise ServiceTimeoutError(context.name, method, timeout, started=started)
            waiter.lock.acquire()  # a response took the token just now: it is being delivered
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
        *,
        block: bool = True,
    ) -> ServiceFuture:
        """Call without waiting; the future fails with ``ServiceTimeoutError`` after ``timeout``.

        The caller waits only for queue room (``max_queued``), within ``timeout``; with
        ``block=False`` (a runtime thread) a full queue raises ``ServiceOverloadedError``.
        """
        if not 0 < timeout < math.inf:
            raise ValueError(f"an async call needs a finite timeout > 0, got {timeout!r}")
        rid = next(self._ids)
        future = ServiceFuture(context, rid, method, timeout, self._deadlines, self.callbacks)
        deadline = self._deadlines.clock.now() + timeout
        future._tick = self._deadlines.add(future, deadline)
        try:
            caller = copy_context() if self.propagate_context else None
            context.submit(
                ServiceRequest(
                    rid, context.name, method, args, kwargs, timeout, deadline, future, caller
                ),
                block=block,
            )
        except BaseException:  # refused (counted there): its deadline must not count again
            self._deadlines.discard(future, future._tick)
            raise
        return future

    @property
    def deadlines(self) -> DeadlineScheduler:
        """The environment's deadline scheduler (``sage_nb/deadlines/<env>``)."""
        return self._deadlines

    def in_flight(self) -> int:
        """Async calls that have neither completed nor expired."""
        return self._deadlines.pending()

    def close(self, timeout: float | None = 2.0) -> None:
        """Fail every async call still waiting, stop the deadline thread, then run the
        callbacks this queued and stop the callback thread."""
        self._deadlines.close(timeout)
        self.callbacks.close(timeout)
