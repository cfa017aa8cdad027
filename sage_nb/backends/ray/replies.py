"""``Replies``: the answers of a ``RayServiceTask``'s actors, counted and delivered once each.

::

    Ray's callback thread (ray_compat.on_completed of a batch) ──┐
    a sync caller that sent directly, after its ray.get (fetch) ──┴─▶ on_result
       decode and count; deliver to waiters that run no user code (a SyncWaiter, a future
       without callbacks); the rest ──Completed──▶ request_queue ──▶ forwarder: complete
       (frees the slot, delivers, counts restarts, swaps a restarted replica forward), or
       complete right there when the forwarder is idle (Forwarder.settle_if_idle)
    a failed batch: each of its calls fails (translate_ray_error); after ActorDiedError the
       replica is checked, its answer coming back as Checked; none left: the service is down

``sent`` is the ledger of requests sent to an actor and not answered yet: whoever pops a
request's id from it delivers that request's response, so each is delivered exactly once,
whichever of Ray's callback thread, the forwarder, a caller in ``fetch`` or ``stop()`` gets
there first. Requests that fail before being sent (arguments that do not pickle, a deadline
passed in the backlog) are counted and answered here too: every call counter lives here
(restarts are counted by ``Replicas``).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from ...runtime.messages import ServiceRequest, ServiceResponse
from ...runtime.metrics import LatencyWindow
from ...runtime.service.futures import AwaitableFuture
from ...runtime.service.service_manager import SyncWaiter
from .errors import translate_ray_error
from .ray_compat import on_completed
from .wire import response_from_wire, unpack_reply

if TYPE_CHECKING:
    from .forwarding import Forwarder
    from .replicas import Replica, Replicas
    from .service_task import RayServiceTask

__all__ = ["Checked", "Completed", "Replies"]

log = logging.getLogger(__name__)


class Completed:
    """A batch came back (or failed): put on the request queue for the forwarder ``owner``."""

    __slots__ = ("failure", "owner", "pid", "replica", "requests", "responses", "version")

    def __init__(
        self,
        owner: Forwarder,
        replica: Replica,
        requests: list[ServiceRequest],
        responses: list[ServiceResponse] | None,
        failure: BaseException | None,
        pid: int = 0,
        version: int = 0,
    ) -> None:
        self.owner = owner
        self.replica = replica
        self.requests = requests
        self.responses = responses
        self.failure = failure
        self.pid = pid
        self.version = version


class Checked:
    """The answer to a liveness check of a replica that reported ``ActorDiedError``."""

    __slots__ = ("alive", "owner", "pid", "replica")

    def __init__(self, owner: Forwarder, replica: Replica, alive: bool, pid: int) -> None:
        self.owner = owner
        self.replica = replica
        self.alive = alive
        self.pid = pid


def _delivers_inline(target: Any) -> bool:
    """True if delivering to ``target`` cannot run user code (safe on Ray's thread)."""
    if type(target) is SyncWaiter:
        return True
    return isinstance(target, AwaitableFuture) and not target.has_done_callbacks()


class Replies:
    """Counts and delivers the answers to ``forwarder``'s requests (see the module docstring).

    ``complete``, ``batch_failed``, ``checked``, ``fail``, ``fail_unsent`` and
    ``expire_unsent`` run under the forwarder's send lock; ``on_result`` and ``fetch`` do
    not (Ray's callback thread, a sync caller's thread).
    """

    def __init__(
        self,
        forwarder: Forwarder,
        task: RayServiceTask,
        replicas: Replicas,
        ray: Any,
    ) -> None:
        self.forwarder = forwarder
        self.task = task
        self.context = task.context
        self.name = task.name
        self.replicas = replicas
        self._ray = ray
        self._deliver = task.deliver
        self._deliver_error = task.deliver_error
        # Invariants: sent maps the id of every request sent to an actor and not yet answered
        # to the request; whoever pops an id delivers its response, so each is delivered
        # exactly once.
        self.sent: dict[int, ServiceRequest] = {}
        # Counters: done and the *_late ones are written where answers are decoded (Ray's
        # callback thread; a sync caller's own thread in fetch), the others under the
        # forwarder's send lock (calls that failed before or instead of an answer).
        self.done = 0
        self.failed = 0
        self.failed_late = 0
        self.expired = 0
        self.expired_late = 0
        self.latency = LatencyWindow()

    # -- answers ---------------------------------------------------------------------------
    def fetch(
        self, replica: Replica, request: ServiceRequest, ref: Any, timeout: float | None
    ) -> bool:
        """A sync caller's wait for a request it sent directly: ``ray.get`` in its own thread,
        then the same handling as a callback's. True if the response was delivered in time."""
        waiter = request.response_target
        assert type(waiter) is SyncWaiter
        deadline = None if timeout is None else time.monotonic() + timeout
        requests = [request]
        try:
            data = self._ray.get(ref, timeout=timeout)
        except BaseException as exc:
            from ray import exceptions as rex

            if isinstance(exc, (rex.GetTimeoutError, KeyboardInterrupt, SystemExit)):
                # The answer (or failure) still comes: settle the slot and counts then.
                on_completed(ref, partial(self.on_result, replica, requests, ref))
                if isinstance(exc, rex.GetTimeoutError):
                    return waiter.lock.acquire(False)
                raise
            data = exc
        self.on_result(replica, requests, ref, data)
        # A success was delivered above; a failure goes through the forwarder.
        left = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        return waiter.lock.acquire(True, left)

    def on_result(
        self, replica: Replica, requests: list[ServiceRequest], ref: Any, data: Any
    ) -> None:
        """Ray's callback thread: decode, count, deliver to waiters that run no user code, and
        hand the rest to the forwarder. Counting comes first, so a caller that wakes up sees
        its call in ``statistics()``."""
        forwarder = self.forwarder
        if not isinstance(data, BaseException):
            try:
                pid, version, entries = unpack_reply(data)
            except Exception as exc:  # an unreadable reply fails its calls: they never hang
                data = exc
        if isinstance(data, BaseException):
            self.context.request_queue.put(Completed(forwarder, replica, requests, None, data))
            return
        name = self.name
        responses = [
            response_from_wire(entry, name, request.method_name, request.timeout)
            for request, entry in zip(requests, entries)
        ]
        remember = self.context.recent.append
        samples = self.latency
        for request, response in zip(requests, responses):
            remember((request, response))
            if response.success:
                self.done += 1
            elif _expired(response):
                self.expired_late += 1
                continue
            else:
                self.failed_late += 1
            samples.add(response.execution_time)
        sent = self.sent
        rest = False
        for request, response in zip(requests, responses):
            target = request.response_target
            if _delivers_inline(target):
                if sent.pop(request.request_id, None) is not None:
                    target.deliver(response)  # type: ignore[union-attr]
            else:
                rest = True
        item = Completed(forwarder, replica, requests, responses, None, pid, version)
        # Nothing left for the forwarder (no user callback to run, nothing waiting for this
        # slot): settle the batch here instead of waking it.
        if not rest and forwarder.settle_if_idle(item):
            return
        self.context.request_queue.put(item)

    def complete(self, item: Completed) -> None:
        replica = item.replica
        replica.in_flight -= 1
        if item.failure is not None:
            self.batch_failed(replica, item.requests, item.failure)
            return
        assert item.responses is not None
        self.replicas.answered(replica, item.pid)  # a new pid: Ray restarted the actor
        task = self.task
        if item.version < task.version_number:  # restarted with its original version
            self.replicas.reswap(replica, task.version_number, task.factory)
        sent = self.sent
        for request, response in zip(item.requests, item.responses):
            if sent.pop(request.request_id, None) is not None:
                request.response_target.deliver(response)  # type: ignore[union-attr]

    # -- failures --------------------------------------------------------------------------
    def batch_failed(
        self, replica: Replica, requests: list[ServiceRequest], failure: BaseException
    ) -> None:
        from ray import exceptions as rex

        method = requests[0].method_name if len(requests) == 1 else "handle"
        # Is it really gone? (Restarts are counted when a replica answers with a new pid.)
        if (
            isinstance(failure, rex.ActorDiedError)
            and not replica.checking
            and not self.replicas.check(replica, partial(self._answer_checked, replica))
        ):
            self.checked(Checked(self.forwarder, replica, False, 0))  # it cannot be asked
        for request in requests:
            exc = translate_ray_error(failure, self.name, request.method_name or method)
            if self.sent.pop(request.request_id, None) is not None:
                self.failed += 1
                self._deliver_error(request, exc)

    def _answer_checked(self, replica: Replica, alive: bool, pid: int) -> None:
        """Ray's callback thread: hand the answer to a replica's check to the forwarder."""
        self.context.request_queue.put(Checked(self.forwarder, replica, alive, pid))

    def checked(self, item: Checked) -> None:
        reason = self.replicas.checked(item.replica, item.alive, item.pid)
        if reason is not None and self.task.mark_down(reason):
            self.forwarder.fail_waiting(
                self.context.unavailable(f"it is down ({reason})"), queue=False
            )
            log.error("service %r is down: %s", self.name, reason)

    def fail(self, requests: list[ServiceRequest], exc: BaseException) -> None:
        """Fail the ``requests`` of a batch whose Ray call could not be made."""
        for request in requests:
            if self.sent.pop(request.request_id, None) is not None:
                self.failed += 1
                self._deliver_error(request, exc)

    def fail_all(self, exc: BaseException) -> None:
        """Answer every request sent and not answered yet with ``exc`` (not counted)."""
        for rid in list(self.sent):
            sent = self.sent.pop(rid, None)
            if sent is not None:
                self._deliver_error(sent, exc)

    def fail_unsent(self, request: ServiceRequest, exc: BaseException) -> None:
        """Fail a request that could not be sent (its arguments do not pickle)."""
        self.failed += 1
        self._deliver_error(request, exc)

    def expire_unsent(self, request: ServiceRequest) -> None:
        """Answer a request whose deadline passed before it was sent."""
        self.expired += 1
        self._deliver(request, self.task.expired_response(request))


def _expired(response: ServiceResponse) -> bool:
    error = response.error
    return error is not None and error.type_name == "ServiceTimeoutError" and not error.traceback
