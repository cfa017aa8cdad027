"""``RayServiceTask``: a service served by Ray actors, fed from the usual request queue.

::

    Dispatcher ──start / stop / swap──▶ RayServiceTask (this module: lifecycle, statistics)
                                          ├─ Replicas (replicas.py): a Replica per actor,
                                          │    restarts, checks of replicas reported dead
                                          └─ Forwarder (forwarding.py): sage_nb/service/<name>
                                               └─ Replies (replies.py): answers, counters

    callers ──submit──▶ request_queue ──▶ Forwarder ──handle.remote(frame)──▶ ServiceActor
       └──────── Forwarder.direct (an idle actor) ─────┘                  (a replica each)
    Ray's callback thread ◀── ray_compat.on_completed ◀── answers ───────────────┘
       └─ Replies: sync waiters delivered at once, the rest through the forwarder

Callers are unchanged: the same ``ServiceContext``, request ids, deadlines and response
targets as with threads; how requests travel is ``forwarding.py``'s business and how answers
come back ``replies.py``'s. This module starts the replicas (each builds the service; its
``setup()`` runs in the actor), swaps new versions into them, stops them (``close()`` in
each, then kill) and reports on them.
"""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ...errors import ServiceUnavailableError
from ...runtime.metrics import percentiles
from ...runtime.service.base_service_task import (
    BaseServiceTask,
    ServiceFactory,
    ServiceStatistics,
)
from .errors import error_summary, start_error, swap_error, translate_ray_error
from .forwarding import Forwarder
from .options import RayServiceOptions, actor_name
from .replicas import Replica, Replicas

if TYPE_CHECKING:
    from ...core.calls import ServiceCaller
    from ...runtime.service.context import ServiceContext
    from .cluster import RayActors

__all__ = ["RayServiceTask"]

log = logging.getLogger(__name__)

_actor_class: Any = None


def service_actor_class(ray: Any) -> Any:
    global _actor_class
    if _actor_class is None:
        from .service_actor import ServiceActor

        _actor_class = ray.remote(ServiceActor)
    return _actor_class


