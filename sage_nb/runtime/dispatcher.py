"""``Dispatcher``: deploys an environment's services as service tasks and stops them.

It creates one ``ServiceContext`` per registered name (kept across restarts and swaps, so
callers' cached contexts stay valid) and a service task for it through the environment's
``Backend`` (``backend.py``): threads by default, Ray actors for ``RemoteEnvironment``.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
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
from .threads import make_thread

if TYPE_CHECKING:
    import threading as _threading

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)


class _Start:
    """A service being started on its own thread (``sage_nb/start/<name>``): its constructor
    and ``setup()`` run there, under no lock, while callers queue requests with their own
    deadlines."""

    __slots__ = ("done", "error", "finished", "stop_requested", "task", "thread")

    def __init__(self, task: BaseServiceTask) -> None:
        self.task = task
        self.done = threading.Event()
        self.error: BaseException | None = None
        # Invariants: finished and stop_requested change under the dispatcher's lock. A stop
        # that gave up waiting for the start sets stop_requested unless finished: then the
        # start thread stops the task once built (and only then: one stop, by one thread).
        self.finished = False
        self.stop_requested = False
        self.thread: threading.Thread | None = None


class Dispatcher:
    """Owns the registered services of one environment and their running tasks.

    Thread-safe. Services start on first use (a call, or a job's submit) and stop on
    ``stop_services`` or ``close``; a stopped service starts again on its next call unless the
    dispatcher is closed.

    No user code runs under a lock of the dispatcher's. A service starts on a thread of its
    own: from the moment its start begins, its context accepts requests, which wait in its
    queue, each caller with its own deadline, until the service is built; a start that fails
    fails them with the reason. Swaps, restarts and stops of one service are serialized by
    a lock of that service's (``_ops``) that only those operations take: calls, statistics,
    health and views never wait for a service being built, swapped or stopped.
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
        # Invariants: _factories, _contexts, _starts, _ops and _closed change under _lock, a
        # leaf held for dictionary updates only (never while user code or a wait runs).
        # ctx.task and ctx.accepting change under _lock when a start begins, and on the start
        # thread when it fails. _ops[name] serializes the lifecycle operations of one service
        # (swap, restart, stop, unregister) and is held while their user code runs; no caller
        # or observer takes it.
        self._lock = threading.Lock()
        self._factories: dict[str, ServiceFactory] = {}
        self._contexts: dict[str, ServiceContext] = {}
        self._starts: dict[str, _Start] = {}
        self._ops: dict[str, threading.Lock] = {}
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
        name = factory.name
        with self._lock:
            self._check_open()
            if name in self._factories and not replace:
                raise ServiceExistsError(name)
            ctx = self._contexts.get(name)
            if ctx is None or not ctx.accepting or ctx.task is None:
                self._factories[name] = factory
                self._start_failures.pop(name, None)
                return "registered"
        # Running or starting: swap it (user code: the new version's constructor and setup())
        # outside the dispatcher's lock, one lifecycle operation of this service at a time.
        with self._ops_lock(name):
            self._wait_for_start(name, None)
            task = ctx.task
            if not ctx.accepting or task is None:  # stopped meanwhile: the next call starts it
                with self._lock:
                    self._factories[name] = factory
                    self._start_failures.pop(name, None)
                return "registered"
            if not task.swaps_in_place(factory):
                self._restart(ctx, task, factory)
                return "restarted"
            task.swap(factory)
            ctx.configure(factory.options)
            with self._lock:
                self._factories[name] = factory
                self._start_failures.pop(name, None)
            return "swapped"

    def _restart(self, ctx: ServiceContext, task: BaseServiceTask, factory: ServiceFactory) -> None:
        """Replace a running service whose new registration changes how it runs (a Ray
        service's replicas or resources): stop it, answering what is queued, then start the
        new one. If that fails to start, the old registration is started again and the error
        raised. Callers arriving meanwhile queue for the new service."""
        name = factory.name
        task.stop(self.sync_timeout, drain=True)
        with self._lock:
            old = self._factories[name]
            self._factories[name] = factory
            self._start_failures.pop(name, None)
        try:
            self.ensure_service(name, wait=None)
        except BaseException:
            with self._lock:
                self._factories[name] = old
            try:
                self.ensure_service(name, wait=None)
            except Exception as exc:
                log.warning("service %r: the previous version did not start again: %s", name, exc)
            raise

    def unregister(self, name: str, timeout: float | None = 5.0) -> None:
        with self._lock:
            if name not in self._factories:
                raise ServiceNotFoundError(name, self._factories)
        self.stop_service(name, timeout)
        with self._lock:
            self._factories.pop(name, None)
            self._contexts.pop(name, None)
            self._start_failures.pop(name, None)
            self._ops.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._factories)

    def factory(self, name: str) -> ServiceFactory:
        with self._lock:
            found = self._factories.get(name)
        if found is None:
            raise ServiceNotFoundError(name, self.names())
        return found

    def _ops_lock(self, name: str) -> threading.Lock:
        with self._lock:
            lock = self._ops.get(name)
            if lock is None:
                lock = self._ops[name] = threading.Lock()
            return lock

    # -- deployment ------------------------------------------------------------------------
    def ensure_service(self, name: str, *, wait: float | None = 0.0) -> ServiceContext:
        """The context of ``name``, starting its task first if needed.

        The start runs on its own thread; the context accepts requests at once (they queue
        until the service is built). ``wait`` is how long to wait for a start in progress
        (``None``: until it ends; ``0``: not at all); a start that failed within it raises
        ``ServiceUnavailableError``.
        """
        ctx = self._contexts.get(name)
        if ctx is None or not ctx.accepting:
            ctx = self._begin_start(name)
        if wait != 0.0:
            self._wait_for_start(name, wait, raise_failure=True)
        return ctx

    def _begin_start(self, name: str) -> ServiceContext:
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
            if old is not None:
                # The old task may still be stopping: its workers keep their queue (and the
                # stop tokens in it); the new task serves a queue of its own.
                ctx.retire(old)
                ctx.request_queue = queue.SimpleQueue()
            proxy = self.proxy(owner=f"service {name}")
            task = self.backend.create_service_task(ctx, factory, proxy)
            start = self._starts[name] = _Start(task)
            ctx.task = task
            ctx.reason = ctx.start_error = None
            ctx.accepting = True  # requests queue from now on, until the start ends
            start.thread = make_thread(
                f"sage_nb/start/{name}", self._run_start, name, ctx, old, start
            )
            start.thread.start()
        return ctx

    def _run_start(
        self, name: str, ctx: ServiceContext, old: BaseServiceTask | None, start: _Start
    ) -> None:
        """The start thread: close what a service that went down left, build the new task."""
        task = start.task
        try:
            if old is not None and old.state == "down":
                # Its workers were told to exit when it went down; stopping it runs the
                # close() of the version they ran, which no restart replaced.
                old.stop(timeout=1.0, drain=False)
            task.start()
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            error = ServiceUnavailableError(
                f"service {name!r} failed to start: {reason}; "
                f"fix its constructor or setup() and register it again"
            )
            error.__cause__ = exc
            start.error = error
            with self._lock:
                self._start_failures[name] = f"failed to start: {reason}"
            task.start_failed(f"failed to start: {reason}")
            ctx.refuse_queued(error, reason=f"it failed to start ({reason})")
        else:
            with self._lock:
                self._start_failures.pop(name, None)
        finally:
            with self._lock:
                if self._starts.get(name) is start:
                    del self._starts[name]
                start.finished = True
                stop_now = start.stop_requested and start.error is None
            start.done.set()
        if stop_now:  # a stop gave up waiting for this start: it is ours to do
            task.stop(timeout=1.0, drain=False)

    def _wait_for_start(
        self, name: str, timeout: float | None, *, raise_failure: bool = False
    ) -> bool:
        """Wait for a start of ``name`` in progress; False if it is still running after
        ``timeout``. With ``raise_failure``, a failed start raises its error."""
        start = self._starts.get(name)
        if start is None:
            return True
        if not start.done.wait(timeout):
            return False
        if raise_failure and start.error is not None:
            raise start.error
        return True

    def start_all(self) -> None:
        """Start every registered service (at once, each on its own thread) and wait for
        them; the first that failed raises."""
        names = self.names()
        for name in names:
            self.ensure_service(name)
        for name in names:
            self.ensure_service(name, wait=None)

    def proxy(
        self,
        owner: str = "",
        *,
        cancelled: Callable[[], bool] | None = None,
        stop_event: threading.Event | None = None,
        on_resolve: Callable[[str], None] | None = None,
    ) -> ProxyManager:
        """A ``ProxyManager`` whose lookups start services on demand."""
        resolve: Callable[[str], ServiceContext] = self.ensure_service
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
        """Stop service ``name``; a start in progress is waited for (within ``timeout``), and
        a service still starting then stops as soon as it is built."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            ctx = self._contexts.get(name)
            start = self._starts.get(name)
        if ctx is None or ctx.task is None:
            return True
        with self._ops_lock(name):
            if start is not None and not start.done.wait(_left(deadline)):
                with self._lock:
                    handed_over = not start.finished
                    start.stop_requested = handed_over
                if handed_over:  # the start thread stops it as soon as it is built
                    ctx.accepting = False
                    return False
            task = ctx.task
            return task.stop(_left(deadline), drain=drain)

    def stop_services(self, timeout: float | None = 5.0, *, drain: bool = True) -> bool:
        """Stop every running service; True if all stopped within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        with self._lock:
            names = list(self._contexts)
        for name in names:
            left = None if deadline is None else max(0.1, deadline - time.monotonic())
            ok = self.stop_service(name, left, drain=drain) and ok
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

    # -- observation: snapshots, never a wait for a service --------------------------------
    def contexts(self) -> dict[str, ServiceContext]:
        with self._lock:
            return dict(self._contexts)

    def starting(self) -> list[str]:
        """The services whose start is in progress."""
        with self._lock:
            return sorted(self._starts)

    def statistics(self) -> list[ServiceStatistics]:
        stats = []
        with self._lock:
            items = [
                (n, self._contexts.get(n), self._factories[n]) for n in sorted(self._factories)
            ]
        for name, ctx, factory in items:
            task = ctx.task if ctx is not None else None
            if ctx is None or task is None:
                stats.append(_idle_statistics(name, factory))
                continue
            current = task.statistics()
            done, failed, timed_out, rejected, restarts = ctx.earlier_outcomes()
            if done or failed or timed_out or rejected or restarts:  # by earlier tasks
                current = dataclasses.replace(
                    current,
                    done=current.done + done,
                    failed=current.failed + failed,
                    timed_out=current.timed_out + timed_out,
                    rejected=current.rejected + rejected,
                    restarts=current.restarts + restarts,
                )
            stats.append(current)
        return stats

    def health(self, timeout: float = 1.0) -> dict[str, HealthReport]:
        """Each registered service's health (see ``BaseEnvironment.health``)."""
        reports = {}
        with self._lock:
            names = sorted(self._factories)
            failures = dict(self._start_failures)
            starting = set(self._starts)
            contexts = dict(self._contexts)
        for name in names:
            failure = failures.get(name)
            if name in starting:
                reports[name] = HealthReport(name, "starting", "its constructor or setup() runs")
                continue
            if failure is not None:
                reports[name] = HealthReport(name, "down", failure)
                continue
            ctx = contexts.get(name)
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


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


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
        rejected=0,
        restarts=0,
        p50=None,
        p95=None,
        p99=None,
    )
