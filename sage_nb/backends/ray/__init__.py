"""The Ray backend: ``RemoteEnvironment`` runs services and parallel operators as Ray actors.

Importing this package does not import ray; creating a ``RemoteEnvironment`` does (and fails
with the install command, ``pip install "sage_nb[ray]"``, when ray is missing).

Layout: ``environment.py`` (``RemoteEnvironment``), ``backend.py`` (``RayBackend``, the
backend interface of ``runtime/backend.py``), ``cluster.py`` (connecting, the actors an
environment owns); the driver's side of a service: ``service_task.py`` (its lifecycle and
statistics), ``forwarding.py`` (sending requests to the actors), ``replies.py`` (answers
counted and delivered), ``replicas.py`` (the actors' health); ``service_actor.py`` (the
actor), ``operator_task.py`` / ``operator_actor.py`` (parallel regions), ``actor_proxy.py``
(service calls made inside actors), ``wire.py`` (what crosses), ``region.py``,
``partition.py``, ``options.py``, ``errors.py``, and ``ray_compat.py`` (the one place that
uses Ray's private API, with a public fallback).
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