class RayServiceTask(BaseServiceTask):
    """Serves one service on ``num_replicas`` Ray actors (see the module docstring)."""

    backend = "ray"

    def __init__(
        self,
        context: ServiceContext,
        factory: ServiceFactory,
        proxy: ServiceCaller,
        actors: RayActors,
    ) -> None:
        super().__init__(context, factory, proxy)
        self._actors = actors
        self._ray = actors.ray
        self.options = RayServiceOptions.from_factory(factory.options.backend)
        self.concurrency = self.options.max_concurrency or factory.options.concurrency
        #: The version the replicas serve: set by start() and swap().
        self.version_number = 0
        # Invariants: _state changes under _lock. The replicas, the backlog and the counters
        # belong to whoever holds the forwarder's send lock, and to stop() once the forwarder
        # thread has exited. Lock order: the send lock, then _lock (mark_down); _lock is never
        # held while the send lock is taken.
        self._lock = threading.Lock()
        self._replicas = Replicas(self.name, factory.options.max_restarts)
        self._forwarder = Forwarder(self, self._replicas, self._ray)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the replicas (each builds the service; ``setup()`` runs there), wait until
        they answer, and start the forwarder."""
        ray = self._ray
        backend = self._actors
        cls = service_actor_class(ray)
        opts = self.options
        options: dict[str, Any] = {
            "max_restarts": self.factory.options.max_restarts,
            "max_task_retries": opts.max_task_retries,
            "max_concurrency": self.concurrency,
        }
        if opts.num_cpus is not None:
            options["num_cpus"] = opts.num_cpus
        if opts.num_gpus is not None:
            options["num_gpus"] = opts.num_gpus
        with self._lock:
            if self._state != "created":
                return  # stopped before it started
            self._state = "starting"
        config = backend.config()
        self.version_number = 1
        created: list[tuple[str, Any]] = []
        try:
            for i in range(opts.num_replicas):
                name = actor_name(self.name, i)
                created.append(
                    (name, backend.create(cls, name, options, self.factory, config, i, 1))
                )
            answers = ray.get([h.ready.remote() for _, h in created], timeout=backend.start_timeout)
        except BaseException as exc:
            for name, handle in created:
                backend.kill(name, handle)
            raise start_error(exc, backend.start_timeout, opts) from exc
        self._replicas.members = [
            Replica(name, handle, pid, number)
            for (name, handle), (pid, number) in zip(created, answers)
        ]
        with self._lock:
            stopped = self._state != "starting"  # stop() came while the actors started
            if not stopped:
                self._state = "running"
        if stopped:
            self._shutdown_replicas(1.0)
            return
        self._forwarder.start()
        if self.context.task is self:
            self.context.direct = self._forwarder.direct

    def stop(self, timeout: float | None = 5.0, *, drain: bool = True) -> bool:
        """Stop taking calls; with ``drain`` send what is queued and wait for the answers;
        then run ``close()`` in every replica and kill them.

        Calls still unanswered are failed with ``ServiceUnavailableError``. Returns False if
        the forwarder or a replica's ``close()`` did not finish within ``timeout``.
        """
        with self._lock:
            if self._state in ("stopping", "stopped"):
                return True
            self._state = "stopping"  # a start() in progress sees it and kills its actors
        ctx = self.context
        forwarder = self._forwarder
        # A task stopped after a newer one took the context (a down service restarted)
        # leaves the context and its queue alone.
        owns = ctx.task is self
        if owns:
            ctx.accepting = False
        if ctx.direct == forwarder.direct:
            ctx.direct = None
        forwarder.wait_for_senders()  # later ones see "stopping"
        if owns and ctx.waiting:
            ctx.notify_room(everyone=True)
        deadline = None if timeout is None else time.monotonic() + timeout

        def left(floor: float = 0.0) -> float | None:
            return None if deadline is None else max(floor, deadline - time.monotonic())

        if not drain:
            self._refusing = True
        clean = forwarder.stop(left(), drain=drain)
        self._refusing = True
        forwarder.fail_waiting(ctx.unavailable("it was stopped"), queue=owns)
        forwarder.replies.flush()
        clean = self._shutdown_replicas(left(0.1)) and clean
        with self._lock:
            self._state = "stopped"
        return clean

    def _shutdown_replicas(self, timeout: float | None) -> bool:
        ray = self._ray
        replicas = self._replicas.live()
        clean = True
        if replicas and ray.is_initialized():
            refs = {}
            for r in replicas:
                try:
                    refs[r.handle.close.remote()] = r
                except Exception as exc:
                    log.debug("close() of %s not sent: %s", r.name, exc)
            ready, pending = ray.wait(
                list(refs), num_returns=len(refs), timeout=min(2.0, timeout or 2.0)
            )
            clean = not pending
            for ref in ready:
                try:
                    error = ray.get(ref)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {error_summary(str(exc))}"
                if error:
                    log.warning("close() of service %r raised %s", self.name, error)
        for r in self._replicas.members:
            self._actors.kill(r.name, r.handle)
            r.dead = True
        return clean

    def swaps_in_place(self, factory: ServiceFactory) -> bool:
        """The running actors can take ``factory``'s version unless it changes how they run:
        replicas, resources, calls at once or restarts (then the service restarts)."""
        options = RayServiceOptions.from_factory(factory.options.backend)
        return (
            options == self.options
            and (options.max_concurrency or factory.options.concurrency) == self.concurrency
            and factory.options.max_restarts == self.factory.options.max_restarts
        )

    def swap(self, factory: ServiceFactory, timeout: float | None = None) -> None:
        """Build ``factory``'s version in every replica, then serve it (see
        ``ServiceActor.swap``); if building fails, the old version keeps serving. The
        actors keep their options (``swaps_in_place``)."""
        ray = self._ray
        with self._lock:
            if self._state != "running":
                raise ServiceUnavailableError(f"service {self.name!r} is {self._state}")
        number = self.version_number + 1
        wait = self._actors.start_timeout if timeout is None else timeout
        live = self._replicas.live()
        from ray import exceptions as rex

        for i, replica in enumerate(live):
            try:
                # Ray retries it while the actor restarts (the swap only builds and installs
                # a version: running it again is harmless).
                ref = replica.handle.swap.options(max_task_retries=-1).remote(factory, number)
                ray.get(ref, timeout=wait)
            except Exception as exc:
                if i == 0:  # nothing changed yet: the caller sees why
                    if isinstance(exc, rex.RayActorError):
                        raise translate_ray_error(exc, self.name, "swap") from exc
                    raise swap_error(exc) from exc
                log.warning("service %r: replica %s did not swap: %s", self.name, replica.name, exc)
        self.version_number = number
        self.factory = factory

    # -- what the forwarder asks ---------------------------------------------------------------
    @property
    def refusal(self) -> str | None:
        """Why requests are answered as unavailable instead of sent; None while they are sent."""
        if not self._refusing:
            return None
        return self._down_reason or "it is stopping"

    def mark_down(self, reason: str) -> bool:
        """Every replica is gone: take no more calls. False if the service was not running
        (the forwarder then has nothing to fail)."""
        return self._enter_down(self._lock, reason)

    # -- observation -----------------------------------------------------------------------
    @property
    def version(self) -> Any:
        """The current version number, and the registered target (for health checks)."""
        return SimpleNamespace(number=self.version_number, instance=self.factory.target)

    def threads(self) -> list[threading.Thread]:
        t = self._forwarder.thread
        return [t] if t is not None and t.is_alive() else []

    def actor_names(self) -> list[str]:
        return self._replicas.names()

    def outcomes(self) -> tuple[int, int, int, int, int]:
        replies = self._forwarder.replies
        restarts = self._replicas.restarts
        return replies.done, replies.failed, replies.timed_out, replies.rejected, restarts

    def finished(self) -> bool:
        replies = self._forwarder.replies
        return self._state in ("stopped", "down") and not replies.sent and not replies.outbox

    def statistics(self) -> ServiceStatistics:
        replies = self._forwarder.replies
        p50, p95, p99 = percentiles([replies.latency])
        return ServiceStatistics(
            name=self.name,
            state=self._state,
            backend=self.backend,
            workers=len(self._replicas.live()),
            version=self.version_number,
            queued=len(self.context.pending),
            in_flight=len(replies.sent),
            done=replies.done,
            failed=replies.failed,
            timed_out=self.context.timed_out + replies.timed_out,
            cancelled=self.context.cancelled,
            retries=self.context.retries,
            rejected=self.context.rejected + replies.rejected,
            restarts=self._replicas.restarts,
            p50=p50,
            p95=p95,
            p99=p99,
        )

    def liveness(self) -> tuple[str, str]:
        state = self._state
        if state == "down":
            return "down", self._down_reason
        if state in ("created", "starting"):
            return "starting", "its Ray actors are starting"
        if state != "running":
            return "stopped", state
        return self._replicas.liveness()

    def __repr__(self) -> str:
        return f"<RayServiceTask {self.name!r} {self._state} x{len(self._replicas.members)}>"
