"""``ActorProxy``: ``call_service`` for code that runs inside a Ray actor.

Functions of a parallel operator and services themselves run in actors; their calls go straight
to the service actors, found by name in the environment's namespace, without passing through
the driver::

    operator actor ──handle.remote(frame)──▶ service actor "profile#0" (namespace of env)
        sync:  ray.get(ref, timeout)        async: ray_compat.on_completed(ref, future)
                                            sage_nb/deadlines/<owner> fails it on time

Callers see the same API and errors as with ``ProxyManager``: defaults of 10 s (sync) and 30 s
(async), ``method=``, ``retries=`` (by default the service's own policy), ``ServiceCallError``,
``ServiceTimeoutError``, ``ServiceNotFoundError`` and ``ServiceUnavailableError``. A request
carries its deadline, so one that has not started when the caller gives up never runs.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ...errors import (
    JobCancelledError,
    ServiceNotFoundError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)
from ...runtime.proxy import check_method, check_timeout
from ...runtime.retry import RetryPolicy, call_with_retries
from ...runtime.service.callbacks import CallbackExecutor
from ...runtime.service.deadlines import DeadlineScheduler
from ...runtime.service.futures import AwaitableFuture
from ...runtime.service.service_manager import RetryingFuture, error_from_response
from .errors import translate_ray_error
from .options import ActorConfig, actor_name
from .ray_compat import on_completed
from .wire import encode_call, pack_batch, response_from_wire, unpack_reply

__all__ = ["ActorProxy"]

_schedulers: dict[str, DeadlineScheduler] = {}
_executors: dict[str, CallbackExecutor] = {}
_schedulers_lock = threading.Lock()


def _scheduler(name: str) -> DeadlineScheduler:
    """One deadline thread per actor process and environment."""
    with _schedulers_lock:
        found = _schedulers.get(name)
        if found is None:
            found = _schedulers[name] = DeadlineScheduler(f"{name}-actor")
        return found


def _callbacks(name: str) -> CallbackExecutor:
    """One callback thread per actor process and environment: where the done-callbacks of
    its calls' futures and their retries run (never on Ray's callback thread)."""
    with _schedulers_lock:
        found = _executors.get(name)
        if found is None:
            found = _executors[name] = CallbackExecutor(f"{name}-actor")
        return found


class ActorProxy:
    """Calls services by name from inside an actor (see the module docstring).

    Parameters
    ----------
    config:
        The environment's namespace, call defaults and service directory.
    owner:
        Who calls, for messages.
    cancelled:
        Returns True once the caller's job is stopping: new calls raise ``JobCancelledError``.
    on_resolve:
        Called with a service's name the first time this proxy reaches it.
    """

    def __init__(
        self,
        config: ActorConfig,
        *,
        owner: str = "",
        cancelled: Callable[[], bool] | None = None,
        stop_event: threading.Event | None = None,
        on_resolve: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.owner = owner
        self.sync_timeout = config.sync_timeout
        self.async_timeout = config.async_timeout
        self._cancelled = cancelled
        self._stop_event = stop_event or threading.Event()
        self._on_resolve = on_resolve
        # Invariants: _handles maps a name to the handles of every replica of that service;
        # an entry is dropped when a replica is found dead, and looked up again on next use.
        self._handles: dict[str, list[Any]] = {}
        self._turns: dict[str, itertools.count[int]] = {}
        self._ids = itertools.count(1)

    # -- finding services ------------------------------------------------------------------
    def _resolve(self, name: str) -> tuple[Any, list[Any]]:
        handles = self._handles.get(name)
        if handles is None:
            handles = self._handles[name] = self._look_up(name)
            self._turns.setdefault(name, itertools.count())
            if self._on_resolve is not None:
                self._on_resolve(name)
        if len(handles) == 1:
            return handles[0], handles
        return handles[next(self._turns[name]) % len(handles)], handles

    def _look_up(self, name: str) -> list[Any]:
        import ray

        if not isinstance(name, str):
            raise TypeError(f"a service name is a str, got {type(name).__name__}: {name!r}")
        entry = self.config.directory.get(name)
        wanted = entry.replicas if entry is not None else 1024
        handles = []
        for i in range(wanted):
            try:
                handles.append(ray.get_actor(actor_name(name, i), namespace=self.config.namespace))
            except ValueError:
                break
        if handles:
            return handles
        if entry is None:
            raise ServiceNotFoundError(name, self.config.directory)
        raise ServiceUnavailableError(
            f"service {name!r} cannot take calls: it is not running on Ray; call it from the "
            f"driver (env.call_service) to start it, or check %sage_status"
        )

    def _forget(self, name: str) -> None:
        self._handles.pop(name, None)

    def _policy(self, name: str, retries: RetryPolicy | int | None) -> RetryPolicy | None:
        if retries is not None:
            return RetryPolicy.coerce(retries)
        entry = self.config.directory.get(name)
        return entry.retry if entry is not None else None

    # -- sync ------------------------------------------------------------------------------
    def call_service(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        retries: RetryPolicy | int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call service ``name`` and wait for its result (see ``ProxyManager.call_service``)."""
        if self._cancelled is not None and self._cancelled():
            raise JobCancelledError(f"job stopping: call to {name!r} not made")
        method = "process" if method is None else check_method(method)
        timeout = self.sync_timeout if timeout is None else check_timeout(timeout)
        policy = self._policy(name, retries)
        if policy is None or not policy.retries:
            return self._call_once(name, method, args, kwargs, timeout)
        return call_with_retries(
            lambda left: self._call_once(name, method, args, kwargs, left),
            policy,
            timeout,
            name,
            method,
            self._stop_event,
        )

    def _call_once(
        self,
        name: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
    ) -> Any:
        import ray
        from ray import exceptions as rex

        handle, _ = self._resolve(name)
        payload = encode_call(name, method, args, kwargs)
        forever = timeout == math.inf
        deadline = None if forever else time.time() + timeout
        try:
            ref = handle.handle.remote(*pack_batch([(next(self._ids), deadline, payload)]))
            _pid, _version, entries = unpack_reply(
                ray.get(ref, timeout=None if forever else timeout)
            )
        except rex.GetTimeoutError:
            raise ServiceTimeoutError(name, method, timeout, started=True) from None
        except rex.RayError as exc:
            if isinstance(exc, rex.RayActorError):
                self._forget(name)
            raise translate_ray_error(exc, name, method) from exc
        response = response_from_wire(entries[0], name, method, timeout)
        if response.success:
            return response.result
        raise error_from_response(name, method, response)

    # -- async -----------------------------------------------------------------------------
    def call_service_async(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        retries: RetryPolicy | int | None = None,
        **kwargs: Any,
    ) -> AwaitableFuture:
        """Call service ``name`` without waiting; the future fails with ``ServiceTimeoutError``
        after ``timeout`` (default 30 s)."""
        if self._cancelled is not None and self._cancelled():
            raise JobCancelledError(f"job stopping: call to {name!r} not made")
        if timeout is not None and timeout == math.inf:
            raise ValueError(
                "an async call needs a finite timeout; use call_service to wait forever"
            )
        method = "process" if method is None else check_method(method)
        timeout = self.async_timeout if timeout is None else check_timeout(timeout)
        policy = self._policy(name, retries)
        if policy is None or not policy.retries:
            return self._submit(name, method, args, kwargs, timeout)
        environment = self.config.environment
        return RetryingFuture(
            lambda left, _retry: self._submit(name, method, args, kwargs, left),
            name,
            method,
            timeout,
            policy,
            _scheduler(environment),
            _callbacks(environment),
        )

    def _submit(
        self,
        name: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
    ) -> _RayCallFuture:
        handle, _ = self._resolve(name)
        future = _RayCallFuture(self, name, method, timeout)
        future.callbacks = _callbacks(self.config.environment)
        try:
            payload = encode_call(name, method, args, kwargs)
        except Exception as exc:
            future.set_exception(exc)
            return future
        future.arm(_scheduler(self.config.environment), time.monotonic() + timeout)
        try:
            ref = handle.handle.remote(
                *pack_batch([(next(self._ids), time.time() + timeout, payload)])
            )
        except Exception as exc:
            future.disarm()
            raise translate_ray_error(exc, name, method) from exc
        future.watch(ref)
        return future


