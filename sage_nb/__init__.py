"""sage_nb: SAGE-style "Pipeline as Service" for Jupyter.

Import what you write against from here::

    from sage_nb import LocalEnvironment, MapFunction

``import sage_nb`` imports neither IPython, ipywidgets nor ray; ``%load_ext sage_nb`` loads the
notebook layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .api.environment import BaseEnvironment, EnvironmentStatistics, LocalEnvironment
from .core.functions import (
    BaseFunction,
    BatchFunction,
    CoMapFunction,
    FilterFunction,
    FlatMapFunction,
    JoinFunction,
    KeyByFunction,
    MapFunction,
    SinkFunction,
    SourceFunction,
    StopSignal,
)
from .core.services import BaseService
from .core.version import __version__
from .errors import (
    JobCancelledError,
    OperatorError,
    SageError,
    ServiceCallError,
    ServiceExistsError,
    ServiceNotFoundError,
    ServiceOverloadedError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)
from .runtime.dead_letters import DeadLetter
from .runtime.job_manager import Job
from .runtime.retry import RetryPolicy
from .runtime.service.base_service_task import HealthReport
from .runtime.service.service_manager import ServiceFuture

if TYPE_CHECKING:
    from .backends.ray import RemoteEnvironment


__all__ = [
    "BaseEnvironment",
    "BaseFunction",
    "BaseService",
    "BatchFunction",
    "CoMapFunction",
    "DeadLetter",
    "EnvironmentStatistics",
    "FilterFunction",
    "FlatMapFunction",
    "HealthReport",
    "Job",
    "JobCancelledError",
    "JoinFunction",
    "KeyByFunction",
    "LocalEnvironment",
    "MapFunction",
    "OperatorError",
    "RemoteEnvironment",
    "RetryPolicy",
    "SageError",
    "ServiceCallError",
    "ServiceExistsError",
    "ServiceFuture",
    "ServiceNotFoundError",
    "ServiceOverloadedError",
    "ServiceTimeoutError",
    "ServiceUnavailableError",
    "SinkFunction",
    "SourceFunction",
    "StopSignal",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # RemoteEnvironment loads on first use, so ``import sage_nb`` never imports the Ray backend
    # (and creating one is what imports ray itself).
    if name == "RemoteEnvironment":
        from .backends.ray import RemoteEnvironment

        return RemoteEnvironment
    raise AttributeError(f"module 'sage_nb' has no attribute {name!r}")


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext sage_nb``: create ``sage_env`` and register the magics."""
    from .notebook.kernel import load

    runtime = load(ipython)
    print(
        f"sage_nb {__version__}: sage_env ready ({runtime.env.backend} backend); "
        f"%sage_nb for help, %sage_status for state"
    )


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext sage_nb``: stop everything sage_nb started and remove ``sage_env``."""
    from .notebook.kernel import unload

    unload(ipython)
