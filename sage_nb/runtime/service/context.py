"""``ServiceContext``: everything the callers and the task of one service share.

::

    caller ──pending[rid] = request; request_queue.put(request)──▶ service task worker
    worker ──pending.pop(rid) (claims it) … response_target.deliver(response)──▶ caller
    caller, on timeout ──pending.pop(rid)──▶ got it: the request never runs

``pending`` maps request ids to requests that no worker has started. Whoever pops an id first
owns the request: a worker runs it, a timed-out caller cancels it. ``dict.pop`` is atomic, so no
lock is taken per call.

Every request ends in exactly one outcome: done, failed, timed out, rejected or cancelled.
Whoever settles its response target (``deliver`` returns True, a caller's claim succeeds)
counts it: a worker its done and failed calls (in counters of its own), the caller's side
here its timeouts, cancellations and the calls refused without running (``rejected``).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from ...errors import ServiceOverloadedError, ServiceTimeoutError, ServiceUnavailableError
from ..messages import error_response
from ..metrics import ActivitySignal

if TYPE_CHECKING:
    from ..messages import ServiceRequest, ServiceResponse
    from ..retry import RetryPolicy
    from .base_service_task import BaseServiceTask
    from .service_factory import ServiceOptions

__all__ = ["RECENT", "ServiceContext", "refuse"]

#: How many recent request/response pairs a service keeps for monitors.
RECENT = 32


class ServiceContext:
    """The runtime's record of one service: its request queue, pending requests and task.

    One exists per service name in an environment; it survives restarts and in-place swaps of
    the service, so callers' cached contexts and queued requests stay valid across them.
    """

    def __init__(self, name: str, environment_name: str = "") -> None:
        self.name = name
        self.environment_name = environment_name
        self.request_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.pending: dict[int, ServiceRequest] = {}
        #: True while the service accepts requests; callers check it before and after putting.
        self.accepting = False
        #: The task that executes this service's requests, or None before the first deploy.
        self.task: BaseServiceTask | None = None
        #: Backpressure: at most this many requests wait (None: no bound); when full a caller
        #: waits for room until its deadline ("block") or fails at once ("fail").
        self.max_queued: int | None = None
        self.overflow = "block"
        #: The retry policy of calls that do not pass ``retries=``.
        self.retry: RetryPolicy | None = None
        # Caller-side counters, written by many threads: updated under a lock, off the hot path
        # (only timeouts, cancellations, refusals and retries count here).
        self._lock = threading.Lock()
        self.timed_out = 0
        self.cancelled = 0
        self.rejected = 0
        self.retries = 0
        # Tasks that served this context before the current one (a restart, a stop and a
        # later start), until their outcomes are final and folded into _earlier; both under
        # _lock. Statistics add them, so they count every call the service ever had.
        self.earlier: list[BaseServiceTask] = []
        self._earlier = (0, 0, 0, 0, 0)
        #: Why the service takes no calls (set when a start fails), for ``unavailable()``;
        #: ``start_error`` is that failure itself (its cause is the constructor's or setup()'s
        #: exception), raised again, as a copy, to every caller refused for it.
        self.reason: str | None = None
        self.start_error: BaseException | None = None
        #: The environment's activity signal (see metrics.ActivitySignal); fired by a call
        #: arriving while an observer waits for activity.
        self.activity = ActivitySignal()
        #: The most recent (request, response) pairs, newest last, for monitors.
        self.recent: deque[tuple[ServiceRequest, ServiceResponse]] = deque(maxlen=RECENT)
        # Invariants: ``waiting`` (callers blocked for room) changes under _room; a worker that
        # claims a request notifies _room only when ``waiting`` is non-zero.
        self._room = threading.Condition(threading.Lock())
        self.waiting = 0
        #: A task may set this to take a request straight from the caller (it returns True
        #: when it did, False to leave the request to the queue): the Ray backend sends a
        #: call to an idle actor from the caller's thread, saving a thread hop.
        self.direct: Callable[[ServiceRequest], bool] | None = None

    def configure(self, options: ServiceOptions) -> None:
        """Take the caller-side options of a (new) registration: backpressure and retries."""
        self.max_queued = options.max_queued
        self.overflow = options.overflow
        self.retry = options.retry

    def submit(self, request: ServiceRequest, *, block: bool = True) -> None:
        """Queue ``request``; raise ``ServiceUnavailableError`` if the service is not serving.

        When the queue is full (``max_queued``) the caller waits for room until the request's
        deadline, unless the service says ``overflow="fail"`` or the caller ``block=False``
        (a runtime thread that must never wait): then ``ServiceOverloadedError``. A request
        refused here counts as rejected, one whose deadline passed waiting as timed out.
        """
        if not self.accepting:
            self.count_rejected()
            raise self.unavailable()
        if self.activity.armed:
            self.activity.fire()
        if self.max_queued is not None and len(self.pending) >= self.max_queued:
            self._wait_for_room(request, block)
        rid = request.request_id
        self.pending[rid] = request
        direct = self.direct
        if direct is not None and direct(request):
            return
        self.request_queue.put(request)
        # A stop may have drained the queue between the check above and the put: take the
        # request back if no worker has claimed it.
        if not self.accepting and self.pending.pop(rid, None) is not None:
            self.count_rejected()
            raise self.unavailable()

    def _wait_for_room(self, request: ServiceRequest, block: bool) -> None:
        limit = self.max_queued
        assert limit is not None
        if self.overflow == "fail" or not block:
            self.count_rejected()
            raise ServiceOverloadedError(
                f"service {self.name!r} already has {len(self.pending)} queued requests "
                f"(max_queued={limit}); slow down, raise max_queued, or use overflow='block'"
            )
        with self._room:
            self.waiting += 1
            try:
                while len(self.pending) >= limit:
                    if not self.accepting:
                        self.count_rejected()
                        raise self.unavailable()
                    left = None if request.deadline is None else request.deadline - monotonic()
                    if left is not None and left <= 0:
                        self.count_timeout()
                        raise ServiceTimeoutError(
                            self.name, request.method_name, request.timeout, started=False
                        )
                    self._room.wait(left)
            finally:
                self.waiting -= 1

    def notify_room(self, everyone: bool = False) -> None:
        """Wake callers waiting for room (called by workers, only when ``waiting``)."""
        with self._room:
            if everyone:
                self._room.notify_all()
            else:
                self._room.notify()

    # -- outcomes counted on the caller's side (rare paths: a lock each) ------------------
    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def count_timeout(self) -> None:
        with self._lock:
            self.timed_out += 1

    def count_cancelled(self) -> None:
        with self._lock:
            self.cancelled += 1

    def count_rejected(self, n: int = 1) -> None:
        with self._lock:
            self.rejected += n

    def retire(self, task: BaseServiceTask) -> None:
        """``task`` no longer serves this context (a newer one does): keep its outcomes."""
        with self._lock:
            self.earlier.append(task)

    def earlier_outcomes(self) -> tuple[int, int, int, int, int]:
        """(done, failed, timed out, rejected, restarts) of the tasks that served before the
        current one; those whose outcomes are final are folded in and forgotten."""
        with self._lock:
            total = list(self._earlier)
            final = [t for t in self.earlier if t.finished()]
            for task in self.earlier:
                for i, n in enumerate(task.outcomes()):
                    total[i] += n
            if final:
                folded = list(self._earlier)
                for task in final:
                    for i, n in enumerate(task.outcomes()):
                        folded[i] += n
                self._earlier = (folded[0], folded[1], folded[2], folded[3], folded[4])
                self.earlier = [t for t in self.earlier if t not in final]
        return (total[0], total[1], total[2], total[3], total[4])

    def withdraw(self, request_id: int) -> bool:
        """Take back a request no worker has started (it never runs); False if one already
        started it. Counts nothing: the caller counts the outcome it settles."""
        withdrawn = self.pending.pop(request_id, None) is not None
        if withdrawn and self.waiting:
            self.notify_room()
        return withdrawn

    def refuse_queued(self, exc: BaseException, *, reason: str | None = None) -> int:
        """Stop accepting and answer every queued request no worker claimed with ``exc``
        (a start that failed), as later callers are until the next start. Returns how many."""
        self.reason = reason
        self.start_error = exc
        self.accepting = False
        if self.waiting:
            self.notify_room(everyone=True)
        refused = 0
        while True:
            try:
                request = self.request_queue.get_nowait()
            except queue.Empty:
                break
            if getattr(request, "request_id", None) is None:
                continue  # a control item of an earlier task
            if self.pending.pop(request.request_id, None) is not None:
                refused += refuse(request, exc)
        if refused:
            self.count_rejected(refused)
        return refused

    def unavailable(self, reason: str | None = None) -> ServiceUnavailableError:
        failure = self.start_error
        if reason is None and failure is not None:
            error = ServiceUnavailableError(str(failure))
            error.__cause__ = failure.__cause__
            return error
        why = reason or self.reason or "it is stopped"
        return ServiceUnavailableError(
            f"service {self.name!r} cannot take calls: {why}; "
            f"call it again to restart it, or check %sage_status"
        )

    def __repr__(self) -> str:
        state = "accepting" if self.accepting else "stopped"
        return f"<ServiceContext {self.name!r} {state}, {len(self.pending)} queued>"


def refuse(request: ServiceRequest, exc: BaseException) -> bool:
    """Answer ``request`` with ``exc``, an error of the runtime's own (it never ran); True if
    that settled it (the caller had not given up)."""
    target = request.response_target
    if target is None:
        return False
    return bool(target.deliver(error_response(request, exc)))
