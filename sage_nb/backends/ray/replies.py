"""``Replies``: the answers of a ``RayServiceTask``'s actors, counted and delivered once each.

::

    Ray's callback thread (ray_compat.on_completed of a batch) ──┐
    a sync caller that sent directly, after its ray.get (fetch) ──┴─▶ on_result
       decode, count and deliver (delivering runs no user code: a future's callbacks go to
       the environment's callback thread); then ──Completed──▶ request_queue ──▶ forwarder:
       complete (frees the slot, counts restarts, swaps a restarted replica forward), or
       complete right there when the forwarder is idle (Forwarder.settle_if_idle)
    a failed batch: after "the actor is restarting" (Ray refused it: it never ran) its calls
       go back to the backlog; after any other actor error each call fails (it may have run:
       the retry policy decides). Either way the replica is probed with a call Ray retries
       until the actor is back (or dead for good), and it takes no calls until it answers;
       none left alive: the service is down

``sent`` is the ledger of requests sent to an actor and not answered yet: whoever pops a
request's id from it settles that request, so each is answered exactly once, whichever of Ray's
callback thread, the forwarder, a caller in ``fetch`` or ``stop()`` gets there first. What the
send lock's holder settles goes to ``outbox`` and is delivered once the lock is released
(``flush``): no response is delivered under the send lock.

Counting is exact: each request counts one outcome (done, failed, timed out, rejected) when it
is answered, and the count is taken back if the caller had already given up (it counted its
own timeout or cancellation). Counters change under ``_lock``, from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ...runtime.messages import ServiceRequest, ServiceResponse, error_response
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

__all__ = ["Checked", "Completed", "Replies", "never_ran"]

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

    __slots__ = ("alive", "owner", "pid", "replica", "version")

    def __init__(
        self, owner: Forwarder, replica: Replica, alive: bool, pid: int, version: int = 0
    ) -> None:
        self.owner = owner
        self.replica = replica
        self.alive = alive
        self.pid = pid
        self.version = version


#: Outcomes a request is counted as (the caller's side counts timeouts and cancellations).
DONE, FAILED, TIMED_OUT, REJECTED = "done", "failed", "timed_out", "rejected"


def never_ran(failure: BaseException) -> bool:
    """True if Ray refused a call because its actor is restarting: the call never reached
    the actor, so it can be sent again once the actor is back (Ray's message says "may or
    may not have been executed" for every unavailable actor; this one is raised before
    sending)."""
    from ray import exceptions as rex

    return isinstance(failure, rex.ActorUnavailableError) and "actor is restarting" in str(failure)


def _settled(target: Any) -> bool:
    """True if the caller behind ``target`` has its answer, or gave up, already."""
    if type(target) is SyncWaiter:
        return target.settled
    return isinstance(target, AwaitableFuture) and target.done()


def _delivers_inline(target: Any) -> bool:
    """True if delivering to ``target`` cannot run user code (safe on Ray's thread): a sync
    waiter, or a future whose callbacks run elsewhere (or that has none)."""
    if type(target) is SyncWaiter:
        return True
    return isinstance(target, AwaitableFuture) and (
        target.callbacks is not None or not target.has_done_callbacks()
    )


class Replies:
    """Counts and delivers the answers to ``forwarder``'s requests (see the module docstring).

    ``complete``, ``batch_failed``, ``checked``, ``fail``, ``fail_all``, ``reject``,
    ``fail_unsent`` and ``expire_unsent`` run under the forwarder's send lock and leave their
    deliveries in ``outbox`` for ``flush``; ``on_result`` and ``fetch`` do not (Ray's callback
    thread, a sync caller's thread) and deliver at once.
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
        # Invariants: sent maps the id of every request sent to an actor and not yet answered
        # to the request; whoever pops an id settles it, so each is answered exactly once.
        self.sent: dict[int, ServiceRequest] = {}
        #: Settled under the send lock, delivered by ``flush``: (request, response, outcome).
        self.outbox: deque[tuple[ServiceRequest, ServiceResponse, str]] = deque()
        # Counters and the latency window change under _lock (a leaf lock), from any thread.
        self._lock = threading.Lock()
        self.done = 0
        self.failed = 0
        self.timed_out = 0
        self.rejected = 0
        self.latency = LatencyWindow()

    # -- counting and delivering -----------------------------------------------------------
    def _count(self, outcome: str, n: int) -> None:
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + n)

    def _settle(self, request: ServiceRequest, response: ServiceResponse, outcome: str) -> None:
        """Deliver now (not under the send lock): counted first, so a caller that wakes up
        sees its call in ``statistics()``; taken back if the caller had given up. An answer
        the service produced (a result, or its own error with a traceback) is a latency
        sample too, taken under the same lock."""
        error = response.error
        ran = error is None or bool(error.traceback)
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            if ran:
                self.latency.add(response.execution_time)
        target = request.response_target
        if target is None or not target.deliver(response):
            self._count(outcome, -1)

    def _post(self, request: ServiceRequest, response: ServiceResponse, outcome: str) -> None:
        """Under the send lock: settle ``request`` once the lock is released (``flush``)."""
        self.outbox.append((request, response, outcome))

    def _post_error(self, request: ServiceRequest, exc: BaseException, outcome: str) -> None:
        self._post(request, error_response(request, exc), outcome)

    def flush(self) -> None:
        """Deliver what was settled under the send lock; whoever released it calls this."""
        outbox = self.outbox
        while outbox:
            try:
                request, response, outcome = outbox.popleft()
            except IndexError:  # another thread flushed the last one
                return
            self._settle(request, response, outcome)

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
        # A success was delivered above; a failure goes through the forwarder (which may send
        # the request again once a restarting actor is back).
        left = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        return waiter.lock.acquire(True, left)

    def on_result(
        self, replica: Replica, requests: list[ServiceRequest], ref: Any, data: Any
    ) -> None:
        """Ray's callback thread: decode, count and deliver what runs no user code, then hand
        the batch to the forwarder (its slot, restarts, and any other target)."""
        forwarder = self.forwarder
        if not isinstance(data, BaseException):
            try:
                pid, version, entries = unpack_reply(data)
            except Exception as exc:  # an unreadable reply fails its calls: they never hang
                data = exc
        if isinstance(data, BaseException):
            self.forwarder.queue.put(Completed(forwarder, replica, requests, None, data))
            return
        name = self.name
        responses = [
            response_from_wire(entry, name, request.method_name, request.timeout)
            for request, entry in zip(requests, entries)
        ]
        remember = self.context.recent.append
        for pair in zip(requests, responses):
            remember(pair)
        sent = self.sent
        rest = False
        for request, response in zip(requests, responses):
            if _delivers_inline(request.response_target):
                if sent.pop(request.request_id, None) is not None:
                    self._answer(request, response, self._settle)
            else:
                rest = True
        item = Completed(forwarder, replica, requests, responses, None, pid, version)
        # Nothing left for the forwarder (no target that runs user code, nothing waiting for
        # this slot): settle the batch here instead of waking it.
        if not rest and forwarder.settle_if_idle(item):
            return
        self.forwarder.queue.put(item)

    def _answer(
        self,
        request: ServiceRequest,
        response: ServiceResponse,
        settle: Callable[[ServiceRequest, ServiceResponse, str], None],
    ) -> None:
        if response.success:
            outcome = DONE
        elif _expired(response):  # the actor skipped it: its deadline had passed
            outcome = TIMED_OUT
        else:
            outcome = FAILED
        settle(request, response, outcome)

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
                self._answer(request, response, self._post)

    # -- failures --------------------------------------------------------------------------
    def batch_failed(
        self, replica: Replica, requests: list[ServiceRequest], failure: BaseException
    ) -> None:
        from ray import exceptions as rex

        # Restarting or gone? The replica takes no calls until the probe answers.
        if (
            isinstance(failure, rex.RayActorError)
            and not replica.checking
            and not self.replicas.check(replica, partial(self._answer_checked, replica))
        ):
            self.checked(Checked(self.forwarder, replica, False, 0))  # it cannot be asked
        sent = self.sent
        if never_ran(failure):  # sent again once the actor is back, within their deadlines
            again = [r for r in requests if sent.pop(r.request_id, None) is not None]
            self.forwarder.requeue([r for r in again if not _settled(r.response_target)])
            return
        method = requests[0].method_name if len(requests) == 1 else "handle"
        for request in requests:
            if sent.pop(request.request_id, None) is not None:
                exc = translate_ray_error(failure, self.name, request.method_name or method)
                self._post_error(request, exc, FAILED)

    def _answer_checked(self, replica: Replica, alive: bool, pid: int, version: int) -> None:
        """Ray's callback thread: hand the answer to a replica's probe to the forwarder."""
        self.forwarder.queue.put(Checked(self.forwarder, replica, alive, pid, version))

    def checked(self, item: Checked) -> None:
        replica = item.replica
        reason = self.replicas.checked(replica, item.alive, item.pid)
        task = self.task
        if item.alive and item.version < task.version_number:
            self.replicas.reswap(replica, task.version_number, task.factory)
        if reason is not None and task.mark_down(reason):
            self.forwarder.fail_waiting(
                self.context.unavailable(f"it is down ({reason})"), queue=False
            )
            log.error("service %r is down: %s", self.name, reason)

    def fail(self, requests: list[ServiceRequest], exc: BaseException) -> None:
        """Fail the ``requests`` of a batch whose Ray call could not be made."""
        for request in requests:
            if self.sent.pop(request.request_id, None) is not None:
                self._post_error(request, exc, FAILED)

    def fail_all(self, exc: BaseException) -> None:
        """Answer every request sent and not answered yet with ``exc`` (the service stopped
        or is down): failed, as it may have run."""
        for rid in list(self.sent):
            sent = self.sent.pop(rid, None)
            if sent is not None:
                self._post_error(sent, exc, FAILED)

    def reject(self, request: ServiceRequest, exc: BaseException) -> None:
        """Answer a request never sent with ``exc`` (the service stopped or is down)."""
        self._post_error(request, exc, REJECTED)

    def fail_unsent(self, request: ServiceRequest, exc: BaseException) -> None:
        """Fail a request that could not be sent (its arguments do not pickle)."""
        self._post_error(request, exc, FAILED)

    def expire_unsent(self, request: ServiceRequest) -> None:
        """Answer a request whose deadline passed before it was sent."""
        self._post(request, self.task.expired_response(request), TIMED_OUT)


def _expired(response: ServiceResponse) -> bool:
    error = response.error
    return error is not None and error.type_name == "ServiceTimeoutError" and not error.traceback
