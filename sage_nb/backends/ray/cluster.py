"""The connection to Ray (one per process) and what one environment owns on it.

``connect`` imports ray on first use, with the variables that keep a local cluster private and
quiet set first, then joins the running cluster or starts a local one. A second environment, or a
re-run cell, reuses the connection (a second ``ray.init`` would fail). An unreachable address
fails within seconds with the address in the message.

``RayActors`` belongs to one environment: its namespace (actors of different environments
never collide), the actors it created (``close`` kills each of them explicitly) and the
defaults its actors need.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .errors import INSTALL_HINT, RayConnectionError
from .options import ActorConfig, ServiceEntry

__all__ = ["RayActors", "connect", "disconnect", "import_ray"]

log = logging.getLogger(__name__)

#: Set (unless already set) before ``import ray``: no usage reporting.
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}
#: Also set when sage_nb starts a local cluster: every listener on 127.0.0.1.
LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

_connect_lock = threading.Lock()
#: True while this process is connected to Ray by ``connect`` (not by the user's own
#: ``ray.init``): ``disconnect`` then ends the connection, and the local cluster it started.
_connected_here = False


def import_ray(*, local: bool = False) -> Any:
    """``import ray``, or an ``ImportError`` that says how to install it."""
    for key, value in {**QUIET_ENV, **(LOCAL_ENV if local else {})}.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"the Ray backend needs the ray package, which cannot be imported ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    return ray


def connect(
    address: str | None = None, *, connect_timeout: float = 5.0, **init_options: Any
) -> Any:
    """Connect this process to Ray once and return the ``ray`` module.

    ``address=None`` starts a local cluster (no dashboard unless asked for), ``"auto"`` joins
    the cluster running on this machine, ``"host:port"`` or ``"ray://host:port"`` a remote
    one. When this process is already connected, the connection is reused and
    ``init_options`` are ignored (with a warning).
    """
    ray = import_ray(local=address is None)
    with _connect_lock:
        if ray.is_initialized():
            if init_options or address not in (None, "auto"):
                warnings.warn(
                    "this process is already connected to Ray; reusing that connection and "
                    f"ignoring address={address!r} and {sorted(init_options)} "
                    "(ray.shutdown() first to connect elsewhere)",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return ray
        if address not in (None, "auto", "local"):
            _check_reachable(address, connect_timeout)
        options = dict(init_options)
        if address is None:
            options.setdefault("include_dashboard", False)
        global _connected_here
        try:
            ray.init(address=address, **options)
            _connected_here = True
        except (ConnectionError, TimeoutError) as exc:
            raise RayConnectionError(_unreachable(address, exc)) from exc
        except Exception as exc:
            if address is None:
                raise RayConnectionError(
                    f"could not start a local Ray cluster: {type(exc).__name__}: {exc}"
                ) from exc
            raise RayConnectionError(_unreachable(address, exc)) from exc
    return ray


def disconnect() -> bool:
    """End the connection ``connect`` made (stopping the local cluster it started), so a
    kernel exits promptly: Ray's own exit handler, run that late in a kernel, takes seconds
    longer than the kernel manager waits. Returns False if there was none to end."""
    global _connected_here
    with _connect_lock:
        if not _connected_here:
            return False
        _connected_here = False
        import ray

        if ray.is_initialized():
            ray.shutdown()
    return True


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast (``timeout`` seconds) when nothing listens at ``address``."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        return  # let Ray interpret it
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise RayConnectionError(_unreachable(address, exc)) from exc


def _unreachable(address: str | None, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"cannot reach a Ray cluster at address={address!r} ({type(exc).__name__}: {first}); "
        f"start one with `ray start --head`, check the address, or pass address=None to start "
        f"a local cluster"
    )


class RayActors:
    """What one environment has on Ray: a namespace, its actors and their shared defaults."""

    def __init__(
        self, ray: Any, *, sync_timeout: float, async_timeout: float, start_timeout: float
    ) -> None:
        self.ray = ray
        self.environment = ""
        self.namespace = ""
        self.sync_timeout = sync_timeout
        self.async_timeout = async_timeout
        self.start_timeout = start_timeout
        self._directory: Callable[[], dict[str, ServiceEntry]] = dict
        # Invariants: _actors holds every actor handle created and not yet killed, under _lock.
        self._lock = threading.Lock()
        self._actors: dict[str, Any] = {}

    def bind(self, environment: str, directory: Callable[[], dict[str, ServiceEntry]]) -> None:
        """Name the environment (its namespace is unique to it) and how to list its services
        for the actors it creates."""
        self.environment = environment
        self.namespace = f"sage_nb.{environment}.{uuid.uuid4().hex[:8]}"
        self._directory = directory

    def config(self) -> ActorConfig:
        directory = self._directory()
        return ActorConfig(
            environment=self.environment,
            namespace=self.namespace,
            sync_timeout=self.sync_timeout,
            async_timeout=self.async_timeout,
            directory=directory,
        )

    def create(self, actor_class: Any, name: str, options: dict[str, Any], *args: Any) -> Any:
        """Create a named actor in this environment's namespace and remember it."""
        handle = actor_class.options(name=name, namespace=self.namespace, **options).remote(*args)
        with self._lock:
            self._actors[name] = handle
        return handle

    def kill(self, name: str, handle: Any) -> None:
        """Kill an actor this environment created (no restart); safe if it is already dead."""
        with self._lock:
            if self._actors.get(name) is handle:
                del self._actors[name]
        if not self.ray.is_initialized():
            return  # Ray shut down first (at exit): its actors died with the connection
        try:
            self.ray.kill(handle, no_restart=True)
        except Exception as exc:  # already gone
            log.debug("killing actor %s: %s", name, exc)

    def kill_all(self) -> int:
        """Kill every actor still alive in this environment's namespace; return how many."""
        with self._lock:
            left = list(self._actors.items())
        for name, handle in left:
            self.kill(name, handle)
        if not self.ray.is_initialized():
            return len(left)
        try:  # also whatever a crashed start left behind under our names
            named = self.ray.util.list_named_actors(all_namespaces=True)
        except Exception as exc:
            log.warning("could not list %s's actors to kill leftovers: %s", self.namespace, exc)
            named = []
        killed = {name for name, _ in left}
        for entry in named:
            if entry.get("namespace") == self.namespace and entry["name"] not in killed:
                try:
                    self.ray.kill(
                        self.ray.get_actor(entry["name"], namespace=self.namespace),
                        no_restart=True,
                    )
                    left.append((entry["name"], None))
                except Exception as exc:
                    log.debug("killing actor %s: %s", entry["name"], exc)
        return len(left)

    def alive(self) -> list[str]:
        """Names of this environment's actors that Ray still lists as alive."""
        if not self.ray.is_initialized():
            return []
        named = self.ray.util.list_named_actors(all_namespaces=True)
        return sorted(e["name"] for e in named if e.get("namespace") == self.namespace)
