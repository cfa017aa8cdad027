"""``ServiceOptions`` say how a service is served; ``ServiceFactory`` builds the service itself.

``register_service``'s options are one ``ServiceOptions``, checked once when it is made and
passed as one value from the environment (or ``%%sage_service``) down to the service task.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...core.services import BaseService

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ...core.calls import ServiceCaller
    from ..retry import RetryPolicy

__all__ = ["ServiceFactory", "ServiceInstanceContext", "ServiceOptions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceOptions:
    """How a service is served: ``register_service``'s options, checked when made.

    ``concurrency`` worker threads (on Ray: calls each actor runs at once); ``max_queued``
    requests may wait (None: unbounded), and when the queue is full a caller waits for room
    until its deadline (``overflow="block"``) or fails at once with ``ServiceOverloadedError``
    (``"fail"``); ``retry`` is the default retry policy of calls (None: no retries); a crashed
    worker is restarted with backoff up to ``max_restarts`` times, then the service is down;
    ``backend`` holds options only a backend reads (the Ray backend: replicas, resources).
    """

    concurrency: int = 1
    max_queued: int | None = 10_000
    overflow: str = "block"
    retry: RetryPolicy | None = None
    max_restarts: int = 3
    backend: Mapping[str, Any] | None = field(default=None)

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


class _FunctionService:
    """Adapts a plain function (or any callable) registered as a service: it is ``process``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.process = fn

    def __repr__(self) -> str:
        return f"<function service {getattr(self.process, '__qualname__', self.process)!r}>"


@dataclass(frozen=True)
class ServiceFactory:
    """How to build a service: the registered class, function or instance and its arguments,
    with the ``ServiceOptions`` it is served with.

    ``create_service`` instantiates a class with ``args``/``kwargs``, wraps a function so it
    becomes ``process``, or uses an instance as it is; then it gives the service its context
    (``self.ctx``, a ``ServiceInstanceContext``, and ``self.call_service`` /
    ``self.call_service_async``) and runs ``setup()``.
    """

    name: str
    target: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    options: ServiceOptions = field(default_factory=ServiceOptions)
    #: Where the definition came from: "code" (register_service) or "cell" (%%sage_service).
    origin: str = "code"
    #: Which hooks run: "sage" (SAGE's order, see ``START_HOOKS``), "sage_nb" (``setup``,
    #: ``start_running``, ``close``) or "auto": SAGE's for a ``BaseService``, else sage_nb's.
    lifecycle: str = "auto"

    def __post_init__(self) -> None:
        if self.lifecycle not in ("auto", "sage", "sage_nb"):
            raise ValueError(
                f"lifecycle must be 'auto', 'sage' or 'sage_nb', got {self.lifecycle!r}"
            )
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

    @property
    def sage_lifecycle(self) -> bool:
        """Whether the service runs SAGE's hooks (``start``, ``stop``, ``cleanup``, ...)."""
        if self.lifecycle != "auto":
            return self.lifecycle == "sage"
        t = self.target
        return isinstance(t, BaseService) or (inspect.isclass(t) and issubclass(t, BaseService))

    @property
    def hidden_methods(self) -> frozenset[str]:
        """Names a caller may not call with ``method=``: the lifecycle hooks, the helpers."""
        return _SAGE_HIDDEN if self.sage_lifecycle else _HIDDEN

    def create_service(self, caller: ServiceCaller | None = None) -> Any:
        """Build the service, give it its context, run its start hooks (``START_HOOKS``)."""
        target = self.target
        args, kwargs = self.args, self.kwargs or {}
        ctx = ServiceInstanceContext(self.name, caller) if caller is not None else None
        sage = self.sage_lifecycle
        if inspect.isclass(target) and sage and ctx is not None:
            # SAGE's services use self.ctx in __init__: it is set before __init__ runs.
            if target.__new__ is object.__new__:
                instance = object.__new__(target)
            else:
                instance = target.__new__(target, *args, **kwargs)
            _inject(instance, ctx)
            if isinstance(instance, target):
                target.__init__(instance, *args, **kwargs)
        elif inspect.isclass(target):
            instance = target(*args, **kwargs)
        elif callable(target) and not hasattr(target, "process"):
            instance = _FunctionService(target)
        else:
            instance = target
        if ctx is not None:  # (again for SAGE's: an __init__ may have reset self.ctx)
            _inject(instance, ctx)
        for hooks in START_HOOKS["sage" if sage else "sage_nb"]:
            _run_first(instance, hooks)
        return instance

    def close_service(self, instance: Any) -> None:
        """Run the service's stop hooks (``STOP_HOOKS``); the first failure raises after the
        others ran."""
        error: BaseException | None = None
        for hooks in STOP_HOOKS["sage" if self.sage_lifecycle else "sage_nb"]:
            try:
                _run_first(instance, hooks)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error


#: The hooks run when a service starts, in order; of each tuple the first the service has.
START_HOOKS = {
    "sage": (("setup",), ("start_running", "start")),
    "sage_nb": (("setup",), ("start_running",)),
}
#: ... and when it stops.
STOP_HOOKS = {
    "sage": (("stop",), ("cleanup", "close"), ("terminate",)),
    "sage_nb": (("close",),),
}
_HELPERS = frozenset({"health", "call_service", "call_service_async", "ctx", "logger", "name"})
_HIDDEN = _HELPERS | {"setup", "start_running", "close"}
_SAGE_HIDDEN = _HIDDEN | {"start", "stop", "cleanup", "terminate"}


def _run_first(instance: Any, names: tuple[str, ...]) -> None:
    for name in names:
        hook = getattr(instance, name, None)
        if callable(hook):
            hook()
            return


class ServiceInstanceContext:
    """What a service sees as ``self.ctx``: its name, and ``proxy``, through which it calls
    other services (``self.call_service`` is ``self.ctx.call_service``).

    Operators see an ``OperatorContext`` instead (``runtime/tasks.py``): which parallel
    instance of which operator they are.
    """

    __slots__ = ("call_service", "call_service_async", "name", "proxy")

    def __init__(self, name: str, proxy: ServiceCaller) -> None:
        self.name = name
        self.proxy = proxy
        self.call_service: Callable[..., Any] = proxy.call_service
        self.call_service_async: Callable[..., Future[Any]] = proxy.call_service_async

    def __repr__(self) -> str:
        return f"<ServiceInstanceContext of service {self.name!r}>"


def _inject(instance: Any, ctx: ServiceInstanceContext) -> None:
    """Give a service ``ctx`` and the call helpers unless its class defines its own."""
    for attr, value in (
        ("ctx", ctx),
        ("call_service", ctx.call_service),
        ("call_service_async", ctx.call_service_async),
    ):
        if attr in ("call_service", "call_service_async") and hasattr(type(instance), attr):
            continue
        try:
            setattr(instance, attr, value)
        except (AttributeError, TypeError):  # __slots__ or a read-only object: it can do without
            log.debug("could not give %r attribute %s", instance, attr)
