"""Environments: where services are registered, pipelines are built and jobs are submitted.

Examples
--------
>>> from sage_nb import LocalEnvironment, MapFunction
>>> with LocalEnvironment("doc") as env:
...     @env.register_service("profile")
...     class Profile:
...         def process(self, user_id):
...             return {"user_id": user_id, "score": 0.9}
...     class Enrich(MapFunction):
...         def execute(self, record):
...             return {**record, "profile": self.call_service("profile", record["user_id"])}
...     _ = env.from_batch([{"user_id": "42"}]).map(Enrich()).print()
...     job = env.submit()
{'user_id': '42', 'profile': {'user_id': '42', 'score': 0.9}}
"""

from __future__ import annotations

import atexit
import itertools
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core.logs import set_console_level
from ..core.transformation import Transformation
from ..runtime.backend import Backend, ThreadBackend
from ..runtime.dead_letters import DEFAULT_KEEP_DEAD_LETTERS
from ..runtime.dispatcher import Dispatcher
from ..runtime.interrupts import Interrupts
from ..runtime.job_manager import DEFAULT_KEEP_JOBS, Job, JobManager, JobStatistics
from ..runtime.metrics import ActivitySignal
from ..runtime.proxy import DEFAULT_ASYNC_TIMEOUT, DEFAULT_SYNC_TIMEOUT, ProxyManager
from ..runtime.retry import RetryPolicy
from ..runtime.service.base_service_task import HealthReport, ServiceStatistics
from ..runtime.service.context import ServiceContext
from ..runtime.service.service_factory import ServiceFactory, ServiceOptions
from ..runtime.service.service_manager import ServiceManager
from ..runtime.views import make_view
from ..runtime.waiting import stop_interrupted, wait_for_job
from .pipeline import PipelineBuilder

__all__ = ["BaseEnvironment", "EnvironmentStatistics", "LocalEnvironment"]

T = TypeVar("T")

_names = itertools.count(1)
_open_environments: weakref.WeakSet[BaseEnvironment] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    # Daemon threads die with the interpreter. A script may end right after a non-blocking
    # submit() of a finite job (SAGE's programs do): let it deliver its records first, then
    # run every service's close().
    for env in list(_open_environments):
        env.finish_finite_jobs()
    for env in list(_open_environments):
        env.close(timeout=2.0)


@dataclass(frozen=True)
class EnvironmentStatistics:
    """Plain data about an environment: its services and jobs."""

    name: str
    closed: bool
    services: tuple[ServiceStatistics, ...]
    jobs: tuple[JobStatistics, ...]