class _RayCallFuture(AwaitableFuture):
    """One async call from an actor: completed by Ray's callback or failed at its deadline."""

    def __init__(self, proxy: ActorProxy, name: str, method: str, timeout: float) -> None:
        super().__init__()
        self.service_name = name
        self.method_name = method
        self.timeout = timeout
        self._proxy = proxy
        self._tick = -1
        self._scheduler: DeadlineScheduler | None = None
        self._ref: Any = None

    def arm(self, scheduler: DeadlineScheduler, deadline: float) -> None:
        """Fail with ``ServiceTimeoutError`` at ``deadline`` (``time.monotonic()``) unless Ray
        answers first; call before sending, so an answer never finds it unarmed."""
        self._tick = scheduler.add(self, deadline)
        self._scheduler = scheduler

    def disarm(self) -> None:
        """The call could not be sent: forget the deadline."""
        if self._scheduler is not None:
            self._scheduler.discard(self, self._tick)

    def watch(self, ref: Any) -> None:
        """Complete from ``ref``, the call's ObjectRef, once Ray has its result."""
        self._ref = ref  # keeps the result alive until the callback ran
        on_completed(ref, self._ray_done)

    def _ray_done(self, data: Any) -> None:
        if self._scheduler is not None:
            self._scheduler.discard(self, self._tick)
        self._ref = None
        name, method = self.service_name, self.method_name
        if isinstance(data, BaseException):
            from ray import exceptions as rex

            if isinstance(data, rex.RayActorError):
                self._proxy._forget(name)
            self._settle(None, translate_ray_error(data, name, method))
            return
        try:
            response = response_from_wire(unpack_reply(data)[2][0], name, method, self.timeout)
        except Exception as exc:  # an unreadable reply fails the call: it never hangs
            self._settle(None, exc)
            return
        if response.success:
            self._settle(response.result, None)
        else:
            self._settle(None, error_from_response(name, method, response))

    def expire(self) -> None:
        if not self.done():
            exc = ServiceTimeoutError(
                self.service_name, self.method_name, self.timeout, started=True
            )
            self._settle(None, exc)

    def abandon(self, reason: str) -> None:
        self._settle(None, ServiceUnavailableError(f"call abandoned: {reason}"))
