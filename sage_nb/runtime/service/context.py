"""``ServiceContext``: everything the callers and the task of one service share.

::

    caller ──pending[rid] = request; request_queue.put(request)──▶ service task worker
    worker ──pending.pop(rid) (claims it) … response_target.deliver(response)──▶ caller
    caller, on timeout ──pending.pop(rid)──▶ got it: the request never runs

``pending`` maps request ids to requests that no worker has started. Whoever pops an id first
owns the request: a worker runs it, a timed-out caller cancels it. ``dict.pop`` is atomic, so no
lock is taken per call.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any

from ...errors import ServiceUnavailableError

if TYPE_CHECKING:
    from ..messages import ServiceRequest
    from .base_service_task import BaseServiceTask

__all__ = ["ServiceContext"]


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
        # Caller-side counters, written by many threads: updated under a lock, off the hot path
        # (only timeouts and cancellations count here).
        self._lock = threading.Lock()
        self.timed_out = 0
        self.cancelled = 0

    def submit(self, request: ServiceRequest) -> None:
        """Queue ``request``; raise ``ServiceUnavailableError`` if the service is not serving."""
        if not self.accepting:
            raise self.unavailable()
        rid = request.request_id
        self.pending[rid] = request
        self.request_queue.put(request)
        # A stop may have drained the queue between the check above and the put: take the
        # request back if no worker has claimed it.
        if not self.accepting and self.pending.pop(rid, None) is not None:
            raise self.unavailable()

    def withdraw(self, request_id: int, *, timed_out: bool) -> bool:
        """Cancel a request no worker has started; return False if one already started it."""
        withdrawn = self.pending.pop(request_id, None) is not None
        with self._lock:
            if timed_out:
                self.timed_out += 1
            elif withdrawn:
                self.cancelled += 1
        return withdrawn

    def unavailable(self, reason: str | None = None) -> ServiceUnavailableError:
        why = reason or "it is stopped"
        return ServiceUnavailableError(
            f"service {self.name!r} cannot take calls: {why}; "
            f"call it again to restart it, or check %sage_status"
        )

    def __repr__(self) -> str:
        state = "accepting" if self.accepting else "stopped"
        return f"<ServiceContext {self.name!r} {state}, {len(self.pending)} queued>"
