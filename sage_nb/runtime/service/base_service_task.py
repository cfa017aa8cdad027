"""``ServiceFactory`` builds a user's service; ``BaseServiceTask`` executes requests against it.

The base class knows how to build, swap and close a service version and how to turn one request
into one response. Subclasses decide where that happens: ``LocalServiceTask`` on threads of the
kernel, ``RayServiceTask`` in a Ray actor.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import ServiceNotFoundError, ServiceTimeoutError
from ..messages import RemoteError, ServiceRequest, ServiceResponse

if TYPE_CHECKING:
    from ..proxy import ProxyManager
    from ..retry import RetryPolicy
    from .context import ServiceContext

__all__ = [
    "HEALTH_METHOD",
    "BaseServiceTask",
    "HealthReport",
    "ServiceFactory",
    "ServiceStatistics",
    "ServiceVersion",
]

log = logging.getLogger(__name__)

#: The method name health checks use; it runs the service's ``health()``.
HEALTH_METHOD = "__health__"

#: Names a caller may not pick with ``method=``: lifecycle hooks and runtime helpers.
_HIDDEN_METHODS = frozenset({"setup", "close", "health", "call_service", "call_service_async"})


class _FunctionService:
    """Adapts a plain function (or any callable) registered as a service: it is ``process``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.process = fn

    def __repr__(self) -> str:
        return f"<function service {getattr(self.process, '__qualname__', self.process)!r}>"


@dataclass(frozen=True)
class ServiceFactory:
    """How to build a service: the registered class, function or instance and its arguments.

    ``create_service`` instantiates a class with ``args``/``kwargs``, wraps a function so it
    becomes ``process``, or uses an instance as it is; then it gives the service its context
    (``self.ctx``, ``self.call_service``, ``self.call_service_async``) and runs ``setup()``.
    """

    name: str
    target: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    concurrency: int = 1
    #: Where the definition came from: "code" (register_service) or "cell" (%%sage_service).
    origin: str = "code"
    #: Backpressure: requests that may wait (None: unbounded) and what a caller does when the
    #: queue is full: "block" until its deadline, or "fail" with ServiceOverloadedError.
    max_queued: int | None = 10_000
    overflow: str = "block"
    #: Default retry policy of calls to this service (None: no retries).
    retry: RetryPolicy | None = None
    #: How many times a crashed worker is restarted (with backoff) before the service is down.
    max_restarts: int = 3
    #: Options only a backend reads (the Ray backend: replicas, resources, task retries).
    backend_options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise ValueError(f"concurrency must be an int >= 1, got {self.concurrency!r}")
        if self.max_queued is not None and (
            not isinstance(self.max_queued, int) or self.max_queued < 1
        ):
            raise ValueError(f"max_queued must be an int >= 1 or None, got {self.max_queued!r}")
        if self.overflow not in ("block", "fail"):
            raise ValueError(f"overflow must be 'block' or 'fail', got {self.overflow!r}")
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0, got {self.max_restarts!r}")
        if inspect.isclass(self.target) or callable(self.target):
            return
        # An instance is a service if it has methods of its own: not a builtin value.
        if type(self.target).__module__ == "builtins":
            raise TypeError(
                f"service {self.name!r} must be a class, a function or an object with methods; "
                f"got {type(self.target).__name__}"
            )

    @property
    def display_name(self) -> str:
        t = self.target
        return getattr(t, "__qualname__", None) or type(t).__qualname__

    def create_service(self, proxy: ProxyManager | None = None) -> Any:
        target = self.target
        if inspect.isclass(target):
            instance = target(*self.args, **(self.kwargs or {}))
        elif callable(target) and not hasattr(target, "process"):
            instance = _FunctionService(target)
        else:
            instance = target
        if proxy is not None:
            _inject(instance, proxy)
        setup = getattr(instance, "setup", None)
        if callable(setup):
            setup()
        return instance


def _inject(instance: Any, proxy: ProxyManager) -> None:
    """Give a service ``ctx`` and the call helpers unless its class defines its own."""
    for attr, value in (
        ("ctx", proxy),
        ("call_service", proxy.call_service),
        ("call_service_async", proxy.call_service_async),
    ):
        if attr in ("call_service", "call_service_async") and hasattr(type(instance), attr):
            continue
        try:
            setattr(instance, attr, value)
        except (AttributeError, TypeError):  # __slots__ or a read-only object: it can do without
            log.debug("could not give %r attribute %s", instance, attr)


class ServiceVersion:
    """One built instance of a service and its resolved methods.

    ``methods`` maps a method name to ``(callable, is_coroutine_function)``; it is filled on
    first use of each name, so a call costs one dict lookup.
    """

    __slots__ = ("factory", "instance", "methods", "number")

    def __init__(self, factory: ServiceFactory, instance: Any, number: int) -> None:
        self.factory = factory
        self.instance = instance
        self.number = number
        self.methods: dict[str, tuple[Callable[..., Any], bool]] = {}

    def resolve(self, service: str, name: str) -> tuple[Callable[..., Any], bool]:
        found = self.methods.get(name)
        if found is not None:
            return found
        if name == HEALTH_METHOD:  # the runtime's health check
            fn = getattr(self.instance, "health", None)
        elif name.startswith("_") or name in _HIDDEN_METHODS:
            fn = None
        else:
            fn = getattr(self.instance, name, None)
        if not callable(fn):
            raise ServiceNotFoundError(service, method=name, methods=self.public_methods())
        found = self.methods[name] = (fn, inspect.iscoroutinefunction(fn))
        return found

    def public_methods(self) -> list[str]:
        inst = self.instance
        return sorted(
            n
            for n in dir(inst)
            if not n.startswith("_")
            and n not in _HIDDEN_METHODS
            and n != "ctx"
            and callable(getattr(inst, n, None))
        )

    def close(self) -> None:
        close = getattr(self.instance, "close", None)
        if callable(close):
            close()


