"""``BaseServiceTask`` executes the requests of one service against a ``ServiceVersion``.

The base class knows how to build, swap and close a service version (a ``ServiceFactory``, see
``service_factory.py``, builds the instance) and how to answer a request with an error of the
runtime's own. Subclasses decide where that happens: ``LocalServiceTask`` on threads of the
kernel, ``RayServiceTask`` in a Ray actor.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import ServiceNotFoundError, ServiceTimeoutError
from ..messages import ServiceRequest, ServiceResponse, error_response
from .service_factory import ServiceFactory

if TYPE_CHECKING:
    from ...core.calls import ServiceCaller
    from .context import ServiceContext

__all__ = [
    "HEALTH_METHOD",
    "BaseServiceTask",
    "HealthReport",
    "ServiceStatistics",
    "ServiceVersion",
]

log = logging.getLogger(__name__)

#: The method name health checks use; it runs the service's ``health()``.
HEALTH_METHOD = "__health__"


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
        elif name.startswith("_") or name in self.factory.hidden_methods:
            fn = None
        else:
            fn = getattr(self.instance, name, None)
        if not callable(fn):
            raise ServiceNotFoundError(service, method=name, methods=self.public_methods())
        found = self.methods[name] = (fn, inspect.iscoroutinefunction(fn))
        return found

    def public_methods(self) -> list[str]:
        inst = self.instance
        hidden = self.factory.hidden_methods
        return sorted(
            n
            for n in dir(inst)
            if not n.startswith("_") and n not in hidden and callable(getattr(inst, n, None))
        )

    def close(self) -> None:
        """Run the instance's stop hooks (``close()``; SAGE's ``stop``, ``cleanup``,
        ``terminate``)."""
        self.factory.close_service(self.instance)


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
    ``state`` is "created", "starting", "running", "stopping", "stopped", "down" or
    "registered" (never started).
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
    #: Calls refused without running: the service was stopped, down, failed to start, or
    #: its queue was full. done + failed + timed_out + cancelled + rejected counts every
    #: attempt once; minus ``retries``, every call.
    rejected: int
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

    def __init__(self, context: ServiceContext, factory: ServiceFactory, proxy: ServiceCaller):
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

    def expired_response(self, request: ServiceRequest) -> ServiceResponse:
        exc = ServiceTimeoutError(self.name, request.method_name, request.timeout, started=False)
        return error_response(request, exc)

    def start_failed(self, reason: str) -> None:
        """The dispatcher's start thread: building the service raised; it serves nothing."""
        self._state = "down"
        self._down_reason = reason
        self._refusing = True

    @staticmethod
    def deliver(request: ServiceRequest, response: ServiceResponse) -> bool:
        """Deliver ``response``; True if it settled the call (see ``ResponseTarget``)."""
        target = request.response_target
        return target is not None and bool(target.deliver(response))

    @classmethod
    def deliver_error(cls, request: ServiceRequest, exc: BaseException) -> bool:
        """Fail ``request`` with an error of sage_nb's own (the service never ran it)."""
        return cls.deliver(request, error_response(request, exc))

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

    def outcomes(self) -> tuple[int, int, int, int, int]:
        """The outcomes this task counted itself: (done, failed, timed out, rejected), and
        its restarts; the context counts the callers' side. Read when a newer task took over
        the service, so its statistics keep every call (``ServiceContext.earlier_outcomes``)."""
        raise NotImplementedError

    def finished(self) -> bool:
        """True once stopped (or down) with nothing left in flight: its outcomes are final."""
        raise NotImplementedError

    def liveness(self) -> tuple[str, str]:
        """("healthy" | "degraded" | "down" | "stopped", reason) from the runtime's own view."""
        raise NotImplementedError
