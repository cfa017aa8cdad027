"""``Dispatcher``: deploys an environment's services as service tasks and stops them.

It creates one ``ServiceContext`` per registered name (kept across restarts and swaps, so
callers' cached contexts stay valid) and a service task for it through the environment's
``Backend`` (``backend.py``): threads by default, Ray actors for ``RemoteEnvironment``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import (
    ServiceExistsError,
    ServiceNotFoundError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)
from .backend import Backend
from .metrics import ActivitySignal
from .proxy import ProxyManager
from .service.base_service_task import (
    HEALTH_METHOD,
    BaseServiceTask,
    HealthReport,
    ServiceStatistics,
)
from .service.context import ServiceContext
from .service.service_factory import ServiceFactory
from .service.service_manager import ServiceManager

if TYPE_CHECKING:
    import threading as _threading

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)


class Dispatcher:
    """Owns the registered services of one environment and their running tasks.

    Thread-safe. Services start on first use (a call, or a job's submit) and stop on
    ``stop_services`` or ``close``; a stopped service starts again on its next call unless the
    dispatcher is closed.
    """

    def __init__(
        self,
        name: str,
        manager: ServiceManager,
        *,
        backend: Backend,
        sync_timeout: float,
        async_timeout: float,
    ) -> None:
        self.name = name
        self.manager = manager
        self.backend = backend
        self.sync_timeout = sync_timeout
        self.async_timeout = async_timeout
        # Invariants: _factories, _contexts and _closed change under _lock (re-entrant: a
        # service's setup() may call another service, which starts it on the same thread).
        self._lock = threading.RLock()
        self._factories: dict[str, ServiceFactory] = {}
        self._contexts: dict[str, ServiceContext] = {}
        #: Why the last start of a service failed (its constructor or setup() raised); cleared
        #: by a successful start or a new registration. health() reports these as "down".
        self._start_failures: dict[str, str] = {}
        self._closed = False
        #: Shared by every service context and job of the environment.
        self.activity = ActivitySignal()

    # -- registration ----------------------------------------------------------------------
    def register(self, factory: ServiceFactory, *, replace: bool = False) -> str:
        """Add a service; with ``replace``, swap a running one in place (see ``swap``).

        Returns "registered", "swapped" or "restarted" (see ``BaseEnvironment.register_factory``).
        """
        with self._lock:
            self._check_open()
            if factory.name in self._factories and not replace:
                raise ServiceExistsError(factory.name)
            ctx = self._contexts.get(factory.name)
            task = ctx.task if ctx is not None else None
            outcome = "registered"
            if ctx is not None and ctx.accepting and task is not None:
                if not task.swaps_in_place(factory):
                    self._restart(task, factory)
                    return "restarted"
                task.swap(factory)
                ctx.configure(factory.options)
                outcome = "swapped"
            self._factories[factory.name] = factory
            self._start_failures.pop(factory.name, None)
            return outcome

    def _restart(self, task: BaseServiceTask, factory: ServiceFactory) -> None:
        """Replace a running service whose new registration changes how it runs (a Ray
        service's replicas or resources): stop it, answering what is queued, then start the
        new one. If that fails to start, the old registration is started again and the error
        raised. Callers arriving meanwhile wait for the new service (they need ``_lock``)."""
        name = factory.name
        old = self._factories[name]
        task.stop(self.sync_timeout, drain=True)
        self._factories[name] = factory
        try:
            self.ensure_service(name)
        except BaseException:
            self._factories[name] = old
            try:
                self.ensure_service(name)
            except Exception as exc:
                log.warning("service %r: the previous version did not start again: %s", name, exc)
            raise

    def unregister(self, name: str, timeout: float | None = 5.0) -> None:
        with self._lock:
            if name not in self._factories:
                raise ServiceNotFoundError(name, self._factories)
            self.stop_service(name, timeout)
            del self._factories[name]
            self._contexts.pop(name, None)
            self._start_failures.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._factories)

    def factory(self, name: str) -> ServiceFactory:
        with self._lock:
            found = self._factories.get(name)
        if found is None:
            raise ServiceNotFoundError(name, self.names())
        return found

    # -- deployment ------------------------------------------------------------------------
    def ensure_service(self, name: str) -> ServiceContext:
        """The running context of ``name``, starting its task first if needed."""
        ctx = self._contexts.get(name)
        if ctx is not None and ctx.accepting:
            return ctx
        with self._lock:
            self._check_open()
            factory = self._factories.get(name)
            if factory is None:
                raise ServiceNotFoundError(name, self._factories)
            ctx = self._contexts.get(name)
            if ctx is None:
                ctx = self._contexts[name] = ServiceContext(name, self.name)
                ctx.activity = self.activity
            if ctx.accepting:
                return ctx
            ctx.configure(factory.options)
            old = ctx.task
            if old is not None and old.state == "down":
                # Its workers were told to exit when it went down; stopping it runs the
                # close() of the version they ran, which no restart replaced.
                old.stop(timeout=1.0, drain=False)
            proxy = self.proxy(owner=f"service {name}")
            task = self.backend.create_service_task(ctx, factory, proxy)
            try:
                task.start()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._start_failures[name] = f"failed to start: {reason}"
                msg = (
                    f"service {name!r} failed to start: {reason}; "
                    f"fix its constructor or setup() and register it again"
                )
                raise ServiceUnavailableError(msg) from exc
            self._start_failures.pop(name, None)
            return ctx

    def start_all(self) -> None:
        for name in self.names():
            self.ensure_service(name)

    def proxy(
        self,
        owner: str = "",
        *,
        cancelled: Callable[[], bool] | None = None,
        stop_event: threading.Event | None = None,
        on_resolve: Callable[[str], None] | None = None,
    ) -> ProxyManager:
        """A ``ProxyManager`` whose lookups start services on demand."""
        resolve = self.ensure_service
        if on_resolve is not None:

            def resolve(name: str) -> ServiceContext:
                ctx = self.ensure_service(name)
                on_resolve(name)
                return ctx

        return ProxyManager(
            self.manager,
            resolve,
            sync_timeout=self.sync_timeout,
            async_timeout=self.async_timeout,
            cancelled=cancelled,
            stop_event=stop_event,
            owner=owner,
        )

    def stop_service(self, name: str, timeout: float | None = 5.0, *, drain: bool = True) -> bool:
        with self._lock:
            ctx = self._contexts.get(name)
        if ctx is None or ctx.task is None:
            return True
        return ctx.task.stop(timeout, drain=drain)

    def stop_services(self, timeout: float | None = 5.0, *, drain: bool = True) -> bool:
        """Stop every running service; True if all stopped within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        with self._lock:
            contexts = list(self._contexts.values())
        for ctx in contexts:
            left = None if deadline is None else max(0.1, deadline - time.monotonic())
            if ctx.task is not None:
                ok = ctx.task.stop(left, drain=drain) and ok
        return ok

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop every service for good; later calls raise ``ServiceUnavailableError``."""
        with self._lock:
            self._closed = True
        ok = self.stop_services(timeout, drain=False)
        self.manager.close()
        return ok

    def _check_open(self) -> None:
        if self._closed:
            raise ServiceUnavailableError(
                f"environment {self.name!r} is closed; create a new one to call services"
            )

    # -- observation -----------------------------------------------------------------------
    def contexts(self) -> dict[str, ServiceContext]:
        with self._lock:
            return dict(self._contexts)

    def statistics(self) -> list[ServiceStatistics]:
        stats = []
        with self._lock:
            items = [(n, self._contexts.get(n)) for n in sorted(self._factories)]
        for name, ctx in items:
            if ctx is not None and ctx.task is not None:
                stats.append(ctx.task.statistics())
            else:
                stats.append(_idle_statistics(name, self._factories[name]))
        return stats

    def health(self, timeout: float = 1.0) -> dict[str, HealthReport]:
        """Each registered service's health (see ``BaseEnvironment.health``)."""
        reports = {}
        for name in self.names():
            failure = self._start_failures.get(name)
            if failure is not None:
                reports[name] = HealthReport(name, "down", failure)
                continue
            ctx = self._contexts.get(name)
            task = ctx.task if ctx is not None else None
            if task is None:
                reports[name] = HealthReport(name, "stopped", "not started")
                continue
            status, reason = task.liveness()
            if status == "healthy":
                status, reason = self._ask_health(ctx, task, timeout)
            reports[name] = HealthReport(name, status, reason)
        return reports

    def _ask_health(
        self, ctx: ServiceContext | None, task: BaseServiceTask, timeout: float
    ) -> tuple[str, str]:
        """Run the service's own ``health()`` (if any) as a request on its worker."""
        version = getattr(task, "version", None)
        if (
            ctx is None
            or version is None
            or not callable(getattr(version.instance, "health", None))
        ):
            return "healthy", ""
        try:
            answer = self.manager.call_sync(ctx, HEALTH_METHOD, (), {}, timeout)
        except ServiceTimeoutError:
            return "degraded", f"health() did not answer within {timeout:g} s"
        except Exception as exc:
            cause = exc.__cause__ or exc
            return "degraded", f"health() raised {type(cause).__name__}: {cause}"
        if not answer:
            return "degraded", f"health() returned {answer!r}"
        return "healthy", "" if answer is True else str(answer)

    def threads(self) -> list[_threading.Thread]:
        found: list[Any] = []
        for ctx in self.contexts().values():
            threads = getattr(ctx.task, "threads", None)
            if callable(threads):
                found += threads()
        return found


def _idle_statistics(name: str, factory: ServiceFactory) -> ServiceStatistics:
    return ServiceStatistics(
        name=name,
        state="registered",
        backend="-",
        workers=0,
        version=0,
        queued=0,
        in_flight=0,
        done=0,
        failed=0,
        timed_out=0,
        cancelled=0,
        retries=0,
        restarts=0,
        p50=None,
        p95=None,
        p99=None,
    )
