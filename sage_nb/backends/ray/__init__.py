"""The Ray backend: ``RemoteEnvironment`` runs services and parallel operators as Ray actors.

Importing this package does not import ray; creating a ``RemoteEnvironment`` does (and fails
with the install command, ``pip install "sage_nb[ray]"``, when ray is missing).

Layout: ``environment.py`` (``RemoteEnvironment``), ``backend.py`` (``RayBackend``, the
backend interface of ``runtime/backend.py``), ``cluster.py`` (connecting, the actors an
environment owns), ``service_task.py`` (the driver's side of a service) and
``service_actor.py`` (the actor), ``operator_task.py`` / ``operator_actor.py`` (parallel
regions), ``actor_proxy.py`` (service calls made inside actors), ``wire.py`` (what crosses),
``region.py``, ``partition.py``, ``options.py``, ``errors.py``.
"""

from __future__ import annotations

from .backend import RayBackend
from .environment import RemoteEnvironment
from .errors import RayConnectionError, ServiceSerializationError
from .options import RayServiceOptions
from .service_task import RayServiceTask

__all__ = [
    "RayBackend",
    "RayConnectionError",
    "RayServiceOptions",
    "RayServiceTask",
    "RemoteEnvironment",
    "ServiceSerializationError",
]
