"""``ProxyManager``: ``call_service`` / ``call_service_async`` for one runtime context.

Each context that calls services (the environment, every operator instance, every service) has
one. It caches each service's ``ServiceContext`` after the first lookup, so a call costs a dict
lookup and an attribute check before the request is written, and applies default timeouts
(10 s sync, 30 s async unless the environment says otherwise).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import JobCancelledError
from .retry import RetryPolicy, call_with_retries
from .service.service_manager import RetryingFuture

if TYPE_CHECKING:
    from .service.context import ServiceContext
    from .service.service_manager import ServiceFuture, ServiceManager

__all__ = [
    "DEFAULT_ASYNC_TIMEOUT",
    "DEFAULT_SYNC_TIMEOUT",
    "ProxyManager",
    "check_method",
    "check_timeout",
]

DEFAULT_SYNC_TIMEOUT = 10.0
DEFAULT_ASYNC_TIMEOUT = 30.0


def check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    return float(timeout)


def check_method(method: str) -> str:
    if not isinstance(method, str):
        raise TypeError(
            f"method= takes the name of a method of the service, as a str; "
            f"got {type(method).__name__}: {method!r}"
        )
    return method


class ProxyManager:
    """Calls services by name on behalf of one caller.

    Parameters
    ----------
    manager:
        The environment's ``ServiceManager``.
    resolve:
        ``resolve(name) -> ServiceContext``: finds (and if needed starts) a service, or raises
        ``ServiceNotFoundError``.
    sync_timeout, async_timeout:
        Defaults for calls that pass ``timeout=None``.
    cancelled:
        For operator contexts: returns True once the job is stopping, so a call made by a
        stopping operator raises ``JobCancelledError`` instead of waiting.
    """

    def __init__(
        self,
        manager: ServiceManager,
        resolve: Callable[[str], ServiceContext],
        *,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
        async_timeout: float = DEFAULT_ASYNC_TIMEOUT,
        cancelled: Callable[[], bool] | None = None,
        stop_event: threading.Event | None = None,
        owner: str = "",
    ) -> None:
        self._manager = manager
        self._resolve = resolve
        self._cache: dict[str, ServiceContext] = {}
        self.sync_timeout = check_timeout(sync_timeout)
        self.async_timeout = check_timeout(async_timeout)
        self._cancelled = cancelled
        #: Set when the caller (a job) stops: interrupts the wait between retries.
        self._stop_event = stop_event or threading.Event()
        self.owner = owner

    def context_of(self, name: str) -> ServiceContext:
        """The (cached) context of service ``name``; starts it if it is not running."""
        if not isinstance(name, str):  # before the cache: a list would fail as "unhashable"
            raise TypeError(f"a service name is a str, got {type(name).__name__}: {name!r}")
        ctx = self._cache.get(name)
        if ctx is None or not ctx.accepting:
            ctx = self._cache[name] = self._resolve(name)
        return ctx

    def call_service(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        retries: RetryPolicy | int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call service ``name`` and wait for its result.

        Parameters
        ----------
        name:
            The registered service name.
        *args, **kwargs:
            Passed to the method.
        timeout:
            Seconds to wait; ``None`` uses the default (10 s); ``math.inf`` waits without limit.
        method:
            The method to call; ``process`` by default.
        retries:
            Retry policy of this call (an int: that many retries); by default the service's
            own (``register_service(..., retries=...)``), else none. Retries stay within
            ``timeout``. (``timeout``, ``method`` and ``retries`` are reserved: a service
            cannot receive keyword arguments with these names.)

        Raises
        ------
        ServiceNotFoundError
            No such service or method (the message lists what exists).
        ServiceTimeoutError
            No answer within ``timeout``. A request that had not started never runs.
        ServiceCallError
            The service raised; carries the remote type, message and traceback.
        ServiceUnavailableError
            The service is stopped and cannot be restarted (its environment is closed).
        """
        if self._cancelled is not None and self._cancelled():
            raise JobCancelledError(f"job stopping: call to {name!r} not made")
        try:
            ctx = self._cache.get(name)
        except TypeError:  # unhashable, so not a name: context_of says so
            ctx = None
        if ctx is None or not ctx.accepting:
            ctx = self.context_of(name)
        method = "process" if method is None else check_method(method)
        timeout = self.sync_timeout if timeout is None else check_timeout(timeout)
        policy = ctx.retry if retries is None else RetryPolicy.coerce(retries)
        if policy is None or not policy.retries:
            return self._manager.call_sync(ctx, method, args, kwargs, timeout)
        return self._call_with_retries(name, ctx, method, args, kwargs, timeout, policy)

    def _call_with_retries(
        self,
        name: str,
        ctx: ServiceContext,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
        policy: RetryPolicy,
    ) -> Any:
        current = [ctx]  # the context of the latest attempt (a restart may replace it)
        tries = [0]

        def attempt(left: float) -> Any:
            if not current[0].accepting:
                current[0] = self.context_of(name)
            tries[0] += 1
            if tries[0] > 1:  # counted where it is made: each attempt has its own outcome
                current[0].count_retry()
            return self._manager.call_sync(current[0], method, args, kwargs, left)

        return call_with_retries(attempt, policy, timeout, name, method, self._stop_event)

    def call_service_async(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        retries: RetryPolicy | int | None = None,
        **kwargs: Any,
    ) -> ServiceFuture | RetryingFuture:
        """Call service ``name`` without waiting; returns a ``ServiceFuture``.

        The future is a ``concurrent.futures.Future`` (``.result(timeout)``) that can also be
        awaited. It fails with ``ServiceTimeoutError`` once ``timeout`` (default 30 s) passes,
        so awaiting it never hangs.
        """
        if self._cancelled is not None and self._cancelled():
            raise JobCancelledError(f"job stopping: call to {name!r} not made")
        try:
            ctx = self._cache.get(name)
        except TypeError:  # unhashable, so not a name: context_of says so
            ctx = None
        if ctx is None or not ctx.accepting:
            ctx = self.context_of(name)
        if timeout is not None and timeout == math.inf:
            raise ValueError(
                "an async call needs a finite timeout; use call_service to wait forever"
            )
        method = "process" if method is None else check_method(method)
        timeout = self.async_timeout if timeout is None else check_timeout(timeout)
        policy = ctx.retry if retries is None else RetryPolicy.coerce(retries)
        if policy is None or not policy.retries:
            return self._manager.call_async(ctx, method, args, kwargs, timeout)
        manager = self._manager

        def submit(left: float, retry: bool) -> ServiceFuture:
            target = self.context_of(name)
            if retry:  # made by the callback executor: it must not wait for queue room
                target.count_retry()
            return manager.call_async(target, method, args, kwargs, left, block=not retry)

        return RetryingFuture(
            submit, name, method, timeout, policy, manager.deadlines, manager.callbacks
        )

    def reset(self) -> None:
        """Forget cached contexts (after a job's cleanup)."""
        self._cache.clear()

    def __repr__(self) -> str:
        return f"<ProxyManager of {self.owner or '?'}: {sorted(self._cache)} cached>"