@dataclass(frozen=True)
class HealthReport:
    """The health of one service: ``status`` is "healthy", "degraded", "down" or "stopped"."""

    name: str
    status: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.status}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class ServiceStatistics:
    """A snapshot of one service, for ``%sage_status``, widgets and tests.

    Latencies are execution times in seconds over the most recent calls (``None`` before any).
    """

    name: str
    state: str
    backend: str
    workers: int
    version: int
    queued: int
    in_flight: int
    done: int
    failed: int
    timed_out: int
    cancelled: int
    retries: int
    restarts: int
    p50: float | None
    p95: float | None
    p99: float | None


class BaseServiceTask:
    """Executes the requests of one service.

    Subclasses implement ``start``, ``stop``, ``swap`` and ``statistics``; this class provides
    building a version and turning a request into a response (``execute``).
    """

    backend = "base"

    def __init__(self, context: ServiceContext, factory: ServiceFactory, proxy: ProxyManager):
        self.context = context
        self.factory = factory
        self.proxy = proxy
        self.name = context.name
        self._versions = 0
        #: "created", "running", "stopping", "stopped" or "down"; subclasses change it under
        #: their own lock.
        self._state = "created"
        #: Set when requests must be answered as unavailable instead of run.
        self._refusing = False
        self._down_reason = ""

    @property
    def state(self) -> str:
        return self._state

    def _enter_down(self, lock: Any, reason: str) -> bool:
        """Mark a running service down for ``reason`` (``_state`` changes under ``lock``): it
        takes no more calls and callers waiting for queue room wake up to fail. False if it
        was not running; the subclass then fails what it holds."""
        with lock:
            if self._state != "running":
                return False
            self._state = "down"
            self._down_reason = reason
        ctx = self.context
        ctx.accepting = False
        self._refusing = True
        if ctx.waiting:
            ctx.notify_room(everyone=True)
        return True

    def build_version(self, factory: ServiceFactory) -> ServiceVersion:
        """Instantiate and set up ``factory``'s service; exceptions propagate to the caller."""
        instance = factory.create_service(self.proxy)
        self._versions += 1
        return ServiceVersion(factory, instance, self._versions)

    def execute(self, version: ServiceVersion, request: ServiceRequest) -> ServiceResponse | None:
        """Run ``request`` synchronously and return its response.

        Returns None when the method is a coroutine function: the caller must then schedule
        ``execute_async``. (Used by backends that do not need the hot path of
        ``LocalServiceTask``.)
        """
        start = time.monotonic()
        rid = request.request_id
        if request.deadline is not None and start > request.deadline:
            return self.expired_response(request)
        try:
            fn, is_async = version.resolve(self.name, request.method_name)
            if is_async:
                return None
            if request.context is None:
                result = fn(*request.args, **request.kwargs)
            else:
                result = request.context.run(fn, *request.args, **request.kwargs)
        except BaseException as exc:
            return ServiceResponse(
                rid, False, None, RemoteError.from_exception(exc), time.monotonic() - start
            )
        return ServiceResponse(rid, True, result, None, time.monotonic() - start)

    def expired_response(self, request: ServiceRequest) -> ServiceResponse:
        exc = ServiceTimeoutError(self.name, request.method_name, request.timeout, started=False)
        return _error_response(request, exc)

    @staticmethod
    def _deliver(request: ServiceRequest, response: ServiceResponse) -> None:
        target = request.response_target
        if target is not None:
            target.deliver(response)

    @classmethod
    def _deliver_error(cls, request: ServiceRequest, exc: BaseException) -> None:
        """Fail ``request`` with an error of sage_nb's own (the service never ran it)."""
        cls._deliver(request, _error_response(request, exc))

    # -- lifecycle, implemented by backends ------------------------------------------------
    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float | None = 5.0, *, drain: bool = True) -> bool:
        raise NotImplementedError

    def swap(self, factory: ServiceFactory, timeout: float | None = None) -> None:
        raise NotImplementedError

    def swaps_in_place(self, factory: ServiceFactory) -> bool:
        """Whether ``swap(factory)`` can apply all of ``factory``; if not, the dispatcher
        restarts the service instead (queued requests are answered first)."""
        return True

    def statistics(self) -> ServiceStatistics:
        raise NotImplementedError

    def liveness(self) -> tuple[str, str]:
        """("healthy" | "degraded" | "down" | "stopped", reason) from the runtime's own view."""
        raise NotImplementedError


def _error_response(request: ServiceRequest, exc: BaseException) -> ServiceResponse:
    """A failed response carrying ``exc`` itself: raised by sage_nb, so no remote traceback."""
    return ServiceResponse(
        request.request_id, False, None, RemoteError(type(exc).__name__, str(exc), "", exc)
    )
