"""``RemoteEnvironment``: the same environment API, with services and parallel operators on Ray.

Examples
--------
A local Ray cluster starts on first use (a few seconds); later environments reuse it::

    from sage_nb import RemoteEnvironment

    with RemoteEnvironment("demo") as env:
        env.register_service("double", lambda x: 2 * x, num_replicas=2)
        env.call_service("double", 21)                      # 42, computed in a Ray actor
        out = []
        env.from_batch(range(10)).map(Enrich, parallelism=4).sink(out.append)
        env.submit()                                        # map runs in 4 actors
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

from ...api.environment import BaseEnvironment
from ...runtime.dead_letters import DEFAULT_KEEP_DEAD_LETTERS
from ...runtime.job_manager import DEFAULT_KEEP_JOBS
from ...runtime.proxy import DEFAULT_ASYNC_TIMEOUT, DEFAULT_SYNC_TIMEOUT
from ...runtime.retry import RetryPolicy
from ...runtime.service.service_factory import ServiceOptions
from .backend import RayBackend
from .cluster import RayActors, connect
from .options import RayServiceOptions, ServiceEntry

__all__ = ["RemoteEnvironment"]


_remote_environments: weakref.WeakSet[RemoteEnvironment] = weakref.WeakSet()
_atexit_registered = False
_atexit_lock = threading.Lock()


def _close_at_exit() -> None:
    # Registered after ray.init, so it runs before Ray's own exit handler shuts the connection
    # down: every service's close() still runs in its actor.
    for env in list(_remote_environments):
        env.close(timeout=2.0)


class RemoteEnvironment(BaseEnvironment):
    """An environment whose services run as Ray actors, and whose operators with
    ``parallelism > 1`` run as Ray actors too (sources and sinks stay on threads here).

    Parameters
    ----------
    name:
        Shown in thread names, actor namespaces, errors and displays.
    address:
        ``None`` starts a local Ray cluster (or reuses this process's connection); ``"auto"``
        joins the cluster running on this machine; ``"host:port"`` or ``"ray://host:port"``
        a remote one. An address where nothing answers fails within ``connect_timeout``
        seconds with ``RayConnectionError``.
    keep_services:
        Default True here (False for ``LocalEnvironment``): starting an actor takes a second or
        more, so services stay up between jobs until ``stop()`` or ``close()``.
    start_timeout:
        Seconds a service's actors may take to start (``setup()`` included).
    **ray_init_options:
        Passed to ``ray.init`` when this call connects (``num_cpus``, ``runtime_env``,
        ``_temp_dir``, ...); ignored, with a warning, when the process is already connected.

    Everything else is as in ``LocalEnvironment``. ``close()`` (also ``%sage_reset``,
    unloading the extension, kernel shutdown and interpreter exit) kills every actor this
    environment created; the cluster itself stays up for the next environment.
    """

    def __init__(
        self,
        name: str | None = None,
        address: str | None = None,
        *,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
        async_timeout: float = DEFAULT_ASYNC_TIMEOUT,
        keep_services: bool = True,
        max_batch: int = 1024,
        channel_capacity: int = 32,
        start_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        keep_jobs: int | None = DEFAULT_KEEP_JOBS,
        keep_dead_letters: int | None = DEFAULT_KEEP_DEAD_LETTERS,
        **ray_init_options: Any,
    ) -> None:
        ray = connect(address, connect_timeout=connect_timeout, **ray_init_options)
        _register_exit_handler()
        self._actors = RayActors(
            ray,
            sync_timeout=sync_timeout,
            async_timeout=async_timeout,
            start_timeout=start_timeout,
        )
        super().__init__(
            name,
            sync_timeout=sync_timeout,
            async_timeout=async_timeout,
            keep_services=keep_services,
            max_batch=max_batch,
            channel_capacity=channel_capacity,
            keep_jobs=keep_jobs,
            keep_dead_letters=keep_dead_letters,
            backend=RayBackend(self._actors),
        )
        self._actors.bind(self.name, self._directory)
        _remote_environments.add(self)

    # -- services --------------------------------------------------------------------------
    def register_service(  # type: ignore[override]
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
        num_replicas: int = 1,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        max_task_retries: int = 0,
        max_concurrency: int | None = None,
        **ctor_kwargs: Any,
    ) -> Any:
        """Register a service that runs as Ray actors; as ``LocalEnvironment.register_service``
        (same forms and options), plus Ray options.

        ``num_replicas`` actors serve the name, each request going to the least busy one;
        each actor runs ``max_concurrency`` requests at once (default ``concurrency``);
        ``num_cpus`` / ``num_gpus`` are Ray resource requests. A crashed actor is restarted up
        to ``max_restarts`` times. Calls it was running fail with ``ServiceUnavailableError``,
        which the service's ``retries`` policy retries; ``max_task_retries`` makes Ray retry
        them itself (-1: as often as needed). Retried calls may run twice: use either for
        idempotent methods only. ``replace=True`` swaps a new version into the running actors;
        if it changes how they run (replicas, resources, concurrency, restarts), the service
        restarts instead, once the calls already queued are answered.
        """
        ray_options = RayServiceOptions(
            num_replicas=num_replicas,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_task_retries=max_task_retries,
            max_concurrency=max_concurrency,
        )
        options = ServiceOptions(
            concurrency=concurrency,
            max_queued=max_queued,
            overflow=overflow,
            retry=RetryPolicy.coerce(retries),
            max_restarts=max_restarts,
            backend=ray_options.as_dict(),
        )
        return self.add_service(
            name, service_class, ctor_args, ctor_kwargs, options=options, replace=replace
        )

    def _directory(self) -> dict[str, ServiceEntry]:
        """What actors know about this environment's services when they are created."""
        directory = {}
        for name in self.services:
            try:
                factory = self.service_factory(name)
            except LookupError:
                continue
            options = RayServiceOptions.from_factory(factory.options.backend)
            directory[name] = ServiceEntry(options.num_replicas, factory.options.retry)
        return directory

    # -- lifecycle -------------------------------------------------------------------------
    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop everything for good and kill every actor this environment created (the
        cluster stays up for the next environment)."""
        ok = super().close(timeout)
        _remote_environments.discard(self)
        return ok

    # -- observation -----------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        """The Ray namespace of this environment's actors (unique per environment)."""
        return self._actors.namespace

    def actors(self) -> list[str]:
        """Names of this environment's actors that Ray lists as alive: ``"<service>#<i>"`` for
        service replicas, ``"task.<job>.<region>#<i>"`` for operator instances."""
        return self._actors.alive()


def _register_exit_handler() -> None:
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            atexit.register(_close_at_exit)
            _atexit_registered = True
