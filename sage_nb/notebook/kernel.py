"""The kernel-resident environment and the hooks that keep a kernel clean.

``%load_ext sage_nb`` creates one ``KernelRuntime``: it owns ``sage_env`` (a
``LocalEnvironment`` whose services outlive jobs, so cells can keep calling them) and closes it
when the kernel shuts down or restarts, on ``%unload_ext sage_nb`` and at interpreter exit.

Shutdown: ipykernel's shutdown handler sets the shell's ``exit_now`` trait (on the control
thread, milliseconds after the request); IPython 9 has no shutdown hook. Observing that trait
lets every service's ``close()`` run and every thread stop well before the kernel manager's
SIGTERM (2.5 s after the request). ``atexit`` (see ``api/environment.py``) is the fallback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..api.environment import BaseEnvironment, LocalEnvironment

__all__ = ["KernelRuntime", "current", "get_env"]

log = logging.getLogger(__name__)

#: Seconds that closing may take at kernel shutdown: well under the kernel manager's 2.5 s.
SHUTDOWN_TIMEOUT = 1.5

_runtime: KernelRuntime | None = None


def current() -> KernelRuntime | None:
    """The runtime of ``%load_ext sage_nb`` in this kernel, or None."""
    return _runtime


def get_env() -> BaseEnvironment:
    """The kernel-resident environment (``sage_env``), for code outside cells."""
    if _runtime is None:
        raise RuntimeError("sage_nb is not loaded in this kernel; run %load_ext sage_nb first")
    return _runtime.env


def make_environment(
    backend: str = "local", name: str = "sage_env", address: str | None = None
) -> BaseEnvironment:
    """A new kernel-resident environment: threads (``local``) or Ray actors (``ray``, joining
    the cluster at ``address``, or starting a local one)."""
    if backend in ("local", "threads"):
        # Services run each request in the caller's context, so what a service prints lands
        # under the cell (or the job's submitting cell) that called it.
        return LocalEnvironment(name, keep_services=True, propagate_context=True)
    if backend == "ray":
        # Imported here: the Ray backend (and ray) load only when a user asks for them.
        from ..backends.ray import RemoteEnvironment

        return RemoteEnvironment(name, address=address)
    raise ValueError(f"unknown backend {backend!r}; choose local or ray")


class KernelRuntime:
    """Everything ``%load_ext sage_nb`` started in one kernel."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.env = make_environment()
        self.backend = "local"
        self.address: str | None = None
        shell.user_ns["sage_env"] = self.env
        self._observing = False
        if hasattr(shell, "observe"):
            shell.observe(self._on_exit_now, names="exit_now")
            self._observing = True

    def replace_env(
        self, backend: str = "local", name: str = "sage_env", address: str | None = None
    ) -> BaseEnvironment:
        """Close ``sage_env`` and put a new one (maybe another backend) in its place; the old
        one stays if the new one cannot be made."""
        new = make_environment(backend, name, address)
        old, self.env, self.backend, self.address = self.env, new, backend, address
        _release_views(old)
        old.close(timeout=5.0)
        self.shell.user_ns["sage_env"] = new
        return new

    def unload(self) -> None:
        """Stop everything this runtime started and remove ``sage_env``."""
        global _runtime
        if self._observing:
            try:
                self.shell.unobserve(self._on_exit_now, names="exit_now")
            except ValueError:
                pass
            self._observing = False
        _stop_publisher(timeout=2.0)
        self.env.close(timeout=5.0)
        if self.shell.user_ns.get("sage_env") is self.env:
            del self.shell.user_ns["sage_env"]
        if _runtime is self:
            _runtime = None

    def _on_exit_now(self, change: dict[str, Any]) -> None:
        if change.get("new"):
            log.debug("kernel shutting down: closing %s", self.env.name)
            _stop_publisher(timeout=0.5)
            self.env.close(timeout=SHUTDOWN_TIMEOUT)
            _disconnect_ray()


# Live views close before their environment does, here in the thread that runs the cell: a
# view the publisher thread closed (on seeing the environment closed) would send its final
# static state with the header of the cell that started the publisher, and a client that
# keeps only the current cell's messages (nbclient) would drop it. The publisher module is
# loaded by the first live view shown: before that, no thread to stop.
_PUBLISHER = "sage_nb.notebook.widgets.publisher"


def _release_views(env: BaseEnvironment) -> None:
    """Close the live views of an environment; end the publisher if none is left."""
    publisher = sys.modules.get(_PUBLISHER)
    if publisher is not None:
        publisher.release(env, timeout=2.0)


def _disconnect_ray() -> None:
    """At kernel shutdown, end the Ray connection sage_nb made (if the Ray backend was used at
    all): it takes about a second here, and several at interpreter exit."""
    cluster = sys.modules.get("sage_nb.backends.ray.cluster")
    if cluster is not None:
        try:
            cluster.disconnect()
        except Exception as exc:  # shutting down anyway
            log.debug("disconnecting from Ray: %s", exc)


def _stop_publisher(timeout: float) -> None:
    """Close every live view (they keep their last state) and end the publisher thread."""
    publisher = sys.modules.get(_PUBLISHER)
    if publisher is not None:
        publisher.shutdown(timeout)


def load(shell: Any) -> KernelRuntime:
    """Create the runtime (once per kernel) and register the magics."""
    global _runtime
    if _runtime is not None and _runtime.shell is shell:
        return _runtime
    from .magics import SageMagics

    _runtime = KernelRuntime(shell)
    shell.register_magics(SageMagics(shell, _runtime))
    return _runtime


def unload(shell: Any) -> None:
    from .magics import SageMagics

    runtime = _runtime
    if runtime is not None:
        runtime.unload()
    manager = shell.magics_manager
    for kind in ("line", "cell"):
        for name in SageMagics.magics[kind]:
            manager.magics[kind].pop(name, None)
    # The registry holds the magics instance, and through it the closed environment.
    if isinstance(manager.registry.get(SageMagics.__name__), SageMagics):
        del manager.registry[SageMagics.__name__]
