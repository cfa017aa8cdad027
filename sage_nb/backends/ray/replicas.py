"""The actors that serve one service on Ray, as the driver sees them, and their health.

``Replica`` is one actor: its handle, the process id and version number it last answered
with, and the batches in flight to it. ``Replicas`` holds a ``RayServiceTask``'s replicas and
keeps that view true:

- an answer from a new process id means Ray restarted the actor (``restarts`` counts it);
- an answer from an older version means Ray restarted it with its original arguments:
  ``reswap`` sends it the version the service serves now;
- a replica that failed a call with an actor error is probed (``check``) with a call Ray
  retries until the actor is back or dead for good; it takes no new calls until the probe
  answers, and once every replica is gone the service is down.

::

    Forwarder (holding its send lock) ──check / reswap──▶ replica.handle.ready / swap.remote()
    Ray's callback thread ◀── ray_compat.on_completed ──┘
       check: answer(alive, pid) ──▶ request_queue ──▶ Forwarder ──▶ Replicas.checked
       reswap: a failure is logged

Everything here is written by whoever holds the forwarder's send lock (``forwarding.py``), so
nothing takes a lock of its own; Ray's callback thread only hands answers to the forwarder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .ray_compat import on_completed

if TYPE_CHECKING:
    from ...runtime.service.service_factory import ServiceFactory

__all__ = ["Replica", "Replicas"]

log = logging.getLogger(__name__)


class Replica:
    """One actor of the service and the driver's view of it."""

    __slots__ = ("checking", "dead", "handle", "in_flight", "name", "pid", "version")

    def __init__(self, name: str, handle: Any, pid: int, version: int) -> None:
        self.name = name
        self.handle = handle
        self.pid = pid
        self.version = version
        self.in_flight = 0  # Ray calls (batches) sent and not answered
        self.dead = False
        self.checking = False


class Replicas:
    """The replicas of one service (see the module docstring); ``members`` is filled when
    the service starts."""

    def __init__(self, service: str, max_restarts: int) -> None:
        self.service = service
        self.max_restarts = max_restarts
        self.members: list[Replica] = []
        self.restarts = 0

    def answered(self, replica: Replica, pid: int) -> None:
        """``replica`` answered from process ``pid``: a new one means Ray restarted it."""
        if pid != replica.pid:
            self.restarts += 1
            replica.pid = pid

    def reswap(self, replica: Replica, number: int, factory: ServiceFactory) -> None:
        """Send version ``number`` (``factory``) to a replica that answered with an older
        one: Ray restarted it with its original arguments."""
        if replica.version >= number:
            return
        replica.version = number  # once per restart; a failure is logged below
        try:
            ref = replica.handle.swap.options(max_task_retries=-1).remote(factory, number)
        except Exception as exc:
            log.warning("service %r: could not update %s: %s", self.service, replica.name, exc)
            return

        def done(data: Any, ref: Any = ref) -> None:
            if isinstance(data, BaseException):
                log.warning("service %r: updating %s failed: %s", self.service, replica.name, data)

        on_completed(ref, done)

    def check(self, replica: Replica, answer: Callable[[bool, int, int], None]) -> bool:
        """Probe ``replica``, which failed a call with an actor error: Ray retries the probe
        while the actor restarts, so it answers once the actor is back (or dead for good). It
        takes no calls until ``answer(alive, pid, version)`` runs, on Ray's callback thread;
        hand the answer to ``checked`` from there. False if it cannot even be asked."""
        replica.checking = True
        try:
            ref = replica.handle.ready.options(max_task_retries=-1).remote()
        except Exception as exc:
            log.debug("service %r: %s does not answer: %s", self.service, replica.name, exc)
            return False

        def done(data: Any, ref: Any = ref) -> None:
            alive = not isinstance(data, BaseException)
            answer(alive, data[0] if alive else 0, data[1] if alive else 0)

        on_completed(ref, done)
        return True

    def checked(self, replica: Replica, alive: bool, pid: int) -> str | None:
        """Take the answer to ``check``; once no replica is alive, why the service is down
        (else None)."""
        replica.checking = False
        if alive:
            self.answered(replica, pid)
            return None
        replica.dead = True
        if all(r.dead for r in self.members):
            return f"its Ray actors died and were not restarted (max_restarts={self.max_restarts})"
        return None

    # -- observation -----------------------------------------------------------------------
    def live(self) -> list[Replica]:
        """The replicas not known to be dead."""
        return [r for r in self.members if not r.dead]

    def names(self) -> list[str]:
        return [r.name for r in self.members]

    def liveness(self) -> tuple[str, str]:
        """("healthy" | "degraded" | "down", reason) of a running service."""
        dead = sum(r.dead for r in self.members)
        if dead == len(self.members):
            return "down", "no Ray actor is alive"
        if dead or any(r.checking for r in self.members):
            return "degraded", f"{dead} of {len(self.members)} Ray actors are gone"
        return "healthy", ""
