"""The backend interface: what a backend implements, and what the runtime offers it.

An environment runs on one ``Backend``. The runtime asks it for two things:

- a **service task** per service (``create_service_task``): a ``BaseServiceTask`` that takes
  requests from the service's ``ServiceContext`` and answers each one through its
  ``response_target``; it implements ``start``, ``stop``, ``swap``, ``swaps_in_place``,
  ``statistics``, ``liveness`` and ``threads``;
- an **operator task** per parallel instance of a region (``create_operator_task``): an
  ``OperatorTask`` or an object with the same interface (``channel``, ``targets``,
  ``program.out_edges``, ``thread``, ``start()``, ``abort()``), which reports to its ``Job``
  with ``job.task_failed(exc)`` and ``job.task_finished(task)``.

It also checks the backend-specific part of a service's ``ServiceOptions``
(``check_options``), and releases what it holds when the environment stops or closes (``stop``,
``close``: a Ray backend kills its actors there).

What the runtime offers a backend are its public names, documented in ``docs/architecture.md``:
``ServiceContext``, ``BaseServiceTask``, ``ServiceFactory``, ``ServiceOptions``,
``ServiceVersion``, ``ServiceStatistics`` and the request/response messages
(``runtime/messages.py``); ``OperatorTask``, ``OperatorContext``, ``ChainProgram``,
``Channel``, the graph's ``Region``; ``SyncWaiter``, ``ServiceFuture``/``AwaitableFuture``,
``DeadlineScheduler``, ``RetryPolicy``; ``make_thread`` and ``LoopThread``. Backends import
only this module and public runtime names; a test (``tests/project/test_layers.py``) holds
them to it.

``ThreadBackend``, the default, runs every service and operator on daemon threads of this
process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .service.local_service_task import LocalServiceTask
from .tasks import OperatorTask

if TYPE_CHECKING:
    from ..core.calls import ServiceCaller
    from .graph import Region
    from .job_manager import Job
    from .service.base_service_task import BaseServiceTask
    from .service.context import ServiceContext
    from .service.service_factory import ServiceFactory, ServiceOptions

__all__ = ["Backend", "ThreadBackend"]


class Backend:
    """What a backend implements. The base class runs everything on threads.

    ``name`` is what ``env.backend`` and the displays show.
    """

    name = "threads"

    def create_service_task(
        self, context: ServiceContext, factory: ServiceFactory, proxy: ServiceCaller
    ) -> BaseServiceTask:
        """A task to serve ``context``'s requests with ``factory``'s service; not started.

        ``proxy`` is what the service calls other services through.
        """
        return LocalServiceTask(context, factory, proxy)

    def create_operator_task(
        self, job: Job, region: Region, index: int, channel_capacity: int
    ) -> OperatorTask:
        """The task of parallel instance ``index`` of ``region``; not started."""
        return OperatorTask(job, region, index, channel_capacity)

    def check_options(self, options: ServiceOptions) -> None:
        """Raise ``TypeError`` or ``ValueError`` if this backend cannot serve ``options``."""
        if options.backend:
            names = ", ".join(sorted(options.backend))
            raise TypeError(
                f"{names}: options of another backend; this environment runs services on "
                f"threads (RemoteEnvironment runs them as Ray actors)"
            )

    def stop(self) -> None:
        """The environment stopped its jobs and services: release what they left."""

    def close(self) -> None:
        """The environment closed: release everything, for good."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class ThreadBackend(Backend):
    """Services and operators on daemon threads of this process (``LocalEnvironment``)."""