class BaseEnvironment(PipelineBuilder):
    """What every environment shares; use ``LocalEnvironment`` or ``RemoteEnvironment``.

    Parameters
    ----------
    name:
        Shown in thread names, errors and displays.
    sync_timeout, async_timeout:
        Default timeouts (seconds) of ``call_service`` (10 s) and ``call_service_async`` (30 s).
    keep_services:
        Keep services running after a blocking ``submit`` finishes. By default, like SAGE, a
        batch job's cleanup stops the services (they start again on their next call); the
        notebook's kernel-resident environment keeps them.
    max_batch:
        Most records moved between tasks at once.
    channel_capacity:
        Batches a task's input queue holds before its producers wait (backpressure).
    propagate_context:
        Run each service request in a copy of its caller's ``contextvars`` context (the
        kernel-resident environment does, so what a service prints lands under the cell
        that called it).
    keep_jobs:
        How many ended jobs ``env.jobs`` keeps (100; None keeps all): a long-lived kernel
        does not grow without bound. Running jobs are always kept.
    keep_dead_letters:
        How many dead letters each job keeps, the newest (10,000; None keeps all); the
        dropped ones are counted in ``job.dead_letters_dropped`` and logged once.
    backend:
        Where services and operators run (``runtime/backend.py``); threads by default.

    ``call_service(name, *args, timeout=None, method=None, retries=None, **kwargs)`` and
    ``call_service_async(...)`` call a service from a script or a cell: they are the
    environment's ``ProxyManager``'s own methods (see ``ProxyManager.call_service``).
    """

    #: The environment's calls: its proxy's bound methods, one layer less per call.
    call_service: Any
    call_service_async: Any

    #: Which hooks services run: "auto" (SAGE's for a ``BaseService``, see
    #: ``ServiceFactory``), "sage" (``sage_nb.compat``) or "sage_nb".
    lifecycle: str = "auto"

    def __init__(
        self,
        name: str | None = None,
        *,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
        async_timeout: float = DEFAULT_ASYNC_TIMEOUT,
        keep_services: bool = False,
        max_batch: int = 1024,
        channel_capacity: int = 32,
        propagate_context: bool = False,
        keep_jobs: int | None = DEFAULT_KEEP_JOBS,
        keep_dead_letters: int | None = DEFAULT_KEEP_DEAD_LETTERS,
        backend: Backend | None = None,
    ) -> None:
        self.name = name or f"env{next(_names)}"
        self.keep_services = keep_services
        self.max_batch = max_batch
        self.channel_capacity = channel_capacity
        self._backend = backend or ThreadBackend()
        self._service_manager = ServiceManager(self.name, propagate_context=propagate_context)
        self._dispatcher = Dispatcher(
            self.name,
            self._service_manager,
            backend=self._backend,
            sync_timeout=sync_timeout,
            async_timeout=async_timeout,
        )
        self._proxy = self._dispatcher.proxy(owner=f"environment {self.name}")
        self.call_service = self._proxy.call_service
        self.call_service_async = self._proxy.call_service_async
        self._job_manager = JobManager(
            self.name, keep_jobs=keep_jobs, keep_dead_letters=keep_dead_letters
        )
        self.pipeline: list[Transformation] = []
        self._closed = False
        self._lock = threading.Lock()
        _open_environments.add(self)

    @property
    def backend(self) -> str:
        """Where services and operators run: "threads" or "ray"."""
        return self._backend.name

    # -- services --------------------------------------------------------------------------
    def register_service(
        self,
        name: str,
        service_class: Any = None,
        *ctor_args: Any,
        replace: bool = False,
        concurrency: int = 1,
        max_queued: int | None = 10_000,
        overflow: str = "block",
        retries: RetryPolicy | int | None = None,
        max_restarts: int = 3,
        **ctor_kwargs: Any,
    ) -> Any:
        """Register a service under ``name``: a class, a function (it becomes ``process``) or
        an object with methods. Works as a call or as a decorator.

        ``register_service("cache", LRUCache, 1024, ttl=30)`` builds ``LRUCache(1024, ttl=30)``
        when the service starts; ``@env.register_service("profile")`` above a class or function
        registers it and returns it unchanged. A name that exists raises
        ``ServiceExistsError`` unless ``replace=True``, which swaps a running service in place
        without losing queued requests.

        Options (reserved names, not passed to the constructor; see ``ServiceOptions``):
        ``concurrency`` worker threads; ``max_queued`` requests may wait (None: unbounded),
        and when the queue is full a caller waits for room until its deadline
        (``overflow="block"``) or fails at once with ``ServiceOverloadedError`` (``"fail"``);
        ``retries`` is the default retry policy of calls (an int or a ``RetryPolicy``); a
        worker that dies is restarted with backoff up to ``max_restarts`` times, then the
        service is down.
        """
        options = ServiceOptions(
            concurrency=concurrency,
            max_queued=max_queued,
            overflow=overflow,
            retry=RetryPolicy.coerce(retries),
            max_restarts=max_restarts,
        )
        return self.add_service(
            name, service_class, ctor_args, ctor_kwargs, options=options, replace=replace
        )

    def add_service(
        self,
        name: str,
        target: Any = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        options: ServiceOptions | None = None,
        replace: bool = False,
    ) -> Any:
        """``register_service`` with its options as one ``ServiceOptions`` and the
        constructor's arguments as ``args`` and ``kwargs``; returns ``target``, or a decorator
        when ``target`` is None."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"a service name must be a Python identifier such as 'profile', got {name!r}"
            )
        options = options or ServiceOptions()
        if target is None:
            if args or kwargs:
                raise TypeError(
                    "constructor arguments need the class: register_service(name, cls, *args)"
                )

            def decorate(found: T) -> T:
                self.add_service(name, found, options=options, replace=replace)
                return found

            return decorate
        factory = ServiceFactory(
            name, target, tuple(args), dict(kwargs or {}), options, lifecycle=self.lifecycle
        )
        self.register_factory(factory, replace=replace)
        return target

    def register_factory(self, factory: ServiceFactory, *, replace: bool = False) -> str:
        """Register a service built as a ``ServiceFactory`` (what ``%%sage_service`` does).

        Returns what happened: "registered" (a new name, or one not running), "swapped" (a
        running service took the new version in place) or "restarted" (the new options
        changed how it runs, so it restarted once its queued requests were answered).
        """
        self._backend.check_options(factory.options)
        return self._dispatcher.register(factory, replace=replace)

    def unregister_service(self, name: str, timeout: float | None = 5.0) -> None:
        """Stop service ``name`` (its ``close()`` runs) and forget it."""
        self._dispatcher.unregister(name, timeout)

    @property
    def services(self) -> list[str]:
        """The registered service names."""
        return self._dispatcher.names()

    def service_factory(self, name: str) -> ServiceFactory:
        """How service ``name`` is built and served; ``ServiceNotFoundError`` if unknown."""
        return self._dispatcher.factory(name)

    def start_service(self, name: str) -> ServiceContext:
        """Start service ``name`` now if it is not running (calls start it on demand too) and
        wait until it is ready; raises ``ServiceUnavailableError`` if its constructor or
        ``setup()`` fails."""
        return self._dispatcher.ensure_service(name, wait=None)

    def stop_service(self, name: str, timeout: float | None = 5.0) -> bool:
        """Stop service ``name`` (its ``close()`` runs); it starts again on its next call.
        True if it stopped within ``timeout``."""
        return self._dispatcher.stop_service(name, timeout)

    def service_contexts(self) -> dict[str, ServiceContext]:
        """The ``ServiceContext`` of every service started so far: queue, pending requests,
        the task serving it and its most recent requests (``recent``)."""
        return self._dispatcher.contexts()

    def service_statistics(self) -> list[ServiceStatistics]:
        """Every registered service's statistics (``statistics().services`` without the
        jobs)."""
        return self._dispatcher.statistics()

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, autostop: bool | None = None) -> Job:
        """Run the pipeline.

        With ``autostop=True`` (sage_nb's default) wait until the job ends: every record of a
        finite source reached every sink (an endless source runs until stopped or
        interrupted). Then clean up and return the ``Job``; raise the operator's error if it
        failed. With ``autostop=False`` (SAGE's default, in ``sage_nb.compat``) return the
        running ``Job`` at once; a finite job still finishes by itself when drained, even if
        the script ends first (the interpreter waits for it at exit).

        Ctrl-C while the job starts or runs stops it, then raises ``KeyboardInterrupt``
        (within 0.1 s: it is noted, then raised between short waits; see ``Interrupts``).
        """
        if autostop is None:
            autostop = self.semantics.blocking_submit
        with Interrupts() as interrupts:
            try:
                job = self.start_job()  # an interrupt meanwhile only counts: see check()
            except BaseException:
                if autostop and not self.keep_services:
                    self._dispatcher.stop_services()  # some may have started before the failure
                raise
            try:
                interrupts.check()
                if not autostop:
                    return job
                wait_for_job(job, interrupts)
            except KeyboardInterrupt:  # stop cleanly, then let it propagate
                stop_interrupted(job, interrupts)
                raise
            except BaseException:
                job.stop(timeout=2.0)
                raise
            finally:
                if job.done and autostop and not self.keep_services:
                    self._dispatcher.stop_services()
        job.raise_for_error()
        return job

    def start_job(self) -> Job:
        """Compile the pipeline, deploy the services and start a job; do not wait."""
        if self._closed:
            raise RuntimeError(f"environment {self.name!r} is closed; create a new one")
        self._dispatcher.start_all()
        job = self._job_manager.create_job(
            self.pipeline,
            services=self._dispatcher.contexts(),
            proxy_factory=self._operator_proxy,
            channel_capacity=self.channel_capacity,
            max_batch=self.max_batch,
            create_task=self._backend.create_operator_task,
            on_done=lambda _job: self._dispatcher.activity.fire(),
            record_at_a_time=self.semantics.record_at_a_time,
        )
        job.environment = self
        job.start()
        self._dispatcher.activity.fire()
        return job

    def _operator_proxy(self, node: Any, job: Job) -> ProxyManager:
        return self._dispatcher.proxy(
            owner=node.label,
            cancelled=lambda: job.stopping,
            stop_event=job.stop_event,
            on_resolve=node.calls.add,
        )

    @property
    def jobs(self) -> list[Job]:
        """Every job submitted from this environment, oldest first."""
        return list(self._job_manager.jobs)

    def finish_finite_jobs(self, *, notice_after: float = 1.0) -> None:
        """Wait for the running jobs whose sources are all finite (what the interpreter does
        at exit); endless ones are left to ``close()``. Ctrl-C stops the job waited for. Says
        on stderr what it waits for once that takes longer than ``notice_after`` seconds."""
        for job in self.running_jobs():
            if not job.finite:
                continue
            with Interrupts() as interrupts:
                told = [False]

                def tell(job: Job = job, told: list[bool] = told) -> None:
                    if not told[0] and job.elapsed() > notice_after:
                        told[0] = True
                        _, total = job.progress()
                        done = job.records_read()
                        of = f" of {total:,}" if total is not None else ""
                        print(
                            f"sage_nb: waiting for job {job.name!r} to finish ({done:,}{of} "
                            f"records read); Ctrl-C stops it",
                            file=sys.stderr,
                        )

                try:
                    wait_for_job(job, interrupts, tick=tell)
                except KeyboardInterrupt:
                    stop_interrupted(job, interrupts)

    def running_jobs(self) -> list[Job]:
        """The jobs that are running now (at most one: an environment runs a job at a time)."""
        return self._job_manager.running()

    # -- lifecycle -------------------------------------------------------------------------
    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop running jobs and services; the environment stays usable (services restart
        on their next call). True if everything stopped within ``timeout``."""
        ok = self._job_manager.stop_all(timeout)
        ok = self._dispatcher.stop_services(timeout) and ok
        self._backend.stop()
        return ok

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop everything for good: jobs, services (their ``close()`` runs), threads."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        ok = self._job_manager.stop_all(timeout)
        ok = self._dispatcher.close(timeout) and ok
        self._backend.close()
        _open_environments.discard(self)
        self._dispatcher.activity.fire()  # observers (live views) see the end
        return ok

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran: the environment cannot be used again."""
        return self._closed

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_console_log_level(self, level: str | int) -> None:
        """Show sage_nb's log records at ``level`` and above on the console (stderr): the
        runtime's and those of functions' and services' ``self.logger``. ``level`` is a name
        ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") or a ``logging`` number."""
        set_console_level(level)

    # -- observation -----------------------------------------------------------------------
    def statistics(self) -> EnvironmentStatistics:
        """Plain data: every service's and job's statistics."""
        return EnvironmentStatistics(
            name=self.name,
            closed=self._closed,
            services=tuple(self._dispatcher.statistics()),
            jobs=tuple(j.statistics() for j in self._job_manager.jobs),
        )

    def health(self, timeout: float = 1.0) -> dict[str, HealthReport]:
        """Check every registered service: "healthy", "degraded", "down" or "stopped".

        The runtime's own view (worker threads alive, no request stuck for more than 5 s) is
        combined with the service's ``health()`` method if it has one: it runs on the service's
        worker like a request, and returning a false value, raising or not answering within
        ``timeout`` makes the service "degraded".
        """
        return self._dispatcher.health(timeout)

    @property
    def activity(self) -> ActivitySignal:
        """Fired when a call or a job starts while an observer waits for activity."""
        return self._dispatcher.activity

    def graph(self) -> Any:
        """A live view of the execution graph of the latest job (or of the pipeline built so
        far): a widget in a notebook, a static SVG elsewhere. Needs ``sage_nb[notebook]``
        (the notebook layer registers the view: see ``runtime/views.py``)."""
        return make_view("graph", self)

    def threads(self) -> list[threading.Thread]:
        """Threads this environment owns that are alive now."""
        found = self._dispatcher.threads()
        for job in self._job_manager.jobs:
            found += [t.thread for t in job.tasks if t.thread.is_alive()]
        return found

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.services)} services"
        running = len(self._job_manager.running())
        jobs = f", {running} running job{'s' if running != 1 else ''}" if running else ""
        return f"<{type(self).__name__} {self.name!r} ({self.backend}): {state}{jobs}>"


class LocalEnvironment(BaseEnvironment):
    """Runs services and operators on daemon threads of this process."""
