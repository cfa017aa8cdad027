"""``RayBackend``: the backend interface (``runtime/backend.py``) on Ray.

Services run as Ray actors (``RayServiceTask``); parallel regions of operators run as actors
fed by driver threads (``operator_task.py``); sources, sinks and regions of parallelism 1 stay
on threads of this process. Stopping or closing the environment kills every actor it created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...runtime.backend import Backend
from .operator_task import create_operator_task
from .options import RayServiceOptions
from .service_task import RayServiceTask

if TYPE_CHECKING:
    from ...core.calls import ServiceCaller
    from ...runtime.graph import Region
    from ...runtime.job_manager import Job
    from ...runtime.service.base_service_task import BaseServiceTask
    from ...runtime.service.context import ServiceContext
    from ...runtime.service.service_factory import ServiceFactory, ServiceOptions
    from ...runtime.tasks import OperatorTask
    from .cluster import RayActors

__all__ = ["RayBackend"]


class RayBackend(Backend):
    """Services and parallel operators of one environment as actors in its namespace."""

    name = "ray"

    def __init__(self, actors: RayActors) -> None:
        self.actors = actors

    def create_service_task(
        self, context: ServiceContext, factory: ServiceFactory, proxy: ServiceCaller
    ) -> BaseServiceTask:
        return RayServiceTask(context, factory, proxy, self.actors)

    def create_operator_task(
        self, job: Job, region: Region, index: int, channel_capacity: int
    ) -> OperatorTask:
        return create_operator_task(job, region, index, channel_capacity, self.actors)

    def check_options(self, options: ServiceOptions) -> None:
        RayServiceOptions(**(options.backend or {}))  # raises on a bad value

    def stop(self) -> None:
        self.actors.kill_all()

    def close(self) -> None:
        self.actors.kill_all()
